package bench

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// The Redis round-trip row talks to a real redis-server and fails,
// rather than measuring something else, when the answer is not +PONG.
func TestRedisPingRow(t *testing.T) {
	r := testenv.StartRedis(t)
	p := Phase{Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond}
	row, err := redisPingRow(context.Background(), r.Addr, p)
	require.NoError(t, err)
	assert.Equal(t, OpRedisPing, row.Op)
	assert.Positive(t, row.Ops)
	assert.Zero(t, row.Errors, row.FirstError)
	assert.Positive(t, row.P50)

	// A server that answers something else is an error of every round trip.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			if _, err := c.Write([]byte("-ERR no\r\n")); err != nil {
				return
			}
		}
	}()
	row, err = redisPingRow(context.Background(), ln.Addr().String(), p)
	require.NoError(t, err)
	assert.Zero(t, row.Ops)
	assert.Positive(t, row.Errors)
	assert.Contains(t, row.FirstError, "PING answered")

	_, err = redisPingRow(context.Background(), "127.0.0.1:1", p)
	assert.Error(t, err, "nothing listens")
}

// Each 1-connection target line carries the sum of the request's parts:
// HTTP, its round trips (Redis) or its fsync (bolt), the in-process work
// at the fewest goroutines.
func TestPerRequestTargetsShowTheParts(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	rows := []Result{
		{Op: OpSign, Store: "redis", Concurrency: 1, P50: ms(0.6), Ops: 1},
		{Op: OpIssue, Store: "redis", Concurrency: 1, P50: ms(1.2), Ops: 1},
		{Op: OpHealthz, Store: "redis", Concurrency: 1, P50: ms(0.1), Ops: 1},
		{Op: OpRedisPing, Store: "redis", Concurrency: 1, P50: ms(0.04), Ops: 1},
		{Op: "in-process sign (HSM signer, digest)", Store: "redis", Concurrency: 8, P50: ms(0.5), Ops: 1},
		{Op: "in-process sign (HSM signer, digest)", Store: "redis", Concurrency: 1, P50: ms(0.08), Ops: 1},
		{Op: "in-process issue (x509.CreateCertificate)", Store: "redis", Concurrency: 1, P50: ms(0.2), Ops: 1},
		{Op: OpSign, Store: "bolt", Concurrency: 1, P50: ms(0.7), Ops: 1},
		{Op: OpHealthz, Store: "bolt", Concurrency: 1, P50: ms(0.1), Ops: 1},
		{Op: OpFsync, Store: "bolt", Concurrency: 1, P50: ms(0.25), Ops: 1},
		{Op: "in-process sign (HSM signer, digest)", Store: "bolt", Concurrency: 1, P50: ms(0.1), Ops: 1},
	}
	var b strings.Builder
	PerRequestTargets(&b, rows, []string{"bolt", "redis"}, 64)
	out := b.String()
	assert.Contains(t, out, "- redis: "+OpSign+" at 1: p50 0.60 ms (<= 0.35; its parts alone here: HTTP 0.10 + 1 Redis round trip 0.04 + in-process at 1 0.08 = 0.22 ms): NOT met")
	assert.Contains(t, out, "- redis: "+OpIssue+" at 1: p50 1.20 ms (<= 0.80; its parts alone here: HTTP 0.10 + 1 Redis round trip 0.04 + in-process at 1 0.20 = 0.34 ms): NOT met")
	assert.Contains(t, out, "- bolt: "+OpSign+" at 1: p50 0.70 ms (one fsync 0.25 ms + 0.3 = 0.55; its parts alone here: HTTP 0.10 + fsync 0.25 + in-process at 1 0.10 = 0.45 ms): NOT met")

	assert.NotContains(t, out, "inside the daemon", "no row carries the daemon's own timings")

	// With the fsync after an idle gap measured, the line gives it too;
	// the budget stays one fsync back to back + 0.3 ms.
	b.Reset()
	PerRequestTargets(&b, append(rows, Result{Op: OpFsyncIdle, Store: "bolt", Concurrency: 1, P50: ms(0.4), Ops: 1}), []string{"bolt"}, 64)
	assert.Contains(t, b.String(), "- bolt: "+OpSign+" at 1: p50 0.70 ms (one fsync 0.25 ms + 0.3 = 0.55; its parts alone here: HTTP 0.10 + fsync 0.25 + in-process at 1 0.10 = 0.45 ms; an fsync after a 0.30 ms pause: 0.40 ms): NOT met")

	// Without the HTTP row the line says nothing of the parts.
	b.Reset()
	PerRequestTargets(&b, rows[:2], []string{"redis"}, 64)
	assert.Contains(t, b.String(), "- redis: "+OpSign+" at 1: p50 0.60 ms (<= 0.35): NOT met")

	// A row with the daemon's own timings is followed by them.
	us := func(n int) time.Duration { return time.Duration(n) * time.Microsecond }
	rows[0].Inside = &Inside{Route: "/v1/keys/:id/sign", Requests: 1000, Mean: us(500), Rest: us(70),
		Parts: []InsidePart{{"HSM C_Sign", us(160)}, {"store append_events", us(140)}, {"store get_by_unique_throttled", us(130)}}}
	b.Reset()
	PerRequestTargets(&b, rows, []string{"redis"}, 64)
	assert.Contains(t, b.String(), "NOT met\n  inside the daemon (its own metrics, mean per request of 1000): "+
		"500 µs = HSM C_Sign 160 + store append_events 140 + store get_by_unique_throttled 130 + the rest 70\n- redis: "+OpIssue)

	// The CPU line at the highest concurrency says how the event records
	// were grouped when the daemon's metrics told.
	rows[4].CPUPerOp = us(80) // the in-process row at the most goroutines
	rows = append(rows, Result{Op: OpSign, Store: "redis", Concurrency: 64, Ops: 1, CPUPerOp: us(200), RecordsPerAppend: 12.5})
	b.Reset()
	PerRequestTargets(&b, rows, []string{"redis"}, 64)
	assert.Contains(t, b.String(), "- redis: daemon CPU per signing at 64: 200 µs (in-process 80 µs + 100 = 180; 12.5 event records per append): NOT met")

	// With the redis-server's own CPU measured, both lines carry it.
	rows[0].StoreCPUPerOp = us(140)
	rows[len(rows)-1].StoreCPUPerOp = us(61)
	b.Reset()
	PerRequestTargets(&b, rows, []string{"redis"}, 64)
	assert.Contains(t, b.String(), "- redis: daemon CPU per signing at 64: 200 µs (in-process 80 µs + 100 = 180; 12.5 event records per append; "+
		"redis-server's own CPU 61 µs per request): NOT met")
	assert.Contains(t, b.String(), "+ the rest 70; redis-server's own CPU 140 µs per request\n")

	// The issuance's CPU line, with the CSR's parse and check measured
	// alone, says what they leave of the budget for the rest.
	rows = append(rows,
		Result{Op: "in-process issue (x509.CreateCertificate)", Store: "redis", Concurrency: 8, Ops: 1, CPUPerOp: us(160)},
		Result{Op: OpIssue, Store: "redis", Concurrency: 64, Ops: 1, CPUPerOp: us(450)})
	b.Reset()
	PerRequestTargets(&b, rows, []string{"redis"}, 64)
	assert.Contains(t, b.String(), "- redis: daemon CPU per issuance at 64: 450 µs (in-process 160 µs + 250 = 410): NOT met")
	b.Reset()
	PerRequestTargets(&b, append(rows, Result{Op: OpCSRCheck, Store: "redis", Concurrency: 8, Ops: 1, CPUPerOp: us(90)}), []string{"redis"}, 64)
	assert.Contains(t, b.String(), "- redis: daemon CPU per issuance at 64: 450 µs (in-process 160 µs + 250 = 410; "+
		"the CSR's parse and check alone 90 µs, leaving 160 of the 250 for HTTP, the credential, the store and the event, which took 200): NOT met")
}
