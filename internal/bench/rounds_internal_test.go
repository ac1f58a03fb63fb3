package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The stores take turns at going first, round by round.
func TestRoundOrderAlternates(t *testing.T) {
	stores := []string{"bolt", "redis", "cluster"}
	assert.Equal(t, stores, roundOrder(stores, 0))
	assert.Equal(t, []string{"cluster", "redis", "bolt"}, roundOrder(stores, 1))
	assert.Equal(t, stores, roundOrder(stores, 2))
	assert.Equal(t, []string{"bolt", "redis", "cluster"}, stores, "the caller's order is left alone")
}

// A combined row is the median of each figure, ops/s over every round,
// the slowest request of all, errors added up, the spread of p50 and CPU,
// and the one-connection breakdown of the median round.
func TestCombineTakesMedians(t *testing.T) {
	us := func(n int) time.Duration { return time.Duration(n) * time.Microsecond }
	in := func(n int) *Inside { return &Inside{Route: "/v1/keys/:id/sign", Requests: n} }
	rows := []Result{
		{Op: OpSign, Store: "bolt", Concurrency: 1, Round: 0, Ops: 100, Elapsed: time.Second, P50: us(700), P99: us(900), Max: us(1000),
			CPUPerOp: us(500), Ratio: 0.1, Inside: in(1)},
		{Op: OpFsync, Store: "bolt", Concurrency: 1, Round: 0, Ops: 10, Elapsed: time.Second, P50: us(100)},
		{Op: OpSign, Store: "bolt", Concurrency: 1, Round: 1, Ops: 300, Elapsed: time.Second, P50: us(500), P99: us(800), Max: us(5000),
			CPUPerOp: us(450), Ratio: 0.3, Errors: 2, FirstError: "boom", Inside: in(2)},
		{Op: OpSign, Store: "bolt", Concurrency: 1, Round: 2, Ops: 200, Elapsed: time.Second, P50: us(600), P99: us(1200), Max: us(2000),
			CPUPerOp: us(650), Ratio: 0.2, Inside: in(3)},
		{Op: OpFsync, Store: "bolt", Concurrency: 1, Round: 2, Ops: 30, Elapsed: time.Second, P50: us(300)},
	}
	require.Len(t, SplitRounds(rows), 3)
	c := Combine(rows)
	require.Len(t, c, 2, "one row per operation, store and concurrency, in order")
	s := c[0]
	assert.Equal(t, OpSign, s.Op)
	assert.Equal(t, 3, s.Rounds)
	assert.Equal(t, us(600), s.P50)
	assert.Equal(t, us(900), s.P99)
	assert.Equal(t, us(500), s.CPUPerOp)
	assert.Equal(t, us(5000), s.Max, "the slowest request of every round")
	assert.InDelta(t, 200.0, s.OpsPerSec(), 1e-9, "600 operations in 3 s")
	assert.InDelta(t, 0.2, s.Ratio, 1e-9)
	assert.Equal(t, 2, s.Errors)
	assert.Equal(t, "boom", s.FirstError)
	assert.Equal(t, [2]time.Duration{us(500), us(700)}, s.P50Range)
	assert.Equal(t, [2]time.Duration{us(450), us(650)}, s.CPURange)
	assert.Equal(t, 3, s.Inside.Requests, "the breakdown of the round whose p50 is the median")
	f := c[1]
	assert.Equal(t, 2, f.Rounds, "a row two rounds measured")
	assert.Equal(t, us(200), f.P50, "the mean of the two middle figures")

	// Rows of one round come back as they are.
	one := rows[:2]
	assert.Equal(t, one, Combine(one))
}

// With several rounds each per-request target says in how many it was
// met, and the figures are the medians with their spread.
func TestPerRequestTargetsCountRounds(t *testing.T) {
	us := func(n int) time.Duration { return time.Duration(n) * time.Microsecond }
	var rows []Result
	for round, cpu := range []int{300, 200, 240} {
		rows = append(rows,
			Result{Op: OpSign, Store: "redis", Concurrency: 64, Round: round, Ops: 1, Elapsed: time.Second, CPUPerOp: us(cpu)},
			Result{Op: "in-process sign (HSM signer, digest)", Store: "redis", Concurrency: 8, Round: round, Ops: 1, Elapsed: time.Second, CPUPerOp: us(150)},
			Result{Op: OpSign, Store: "redis", Concurrency: 1, Round: round, Ops: 1, Elapsed: time.Second, P50: us(cpu + 100)},
		)
	}
	var b strings.Builder
	PerRequestTargets(&b, rows, []string{"redis"}, 64)
	out := b.String()
	assert.Contains(t, out, "- redis: daemon CPU per signing at 64: 240 µs (in-process 150 µs + 100 = 250; 3 rounds: 200-300): met (met in 2 of 3 rounds)\n")
	assert.Contains(t, out, "- redis: "+OpSign+" at 1: p50 0.34 ms (<= 0.35; 3 rounds: 0.30-0.40): met (met in 2 of 3 rounds)\n")

	// Rounds that did not check the same targets are not counted.
	b.Reset()
	PerRequestTargets(&b, rows[:len(rows)-1], []string{"redis"}, 64)
	assert.NotContains(t, b.String(), "rounds)")
}
