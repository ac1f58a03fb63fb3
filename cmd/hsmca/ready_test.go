package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestReady(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/readyz", r.URL.Path)
		w.WriteHeader(status)
		if status == http.StatusOK {
			_, _ = w.Write([]byte(`{"status":"ready","checks":{"hsm":"ok","store":"ok"}}`))
		} else {
			_, _ = w.Write([]byte(`{"status":"not ready","checks":{"hsm":"token \"hsmca\" not found","store":"ok"}}`))
		}
	}))
	defer srv.Close()

	var out, errb bytes.Buffer
	assert.Equal(t, 0, dispatch([]string{"ready", "--url", srv.URL}, &out, &errb))
	assert.Equal(t, "ready\n", out.String())

	status = http.StatusServiceUnavailable
	out.Reset()
	assert.Equal(t, 1, dispatch([]string{"ready", "--url", srv.URL}, &out, &errb))
	assert.Contains(t, errb.String(), `hsm: token "hsmca" not found`)

	errb.Reset()
	srv.Close()
	assert.Equal(t, 1, dispatch([]string{"ready", "--url", srv.URL}, &out, &errb))
	assert.Contains(t, errb.String(), "not ready")
}
