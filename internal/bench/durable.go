package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Operation names of the durability rows (bolt only, the daemon stopped).
const (
	OpFsync      = "fsync (4 KiB write + fdatasync, store directory)"
	OpFsyncIdle  = "fsync after a 0.3 ms pause (as between one connection's requests)"
	OpBoltCommit = "bolt commit (one 300-byte record, bbolt alone)"
)

// fsyncIdle is the idle gap before each fsync of the OpFsyncIdle row.
const fsyncIdle = 300 * time.Microsecond

// durableRows measure, in the bolt store's directory with the daemon
// stopped, what durability costs on this disk: one fsync (the floor of any
// durable write) back to back and after an idle gap like the one a
// one-connection client leaves (the core and the disk have gone idle),
// and one bbolt commit of an event-sized record (bbolt writes the changed
// pages, syncs, writes its meta page and syncs again). The 1-connection
// latency target of a durable store is stated against the first.
func durableRows(ctx context.Context, dir string, p Phase) ([]Result, error) {
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	page := make([]byte, 4096)
	var off int64
	fsync := func(context.Context, int) error {
		if _, err := f.WriteAt(page, off); err != nil {
			return err
		}
		off = (off + 4096) % (64 << 12)
		return f.Sync()
	}
	fs := withOwnCPU(p, func() Result { return measure(ctx, 1, p, fsync, nil) })
	fs.Op = OpFsync
	idle := p
	idle.Idle = fsyncIdle
	fi := measure(ctx, 1, idle, fsync, nil)
	fi.Op = OpFsyncIdle

	path := filepath.Join(dir, "commit-bench.db")
	defer os.Remove(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return []Result{fs, fi}, err
	}
	defer db.Close()
	rec := []byte(strings.Repeat("x", 300))
	var seq uint64
	bc := withOwnCPU(p, func() Result {
		return measure(ctx, 1, p, func(context.Context, int) error {
			return db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists([]byte("e"))
				if err != nil {
					return err
				}
				seq++
				var k [8]byte
				binary.BigEndian.PutUint64(k[:], seq)
				return b.Put(k[:], rec)
			})
		}, nil)
	})
	bc.Op = OpBoltCommit
	return []Result{fs, fi, bc}, nil
}

// insideLine follows a 1-connection target line with where the daemon's
// own metrics say the time of those requests went.
func insideLine(w io.Writer, r *Result) {
	if r.Inside != nil {
		fmt.Fprintf(w, "  inside the daemon (its own metrics, mean per request of %d): %s%s\n", r.Inside.Requests, r.Inside, redisCPU(r))
	}
}

// redisCPU is what the row's redis-server spent per request, for a line
// about the row ("" when not measured).
func redisCPU(r *Result) string {
	if r.StoreCPUPerOp <= 0 {
		return ""
	}
	return fmt.Sprintf("; redis-server's own CPU %.0f µs per request", float64(r.StoreCPUPerOp)/float64(time.Microsecond))
}

// PerRequestTargets writes one line per target of the per-request-cost
// issue and store: the daemon's CPU per request against the in-process
// cost of the same HSM work, the 1-connection latency (on bolt against
// what one fsync costs on this disk), the slowest request at 8
// connections, and the share of the in-process limit at the highest
// concurrency.
//
// Rows of several rounds are combined (Combine) and each verdict says in
// how many rounds it was met.
func PerRequestTargets(w io.Writer, rows []Result, stores []string, maxC int) {
	rounds := SplitRounds(rows)
	if len(rounds) <= 1 {
		perRequestTargets(w, rows, stores, maxC, nil)
		return
	}
	per := make([][]bool, len(rounds))
	for i, r := range rounds {
		per[i] = perRequestTargets(io.Discard, r, stores, maxC, nil)
	}
	perRequestTargets(w, Combine(rows), stores, maxC, tally(per))
}

// perRequestTargets writes the targets' lines and returns their verdicts in
// order; suffix, when set, adds to the i-th verdict.
func perRequestTargets(w io.Writer, rows []Result, stores []string, maxC int, suffix func(i int) string) []bool {
	var verdicts []bool
	find := func(store, op string, c int) *Result {
		for i := range rows {
			if rows[i].Store == store && strings.HasPrefix(rows[i].Op, op) && rows[i].Concurrency == c &&
				!strings.Contains(rows[i].Op, " stored") && !strings.Contains(rows[i].Op, crlLabel) {
				return &rows[i]
			}
		}
		return nil
	}
	inproc := func(store, op string) *Result {
		var best *Result
		for i := range rows {
			if rows[i].Store == store && strings.HasPrefix(rows[i].Op, op) && (best == nil || rows[i].Concurrency > best.Concurrency) {
				best = &rows[i]
			}
		}
		return best
	}
	mark := func(ok bool) string {
		out := "NOT met"
		if ok {
			out = "met"
		}
		if suffix != nil {
			out += suffix(len(verdicts))
		}
		verdicts = append(verdicts, ok)
		return out
	}
	usStr := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)) }
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	fmt.Fprintln(w, "Per-request targets:")
	for _, s := range stores {
		for _, t := range []struct {
			op, in, what string
			budget       time.Duration
		}{
			{OpSign, "in-process sign", "signing", 100 * time.Microsecond},
			{OpIssue, "in-process issue", "issuance", 250 * time.Microsecond},
		} {
			r, l := find(s, t.op, maxC), inproc(s, t.in)
			if r == nil || l == nil || r.CPUPerOp == 0 || l.CPUPerOp == 0 {
				continue
			}
			grouped := ""
			if r.RecordsPerAppend > 0 {
				grouped = fmt.Sprintf("; %.1f event records per append", r.RecordsPerAppend)
			}
			grouped += redisCPU(r) + spread(r, r.CPURange, usStr)
			if c := inproc(s, OpCSRCheck); t.op == OpIssue && c != nil && c.CPUPerOp > 0 {
				// What an issuance must do beside the in-process row's
				// work, measured alone, and what that leaves of the budget.
				grouped += fmt.Sprintf("; the CSR's parse and check alone %.0f µs, leaving %.0f of the %.0f for HTTP, the credential, the store and the event, which took %.0f",
					us(c.CPUPerOp), us(t.budget-c.CPUPerOp), us(t.budget), us(r.CPUPerOp-l.CPUPerOp-c.CPUPerOp))
			}
			fmt.Fprintf(w, "- %s: daemon CPU per %s at %d: %.0f µs (in-process %.0f µs + %.0f = %.0f%s): %s\n", s, t.what, maxC,
				us(r.CPUPerOp), us(l.CPUPerOp), us(t.budget), us(l.CPUPerOp+t.budget), grouped, mark(r.CPUPerOp <= l.CPUPerOp+t.budget))
		}
		sign1, issue1 := find(s, OpSign, 1), find(s, OpIssue, 1)
		// parts: what a request at one connection cannot do without on
		// this machine, the sum of the p50s of its parts measured alone
		// (the HTTP exchange, its durable write or its Redis round trips:
		// one, the write that carries the token's check, of a signature
		// with a key known and of an issuance from a CA known; the
		// in-process HSM work at the fewest goroutines measured).
		healthz, ping, fsync := find(s, OpHealthz, 1), find(s, OpRedisPing, 1), find(s, OpFsync, 1)
		fsIdle := find(s, OpFsyncIdle, 1)
		parts := func(inOp string, trips int) string {
			var l *Result
			for i := range rows {
				if rows[i].Store == s && strings.HasPrefix(rows[i].Op, inOp) && (l == nil || rows[i].Concurrency < l.Concurrency) {
					l = &rows[i]
				}
			}
			if healthz == nil || l == nil || (fsync == nil && ping == nil) {
				return ""
			}
			sum := healthz.P50 + l.P50
			out := fmt.Sprintf("; its parts alone here: HTTP %s", ms(healthz.P50))
			if fsync != nil {
				sum += fsync.P50
				out += fmt.Sprintf(" + fsync %s", ms(fsync.P50))
			} else {
				sum += time.Duration(trips) * ping.P50
				noun := "round trips"
				if trips == 1 {
					noun = "round trip"
				}
				out += fmt.Sprintf(" + %d Redis %s %s", trips, noun, ms(time.Duration(trips)*ping.P50))
			}
			out += fmt.Sprintf(" + in-process at %d %s = %s ms", l.Concurrency, ms(l.P50), ms(sum))
			if fsync != nil && fsIdle != nil {
				out += fmt.Sprintf("; an fsync after a %s ms pause: %s ms", ms(fsyncIdle), ms(fsIdle.P50))
			}
			return out
		}
		if s == "bolt" {
			if fsync != nil {
				limit := fsync.P50 + 300*time.Microsecond
				for _, x := range []struct {
					r  *Result
					in string
				}{{sign1, "in-process sign"}, {issue1, "in-process issue"}} {
					if x.r != nil {
						fmt.Fprintf(w, "- %s: %s at 1: p50 %s ms (one fsync %s ms + 0.3 = %s%s%s): %s\n", s, x.r.Op, ms(x.r.P50), ms(fsync.P50), ms(limit),
							parts(x.in, 0), spread(x.r, x.r.P50Range, ms), mark(x.r.P50 <= limit && x.r.Errors == 0))
						insideLine(w, x.r)
					}
				}
			}
		} else {
			for _, x := range []struct {
				r     *Result
				limit time.Duration
				in    string
				trips int
			}{{sign1, 350 * time.Microsecond, "in-process sign", 1}, {issue1, 800 * time.Microsecond, "in-process issue", 1}} {
				if x.r != nil {
					fmt.Fprintf(w, "- %s: %s at 1: p50 %s ms (<= %s%s%s): %s\n", s, x.r.Op, ms(x.r.P50), ms(x.limit),
						parts(x.in, x.trips), spread(x.r, x.r.P50Range, ms), mark(x.r.P50 <= x.limit && x.r.Errors == 0))
					insideLine(w, x.r)
				}
			}
		}
		for _, op := range []string{OpIssue, OpSign, OpShow} {
			if r := find(s, op, 8); r != nil {
				fmt.Fprintf(w, "- %s: %s at 8: slowest request %s ms (< 50): %s\n", s, op, ms(r.Max), mark(r.Max < 50*time.Millisecond && r.Errors == 0))
			}
		}
		for _, t := range []struct {
			op    string
			ratio float64
		}{{OpSign, 0.5}, {OpIssue, 0.6}} {
			if r := find(s, t.op, maxC); r != nil && r.Ratio > 0 {
				ok := r.Ratio >= t.ratio && r.P99 <= 25*time.Millisecond && r.Errors == 0
				fmt.Fprintf(w, "- %s: %s at %d: %.2f of the in-process limit (>= %.1f), p99 %s ms (<= 25): %s\n", s, t.op, maxC, r.Ratio, t.ratio, ms(r.P99), mark(ok))
			}
		}
	}
	return verdicts
}

// redisPingRow measures one bare Redis round trip from the bench process:
// PING written and +PONG read on one TCP connection, no client library.
// A request that makes k round trips cannot answer faster than k of these
// beside its HTTP exchange.
func redisPingRow(ctx context.Context, addr string, p Phase) (Result, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	ping := []byte("PING\r\n")
	buf := make([]byte, 16)
	r := measure(ctx, 1, p, func(context.Context, int) error {
		if _, err := c.Write(ping); err != nil {
			return err
		}
		n := 0
		for n < len("+PONG\r\n") {
			m, err := c.Read(buf[n:])
			if err != nil {
				return err
			}
			n += m
		}
		if string(buf[:n]) != "+PONG\r\n" {
			return fmt.Errorf("PING answered %q", buf[:n])
		}
		return nil
	}, nil)
	r.Op = OpRedisPing
	return r, nil
}
