// Package logjson is the daemon's log handler: slog's JSON handler, which
// also writes the access log's lines (one per request, the log's busiest
// path) itself, byte for byte as the JSON handler writes them, without a
// slog record, its attributes or encoding/json for the duration.
package logjson

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Handler is a slog.Handler writing JSON lines to one writer.
type Handler struct {
	*slog.JSONHandler
	w     *lockedWriter
	level slog.Leveler
}

// lockedWriter makes the JSON handler's writes and the access lines one
// after the other: each is a whole line in one Write.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// New is a handler writing to w the records at level and above.
func New(w io.Writer, level slog.Leveler) *Handler {
	lw := &lockedWriter{w: w}
	return &Handler{JSONHandler: slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: level}), w: lw, level: level}
}

// Request is one line of the access log.
type Request struct {
	Method, Route        string
	Status               int
	DurationMS           float64
	RequestID, Principal string
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// LogRequest writes r as an Info record "request" with the attributes
// method, route, status, duration_ms, request_id and principal, in that
// order, would be written.
func (h *Handler) LogRequest(r *Request) {
	h.logRequestAt(time.Now(), r)
}

func (h *Handler) logRequestAt(t time.Time, r *Request) {
	if !h.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	bp := lineBufs.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":`...)
	b = appendTime(b, t)
	b = append(b, `,"level":"INFO","msg":"request","method":`...)
	b = appendString(b, r.Method)
	b = append(b, `,"route":`...)
	b = appendString(b, r.Route)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"duration_ms":`...)
	b = appendFloat(b, r.DurationMS)
	b = append(b, `,"request_id":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"principal":`...)
	b = appendString(b, r.Principal)
	b = append(b, "}\n"...)
	_, _ = h.w.Write(b)
	*bp = b
	lineBufs.Put(bp)
}

// appendTime writes t as the JSON handler does: RFC 3339 with
// nanoseconds, quoted (years outside 0-9999 go through the handler's own
// way, which reports them; a request's clock has none).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendFloat writes f as the JSON handler does (through encoding/json):
// the shortest decimal form for 0 and from 1e-6 up to 1e21 (every
// duration a request takes), encoding/json itself elsewhere.
func appendFloat(b []byte, f float64) []byte {
	if f != 0 && (math.Abs(f) < 1e-6 || math.Abs(f) >= 1e21) {
		if v, err := json.Marshal(f); err == nil {
			return append(b, v...)
		}
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way the JSON handler does:
// '"' and '\' escaped, \n \r \t by name, other control bytes as \u00XX,
// invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped, and everything
// else (HTML's <, > and & too) as it is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
