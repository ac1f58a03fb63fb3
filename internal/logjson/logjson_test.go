package logjson

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// viaSlog is the line slog's JSON handler writes for r at t.
func viaSlog(t *testing.T, at time.Time, r *Request) string {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	rec := slog.NewRecord(at, slog.LevelInfo, "request", 0)
	rec.Add("method", r.Method, "route", r.Route, "status", r.Status, "duration_ms", r.DurationMS,
		"request_id", r.RequestID, "principal", r.Principal)
	require.NoError(t, h.Handle(context.Background(), rec))
	return buf.String()
}

func direct(at time.Time, r *Request) string {
	var buf bytes.Buffer
	New(&buf, slog.LevelInfo).logRequestAt(at, r)
	return buf.String()
}

// TestRequestLineIsSlogs: the access line written directly is the JSON
// handler's, byte for byte.
func TestRequestLineIsSlogs(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 24, 22, 198468428, time.UTC)
	for _, r := range []Request{
		{"POST", "/v1/keys/:id/sign", 200, 0.345, "0192abcd-1234-7abc-8def-0123456789ab", "token:0192abcd"},
		{"GET", "/healthz", 503, 0, "", ""},
		{"OTHER", "unmatched", 404, 1234.5, "a\"b\\c\n\r\t\x00\x1f<>&", "admin:CN=Müller \u2028\u2029 \xff\xfe"},
		{"PUT", "/x", 999, 0.001, "\u00e9\u6771\U0001F600", "x"},
		{"DELETE", "/y", -1, 1e21, "", ""},
		{"PATCH", "/z", 0, 1e-7, "", ""},
	} {
		assert.Equal(t, viaSlog(t, at, &r), direct(at, &r), "%+v", r)
	}
	for _, z := range []*time.Location{time.FixedZone("x", 5*3600+1800), time.FixedZone("y", -7*3600)} {
		r := Request{Method: "GET", Route: "/r", Status: 200, DurationMS: 2}
		assert.Equal(t, viaSlog(t, at.In(z), &r), direct(at.In(z), &r), "zone %s", z)
	}
}

// TestRequestLineLevel: no line below the handler's level; the other
// records go through slog as before, to the same writer.
func TestRequestLineLevel(t *testing.T) {
	var buf bytes.Buffer
	h := New(&buf, slog.LevelWarn)
	h.LogRequest(&Request{Method: "GET", Route: "/r", Status: 200})
	assert.Empty(t, buf.String())
	slog.New(h).Warn("w", "k", 1)
	assert.Contains(t, buf.String(), `"msg":"w","k":1}`)
}

// TestRequestLinesAndRecordsInterleave: lines and records written at once
// from many goroutines come out whole.
func TestRequestLinesAndRecordsInterleave(t *testing.T) {
	var buf bytes.Buffer
	h := New(&buf, slog.LevelInfo)
	l := slog.New(h)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if i%2 == 0 {
					h.LogRequest(&Request{Method: "GET", Route: "/r", Status: 200, DurationMS: 1})
				} else {
					l.Info("other", "i", i)
				}
			}
		}()
	}
	wg.Wait()
	lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	assert.Len(t, lines, 800)
	for _, ln := range lines {
		assert.True(t, bytes.HasPrefix(ln, []byte(`{"time":`)) && bytes.HasSuffix(ln, []byte("}")), "%s", ln)
	}
}

func FuzzRequestLineIsSlogs(f *testing.F) {
	f.Add("POST", "/v1/keys/:id/sign", 200, 0.345, "id", "token:x", int64(0))
	f.Add("GET", "a\"\\\n\x00<>&\u2028", -5, 0.0, "\xff", "é", int64(1<<40))
	f.Fuzz(func(t *testing.T, method, route string, status int, ms float64, id, principal string, ns int64) {
		if math.IsNaN(ms) || math.IsInf(ms, 0) || ms < 0 {
			t.Skip("durations are finite and not negative")
		}
		at := time.Unix(0, ns).UTC()
		if y := at.Year(); y < 0 || y >= 10000 {
			t.Skip()
		}
		r := &Request{method, route, status, ms, id, principal}
		if got, want := direct(at, r), viaSlog(t, at, r); got != want {
			t.Fatalf("\n got %q\nwant %q", got, want)
		}
	})
}

func BenchmarkRequestLine(b *testing.B) {
	r := &Request{"POST", "/v1/keys/:id/sign", 200, 0.345, "0192abcd-1234-7abc-8def-0123456789ab", "token:0192abcd-1234-7abc-8def-0123456789ab"}
	var discard bytes.Buffer
	h := New(&discard, slog.LevelInfo)
	l := slog.New(h)
	b.Run("slog", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			discard.Reset()
			l.Info("request", "method", r.Method, "route", r.Route, "status", r.Status, "duration_ms", r.DurationMS,
				"request_id", r.RequestID, "principal", r.Principal)
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			discard.Reset()
			h.LogRequest(r)
		}
	})
}
