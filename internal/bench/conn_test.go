package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The load client's own HTTP/1.1 reading and writing, against Go's server:
// every framing the daemon can answer with, keep-alive reuse, and a server
// that closes the connection.
func TestConnWorkSpeaksHTTP(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/small":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"echo":%q}`, body)
		case "/chunked":
			// Larger than the server's buffer, flushed: chunked framing.
			big := strings.Repeat("x", 10000)
			io.WriteString(w, big[:5000])
			w.(http.Flusher).Flush()
			io.WriteString(w, big[5000:])
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/status":
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "teapot")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	run := func(method, path string, body []byte, want int) (work, func(), *[]byte) {
		var got []byte
		op, done, err := connWork(srv.URL, request{method: method, path: func(*rand.Rand) string { return path },
			body: body, token: "tok", want: want, onBody: func(b []byte) { got = append(got[:0], b...) }}, 2)
		require.NoError(t, err)
		return op, done, &got
	}
	ctx := context.Background()

	op, done, got := run("POST", "/small", []byte(`{"a":1}`), 200)
	for range 5 {
		require.NoError(t, op(ctx, 0))
		assert.Equal(t, `{"echo":"{\"a\":1}"}`, string(*got))
	}
	assert.EqualValues(t, 1, conns.Load(), "keep-alive: one connection for five requests")
	done()

	op, done, got = run("GET", "/chunked", nil, 200)
	require.NoError(t, op(ctx, 1))
	assert.Len(t, *got, 10000)
	require.NoError(t, op(ctx, 1), "the connection stays usable after a chunked body")
	done()

	before := conns.Load()
	op, done, got = run("GET", "/close", nil, 200)
	require.NoError(t, op(ctx, 0))
	require.NoError(t, op(ctx, 0))
	assert.Equal(t, "bye", string(*got))
	assert.EqualValues(t, 2, conns.Load()-before, "a closed connection is replaced")
	done()

	// 204 has no body and no Content-Length: nothing to wait for.
	before = conns.Load()
	op, done, got = run("POST", "/nocontent", []byte(`{}`), 204)
	require.NoError(t, op(ctx, 0))
	require.NoError(t, op(ctx, 0))
	assert.Empty(t, *got)
	assert.EqualValues(t, 1, conns.Load()-before, "the connection is kept")
	done()

	op, done, _ = run("GET", "/status", nil, 200)
	err := op(ctx, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "418: teapot")
	done()

	// The server closing idle connections: the next request reconnects.
	op, done, _ = run("GET", "/small", nil, 200)
	require.NoError(t, op(ctx, 0))
	srv.CloseClientConnections()
	require.NoError(t, op(ctx, 0))
	done()
}
