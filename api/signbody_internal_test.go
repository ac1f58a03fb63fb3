package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// signBodyByJSON is what decodeBody(c, req, true) reads from b.
func signBodyByJSON(b []byte) (signRequest, error) {
	var r signRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, err
	}
	if dec.More() {
		return r, errors.New("unexpected data after the JSON value")
	}
	return r, nil
}

var signBodySeeds = []string{
	`{"digest":"3q2+7w==","algorithm":"ES256"}`,
	` { "message" : "aGVsbG8=" , "algorithm" : "EdDSA", "format": "raw" } ` + "\n",
	`{"digest":"a","digest":null,"algorithm":null,"signature":"c2ln"}`,
	`{}`, `{ }`, ``, `null`, `[]`, `{"algorithm":"ES256"}{}`, `{"algorithm":"ES256"} x`,
	`{"Algorithm":"ES256"}`, `{"algorithm":"ES\u0032"}`, `{"algorithm":"ES256",}`, `{"colour":"red"}`,
	`{"algorithm":5}`, `{"digest":true}`, `{"algorithm":"\xff"}`, `{"algorithm":"é"}`, `{"algorithm":"a` + "\t" + `"}`,
	`{"algorithm":nullx}`, `{"algorithm":"ES256"`, `{"algorithm" "ES256"}`,
}

// Whatever the fast path reads is what encoding/json reads, and it reads
// nothing encoding/json refuses.
func FuzzSignBodyIsEncodingJSONs(f *testing.F) {
	for _, s := range signBodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got signRequest
		if !parseSignRequest(b, &got) {
			return
		}
		want, err := signBodyByJSON(b)
		require.NoError(t, err, "the fast path read a body encoding/json refuses: %q", b)
		assert.Equal(t, want, got, "%q", b)
	})
}

// The usual bodies take the fast path; the seeds say the same as
// encoding/json through decodeSignBody, errors included.
func TestSignBodyTakesTheFastPathAndKeepsJSONsAnswers(t *testing.T) {
	for _, s := range signBodySeeds[:4] {
		var r signRequest
		assert.True(t, parseSignRequest([]byte(s), &r), s)
	}
	gin.SetMode(gin.TestMode)
	for _, s := range signBodySeeds {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest("POST", "/", strings.NewReader(s))
		var got signRequest
		err := decodeSignBody(c, &got)
		want, wantErr := signBodyByJSON([]byte(s))
		if wantErr != nil {
			require.Error(t, err, s)
			assert.Equal(t, wantErr.Error(), err.Error(), s)
			continue
		}
		require.NoError(t, err, s)
		assert.Equal(t, want, got, s)
	}

	// A body over the limit: the error the body ended with, as before.
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest("POST", "/", strings.NewReader(`{"digest":"`+strings.Repeat("A", 100)+`"}`))
	c.Request.Body = http.MaxBytesReader(w, c.Request.Body, 50)
	var r signRequest
	var mbe *http.MaxBytesError
	assert.ErrorAs(t, decodeSignBody(c, &r), &mbe)
}

// The answer is what c.JSON wrote: json.Marshal of the same value.
func FuzzSignResponseIsJSONMarshal(f *testing.F) {
	f.Add("ES256", "", "k-01", "MEUCIQ==")
	f.Add("RS256", "raw", "<&>\u2028", "\xff\"\\")
	f.Fuzz(func(t *testing.T, alg, format, keyID, sig string) {
		resp := signResponse{Algorithm: alg, Format: format, KeyID: keyID, Signature: sig}
		want, err := json.Marshal(resp)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(appendSignResponse(nil, &resp)))
	})
}

// BenchmarkSignBody: the bench's signing body read and its answer written,
// through encoding/json and gin (json) and directly (direct).
func BenchmarkSignBody(b *testing.B) {
	gin.SetMode(gin.TestMode)
	body := []byte(`{"digest":"Bwcn9v3sLq2bNfVd8R1kX0aA7wUqY4lZpJ6mH5cTrEo=","algorithm":"ES256"}`)
	resp := signResponse{Algorithm: "ES256", KeyID: "01J9ZK3W8Q5V7XG2M4N6P8R0TA",
		Signature: "MEUCIQDx4l0b7y2QmM0uC9m8n7GgkJQ0hT4R1vX6wq3kJ8lKpAIgN2b5c8d1e4f7a0b3c6d9e2f5a8b1c4d7e0f3a6b9c2d5e8="}
	run := func(b *testing.B, direct bool) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(w)
			c.Request = httptest.NewRequest("POST", "/", bytes.NewReader(body))
			var req signRequest
			if direct {
				if err := decodeSignBody(c, &req); err != nil {
					b.Fatal(err)
				}
				writeSignResponse(c, &resp)
			} else {
				if err := decodeBody(c, &req, true); err != nil {
					b.Fatal(err)
				}
				c.JSON(http.StatusOK, resp)
			}
		}
	}
	b.Run("json", func(b *testing.B) { run(b, false) })
	b.Run("direct", func(b *testing.B) { run(b, true) })
}
