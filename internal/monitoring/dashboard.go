// Package monitoring checks the Grafana dashboard and the Prometheus rules
// under deploy/ against a running daemon and a real Prometheus: every panel
// query must name only metrics the daemon exports and must return data,
// on a fresh daemon as after traffic, and every series an alert rule reads
// must exist.
package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Query is one PromQL expression of a dashboard panel.
type Query struct {
	Panel string
	RefID string
	Expr  string
	// NoValue is what the panel shows when its queries return nothing
	// (Grafana's fieldConfig.defaults.noValue), "" when it shows "No data".
	NoValue string
}

type dashboard struct {
	Panels []struct {
		Title       string `json:"title"`
		FieldConfig struct {
			Defaults struct {
				NoValue string `json:"noValue"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
		Panels json.RawMessage `json:"panels"` // rows may nest panels
	} `json:"panels"`
}

// Queries lists every panel query of a Grafana dashboard JSON.
func Queries(raw []byte) ([]Query, error) {
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var out []Query
	for _, p := range d.Panels {
		if len(p.Panels) > 0 && string(p.Panels) != "null" {
			nested, err := Queries([]byte(`{"panels":` + string(p.Panels) + `}`))
			if err != nil {
				return nil, err
			}
			out = append(out, nested...)
		}
		for _, t := range p.Targets {
			if strings.TrimSpace(t.Expr) != "" {
				out = append(out, Query{Panel: p.Title, RefID: t.RefID, Expr: t.Expr, NoValue: p.FieldConfig.Defaults.NoValue})
			}
		}
	}
	return out, nil
}

// Grafana's variables, replaced by what a default view would use.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "15s",
	"$__interval", "15s",
	"$__range", "5m",
	"${instance}", ".*",
	"$instance", ".*",
)

// Expand replaces the dashboard's Grafana variables.
func Expand(expr string) string { return grafanaVars.Replace(expr) }

var metricName = regexp.MustCompile(`\bhsmca_[a-zA-Z0-9_]+`)

// Exported lists the sample names of a Prometheus text exposition.
func Exported(exposition string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(exposition, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		out[name] = true
	}
	return out
}

// Problem is one failed check of one panel query.
type Problem struct {
	Query Query
	Why   string
}

func (p Problem) String() string {
	return fmt.Sprintf("%q %s (%s): %s", p.Query.Panel, p.Query.RefID, p.Query.Expr, p.Why)
}

// Check runs every query against Prometheus at promURL and reports the
// queries that name a metric missing from exported, fail to evaluate,
// return no series, or return only NaN (a ratio of two zeros: the panel
// draws nothing). A histogram_quantile may be NaN: no observation has no
// quantile, and 0 would be a false latency.
func Check(ctx context.Context, promURL string, queries []Query, exported map[string]bool) []Problem {
	return check(ctx, promURL, queries, exported, false)
}

// CheckFresh is Check for a daemon that has served nothing but the scrape:
// a panel may return nothing (and its metric be unexported) only if it
// says what that means (NoValue, such as CA expiry before any CA exists);
// every other panel must show a value, 0 where nothing has happened yet.
func CheckFresh(ctx context.Context, promURL string, queries []Query, exported map[string]bool) []Problem {
	return check(ctx, promURL, queries, exported, true)
}

func check(ctx context.Context, promURL string, queries []Query, exported map[string]bool, fresh bool) []Problem {
	var out []Problem
	for _, q := range queries {
		// A panel that says what empty means may be empty on a fresh
		// daemon; its metric may then not be exported yet either (a
		// labelled gauge with no series is left out of the exposition).
		mayBeEmpty := fresh && q.NoValue != ""
		var missing []string
		for _, name := range metricName.FindAllString(q.Expr, -1) {
			if !exported[name] && !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 && !mayBeEmpty {
			sort.Strings(missing)
			out = append(out, Problem{q, "the daemon does not export " + strings.Join(missing, ", ")})
			continue
		}
		values, err := Instant(ctx, promURL, Expand(q.Expr))
		switch {
		case err != nil:
			out = append(out, Problem{q, err.Error()})
		case len(values) == 0 && mayBeEmpty:
			// The panel shows its NoValue text, not "No data".
		case len(values) == 0:
			out = append(out, Problem{q, "no series"})
		case allNaN(values) && !strings.Contains(q.Expr, "histogram_quantile"):
			out = append(out, Problem{q, "only NaN (a ratio of nothing?): the panel draws nothing"})
		}
	}
	return out
}

func allNaN(values []float64) bool {
	for _, v := range values {
		if !math.IsNaN(v) {
			return false
		}
	}
	return true
}

// InstantSeries evaluates expr now and returns the number of series.
func InstantSeries(ctx context.Context, promURL, expr string) (int, error) {
	values, err := Instant(ctx, promURL, expr)
	return len(values), err
}

// Instant evaluates expr now and returns the value of each series (one
// for a scalar).
func Instant(ctx context.Context, promURL, expr string) ([]float64, error) {
	u := promURL + "/api/v1/query?" + url.Values{"query": {expr}, "time": {fmt.Sprint(time.Now().Unix())}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("prometheus answered %d: %.200s", resp.StatusCode, raw)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", body.Error)
	}
	// A sample is [time, "value"]; the value may be "NaN" or "+Inf".
	var samples [][2]any
	switch body.Data.ResultType {
	case "scalar":
		var s [2]any
		if err := json.Unmarshal(body.Data.Result, &s); err != nil {
			return nil, fmt.Errorf("prometheus scalar: %w", err)
		}
		samples = append(samples, s)
	case "vector":
		var series []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(body.Data.Result, &series); err != nil {
			return nil, fmt.Errorf("prometheus vector: %w", err)
		}
		for _, s := range series {
			samples = append(samples, s.Value)
		}
	default:
		return nil, fmt.Errorf("prometheus: unexpected result type %q", body.Data.ResultType)
	}
	out := make([]float64, 0, len(samples))
	for _, s := range samples {
		str, _ := s[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus value %q: %w", str, err)
		}
		out = append(out, v)
	}
	return out, nil
}
