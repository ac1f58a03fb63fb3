package bench

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Rounds: on a small shared machine the same row moves by tens of percent
// between runs minutes apart, in both directions, and a target that
// compares a daemon row with an in-process row measured a minute later
// can be met or missed by that alone. With Config.Rounds the whole bench
// runs several times; the stores take turns at going first, so a slow
// phase of the machine does not always fall on the same store. Combine
// makes one row of the rounds' rows (their medians) and the per-request
// targets say in how many rounds each was met.

// roundOrder is the order of the stores in round n (from 0): as given in
// even rounds, reversed in odd ones.
func roundOrder(stores []string, n int) []string {
	out := slices.Clone(stores)
	if n%2 == 1 {
		slices.Reverse(out)
	}
	return out
}

// SplitRounds groups rows by their round, in round order.
func SplitRounds(rows []Result) [][]Result {
	var out [][]Result
	for _, r := range rows {
		for len(out) <= r.Round {
			out = append(out, nil)
		}
		out[r.Round] = append(out[r.Round], r)
	}
	return slices.DeleteFunc(out, func(rs []Result) bool { return len(rs) == 0 })
}

// Combine makes one row of each operation, store and concurrency measured
// in several rounds, in the order of their first appearance: the median of
// each figure (ops/s over all the rounds' operations, the slowest request
// of all of them, errors added up), the lowest and highest p50 and CPU per
// operation, and the one-connection breakdown of the round whose p50 is
// the median. Rows of one round come back as they are.
func Combine(rows []Result) []Result {
	if len(SplitRounds(rows)) <= 1 {
		return rows
	}
	type key struct {
		store, op string
		c         int
	}
	var order []key
	groups := map[key][]Result{}
	for _, r := range rows {
		k := key{r.Store, r.Op, r.Concurrency}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		out = append(out, combine(groups[k]))
	}
	return out
}

func combine(g []Result) Result {
	if len(g) == 1 {
		return g[0]
	}
	c := g[0]
	c.Round, c.Rounds = 0, len(g)
	c.Ops, c.Elapsed, c.Errors, c.Max, c.FirstError = 0, 0, 0, 0, ""
	for _, r := range g {
		c.Ops += r.Ops
		c.Elapsed += r.Elapsed
		c.Errors += r.Errors
		c.Max = max(c.Max, r.Max)
		if c.FirstError == "" {
			c.FirstError = r.FirstError
		}
	}
	dur := func(f func(*Result) time.Duration) time.Duration {
		v := make([]time.Duration, len(g))
		for i := range g {
			v[i] = f(&g[i])
		}
		slices.Sort(v)
		n := len(v)
		return (v[(n-1)/2] + v[n/2]) / 2
	}
	num := func(f func(*Result) float64) float64 {
		v := make([]float64, len(g))
		for i := range g {
			v[i] = f(&g[i])
		}
		slices.Sort(v)
		n := len(v)
		return (v[(n-1)/2] + v[n/2]) / 2
	}
	span := func(f func(*Result) time.Duration) [2]time.Duration {
		lo, hi := f(&g[0]), f(&g[0])
		for i := range g {
			lo, hi = min(lo, f(&g[i])), max(hi, f(&g[i]))
		}
		return [2]time.Duration{lo, hi}
	}
	c.P50 = dur(func(r *Result) time.Duration { return r.P50 })
	c.P99 = dur(func(r *Result) time.Duration { return r.P99 })
	c.CPUPerOp = dur(func(r *Result) time.Duration { return r.CPUPerOp })
	c.ClientCPUPerOp = dur(func(r *Result) time.Duration { return r.ClientCPUPerOp })
	c.StoreCPUPerOp = dur(func(r *Result) time.Duration { return r.StoreCPUPerOp })
	c.RSS = int64(num(func(r *Result) float64 { return float64(r.RSS) }))
	c.RSSAnon = int64(num(func(r *Result) float64 { return float64(r.RSSAnon) }))
	c.Ratio = num(func(r *Result) float64 { return r.Ratio })
	c.RecordsPerAppend = num(func(r *Result) float64 { return r.RecordsPerAppend })
	c.P50Range = span(func(r *Result) time.Duration { return r.P50 })
	c.CPURange = span(func(r *Result) time.Duration { return r.CPUPerOp })
	byP50 := slices.Clone(g)
	slices.SortStableFunc(byP50, func(a, b Result) int { return int(a.P50 - b.P50) })
	c.Inside = byP50[(len(byP50)-1)/2].Inside
	return c
}

// spread is " (rounds: lo-hi unit)" for a combined row, "" otherwise.
func spread(r *Result, rng [2]time.Duration, f func(time.Duration) string) string {
	if r.Rounds < 2 {
		return ""
	}
	return fmt.Sprintf("; %d rounds: %s-%s", r.Rounds, f(rng[0]), f(rng[1]))
}

// RoundsNote is the line under a table of combined rows.
func RoundsNote(w io.Writer, rows []Result) {
	n := 0
	for _, r := range rows {
		n = max(n, r.Rounds)
	}
	if n > 1 {
		fmt.Fprintf(w, "\nEach row: the median of %d rounds (the stores in turn going first); ops/s over all of them, max ms the slowest request of all, errors added up.\n", n)
	}
}

// tally counts, for the i-th verdict of each round, the rounds that met
// it; nil when the rounds did not check the same targets.
func tally(per [][]bool) func(i int) string {
	if len(per) < 2 {
		return nil
	}
	for _, p := range per[1:] {
		if len(p) != len(per[0]) {
			return nil
		}
	}
	return func(i int) string {
		if i >= len(per[0]) {
			return ""
		}
		k := 0
		for _, p := range per {
			if p[i] {
				k++
			}
		}
		return fmt.Sprintf(" (met in %d of %d rounds)", k, len(per))
	}
}
