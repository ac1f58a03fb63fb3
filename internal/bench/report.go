package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// Table writes the rows as one Markdown table.
func Table(w io.Writer, rows []Result) {
	fmt.Fprintln(w, "| operation | store | concurrency | ops/s | p50 ms | p99 ms | max ms | errors | server RSS MiB (anon) | server CPU µs/op | client CPU µs/op | of in-process limit |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		rssCol, ratio, cpu, ccpu := "-", "-", "-", "-"
		if r.CPUPerOp > 0 {
			cpu = fmt.Sprintf("%.0f", float64(r.CPUPerOp)/float64(time.Microsecond))
		}
		if r.ClientCPUPerOp > 0 {
			ccpu = fmt.Sprintf("%.0f", float64(r.ClientCPUPerOp)/float64(time.Microsecond))
		}
		if r.RSS > 0 {
			rssCol = fmt.Sprintf("%.0f (%.0f)", float64(r.RSS)/(1<<20), float64(r.RSSAnon)/(1<<20))
		}
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f (%s)", r.Ratio, r.Limit)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %s | %s | %s | %d | %s | %s | %s | %s |\n", r.Op, r.Store, r.Concurrency,
			r.OpsPerSec(), ms(r.P50), ms(r.P99), ms(r.Max), r.Errors, rssCol, cpu, ccpu, ratio)
	}
}

// Targets checks the figures of the issue's targets and writes one line
// per target and store: met or not, with the figures.
func Targets(w io.Writer, rows []Result, stores []string, maxC int) {
	find := func(store, op string, c int) *Result {
		for i := range rows {
			if rows[i].Store == store && rows[i].Op == op && rows[i].Concurrency == c {
				return &rows[i]
			}
		}
		return nil
	}
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintln(w, "Targets:")
	for _, s := range stores {
		if r := find(s, OpIssue, maxC); r != nil {
			ok := r.Ratio >= 0.6 && r.P99 <= 25*time.Millisecond && r.Errors == 0
			fmt.Fprintf(w, "- %s: issuance at %d: %.2f of the in-process limit (>= 0.6), p99 %s ms (<= 25): %s\n",
				s, maxC, r.Ratio, ms(r.P99), mark(ok))
		}
		if r := find(s, OpSign, maxC); r != nil {
			ok := r.Ratio >= 0.7 && r.P99 <= 15*time.Millisecond && r.Errors == 0
			fmt.Fprintf(w, "- %s: signing at %d: %.2f of the in-process limit (>= 0.7), p99 %s ms (<= 15): %s\n",
				s, maxC, r.Ratio, ms(r.P99), mark(ok))
		}
		var grown []Result
		for _, r := range rows {
			if r.Store == s && strings.Contains(r.Op, " stored") {
				grown = append(grown, r)
			}
		}
		for _, g := range grown {
			switch {
			case strings.HasPrefix(g.Op, OpIssue):
				if base := find(s, OpIssue, g.Concurrency); base != nil && base.OpsPerSec() > 0 {
					d := g.OpsPerSec()/base.OpsPerSec() - 1
					fmt.Fprintf(w, "- %s: issuance with the store grown (%s): %+.1f%% against the empty-store figure (at most 10%% lower): %s\n",
						s, strings.TrimPrefix(g.Op, OpIssue+" "), 100*d, mark(d >= -0.10))
				}
			default:
				fmt.Fprintf(w, "- %s: %s at %d: p99 %s ms (< 5): %s\n", s, g.Op, g.Concurrency, ms(g.P99),
					mark(g.P99 < 5*time.Millisecond && g.Errors == 0 && g.OpsPerSec() > 0))
			}
		}
		crlTargets(w, rows, s, find)
		for _, grownRows := range []bool{false, true} {
			var peak, anon int64
			for _, r := range rows {
				if r.Store == s && r.Concurrency == maxC && strings.Contains(r.Op, " stored") == grownRows &&
					!strings.Contains(r.Op, crlLabel) {
					peak, anon = max(peak, r.RSS), max(anon, r.RSSAnon)
				}
			}
			if peak == 0 {
				continue
			}
			when := "empty store"
			if grownRows {
				when = "grown store"
			}
			// bolt maps its file: the pages it touches count in RSS but
			// are the page cache's to drop, not the daemon's memory.
			fmt.Fprintf(w, "- %s: daemon RSS under %d connections (%s): %.0f MiB (< 200): %s; anonymous (heap, stacks): %.0f MiB: %s\n",
				s, maxC, when, float64(peak)/(1<<20), mark(peak < 200<<20), float64(anon)/(1<<20), mark(anon < 200<<20))
		}
	}
}

// crlTargets writes the figures of the CRL rows of one store: what a
// revocation that rebuilds the CRL costs, alone and eight at once, what
// shows do meanwhile against the same load without builds, and a fetch.
func crlTargets(w io.Writer, rows []Result, s string, find func(store, op string, c int) *Result) {
	var revoke1, revoke8, during, fetch *Result
	for i := range rows {
		r := &rows[i]
		if r.Store != s || !strings.Contains(r.Op, crlLabel) {
			continue
		}
		switch {
		case strings.HasPrefix(r.Op, OpRevoke) && r.Concurrency == 1:
			revoke1 = r
		case strings.HasPrefix(r.Op, OpRevoke):
			revoke8 = r
		case strings.HasPrefix(r.Op, OpShow):
			during = r
		case strings.HasPrefix(r.Op, OpCRL) && r.Concurrency == 8:
			fetch = r
		}
	}
	if revoke1 == nil || revoke8 == nil || during == nil || fetch == nil {
		return
	}
	label := strings.TrimSuffix(revoke1.Op[strings.Index(revoke1.Op, crlLabel):], ")")
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	fmt.Fprintf(w, "- %s: %s: a revocation rebuilds, signs and stores it in %s (p50; daemon CPU %s each); 8 at once: p50 %s, daemon CPU %s per revocation (they share builds)\n",
		s, label, sec(revoke1.P50), sec(revoke1.CPUPerOp), sec(revoke8.P50), sec(revoke8.CPUPerOp))
	base := find(s, OpShow, 8)
	if base != nil {
		fmt.Fprintf(w, "- %s: shows at 8 while revocations keep rebuilding it: %.0f/s, p99 %s ms (without: %.0f/s, p99 %s ms); no errors: %s\n",
			s, during.OpsPerSec(), ms(during.P99), base.OpsPerSec(), ms(base.P99),
			map[bool]string{true: "met", false: "NOT met"}[during.Errors == 0 && during.Ops > 0])
	}
	fmt.Fprintf(w, "- %s: the CRL fetched at 8 connections: %.0f/s, p99 %s ms\n", s, fetch.OpsPerSec(), ms(fetch.P99))
}
