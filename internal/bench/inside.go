package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Inside is what the daemon's own metrics say the requests of a measured
// window spent in each timed part: the HTTP handler (from the request
// duration histogram of the route the window loaded), each kind of HSM
// call and each store operation, as means per request. Parts of a request
// at one connection run one after another on its path, so what the
// handler spent beside them (Rest) is the daemon's own work and its
// waits: JSON, checks, hand-offs between goroutines, the scheduler.
type Inside struct {
	Route    string
	Requests int
	Mean     time.Duration // the handler's time per request
	Parts    []InsidePart  // largest first
	Rest     time.Duration // Mean less the parts (0 when they add up to more)
}

// InsidePart is one timed part: a PKCS#11 function or a store operation.
type InsidePart struct {
	Name string
	Mean time.Duration // per request of the window, not per call
}

func (in *Inside) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.0f µs =", us(in.Mean))
	for i, p := range in.Parts {
		if i > 0 {
			b.WriteString(" +")
		}
		fmt.Fprintf(&b, " %s %.0f", p.Name, us(p.Mean))
	}
	fmt.Fprintf(&b, " + the rest %.0f", us(in.Rest))
	return b.String()
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// timingSeries are the _sum and _count series of the daemon's duration
// histograms that Inside reads, by family and the label that names the part.
var timingSeries = map[string]string{
	"hsmca_http_request_duration_seconds":    "route",
	"hsmca_hsm_call_duration_seconds":        "function",
	"hsmca_store_operation_duration_seconds": "operation",
}

// groupSeries is the daemon's histogram of event records per append,
// unlabelled; timings keep it under its name and "/".
const groupSeries = "hsmca_event_group_records"

type sumCount struct{ sum, count float64 }

// timings maps family + "/" + part (route, function, operation) to the
// series' sum and count, from the Prometheus text format.
type timings map[string]sumCount

func parseTimings(r io.Reader) (timings, error) {
	out := timings{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, "{")
		if !ok {
			// An unlabelled series: "name value".
			if name, rest, ok = strings.Cut(line, " "); !ok {
				continue
			}
			rest = "} " + rest
		}
		var count bool
		switch {
		case strings.HasSuffix(name, "_sum"):
			name = strings.TrimSuffix(name, "_sum")
		case strings.HasSuffix(name, "_count"):
			name, count = strings.TrimSuffix(name, "_count"), true
		default:
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		var part string
		if name != groupSeries {
			label, ok := timingSeries[name]
			if !ok {
				continue
			}
			if part = labelValue(labels, label); part == "" {
				continue
			}
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %w", line, err)
		}
		k := name + "/" + part
		sc := out[k]
		if count {
			sc.count += v
		} else {
			sc.sum += v
		}
		out[k] = sc
	}
	return out, sc.Err()
}

// labelValue is the value of label in a series' label list (a="x",b="y").
func labelValue(labels, label string) string {
	for labels != "" {
		k, rest, ok := strings.Cut(labels, `="`)
		if !ok {
			return ""
		}
		v, after, ok := strings.Cut(rest, `"`)
		if !ok {
			return ""
		}
		if k == label {
			return v
		}
		labels = strings.TrimPrefix(after, ",")
	}
	return ""
}

// scrapeTimings reads the daemon's /metrics.
func scrapeTimings(ctx context.Context, base string) (timings, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics answered %s", resp.Status)
	}
	return parseTimings(resp.Body)
}

// insideOf is what happened between two scrapes: the route with the most
// requests is the window's, and every HSM function and store operation
// that ran at least once for every two of its requests is a part (what
// ran less often is background work: the health probe, the scrape's own
// reads). Nil when no request was timed.
func insideOf(a, b timings) *Inside {
	const httpFamily = "hsmca_http_request_duration_seconds/"
	delta := func(k string) sumCount {
		return sumCount{b[k].sum - a[k].sum, b[k].count - a[k].count}
	}
	var in Inside
	var handler sumCount
	for k := range b {
		if route, ok := strings.CutPrefix(k, httpFamily); ok && route != "/metrics" {
			if d := delta(k); d.count > handler.count {
				in.Route, handler = route, d
			}
		}
	}
	if handler.count < 1 {
		return nil
	}
	in.Requests = int(handler.count)
	perReq := func(sum float64) time.Duration {
		return time.Duration(sum / handler.count * float64(time.Second))
	}
	in.Mean = perReq(handler.sum)
	var parts time.Duration
	for k := range b {
		family, part, _ := strings.Cut(k, "/")
		if family+"/" == httpFamily || family == groupSeries {
			continue
		}
		d := delta(k)
		if d.count < handler.count/2 {
			// Not on a request's path: the health probe, the metrics
			// scrape's own reads, background work.
			continue
		}
		name := "HSM " + part
		if strings.HasPrefix(family, "hsmca_store_") {
			name = "store " + part
		}
		p := InsidePart{Name: name, Mean: perReq(d.sum)}
		in.Parts = append(in.Parts, p)
		parts += p.Mean
	}
	slices.SortFunc(in.Parts, func(x, y InsidePart) int {
		return cmp.Or(cmp.Compare(y.Mean, x.Mean), strings.Compare(x.Name, y.Name))
	})
	in.Rest = max(in.Mean-parts, 0)
	return &in
}

// recordsPerAppend is the mean number of event records per append of the
// daemon's event writer between two scrapes (0 when none was made).
func recordsPerAppend(a, b timings) float64 {
	k := groupSeries + "/"
	n := b[k].count - a[k].count
	if n <= 0 {
		return 0
	}
	return (b[k].sum - a[k].sum) / n
}
