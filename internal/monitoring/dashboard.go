// Package monitoring checks the Grafana dashboard and the Prometheus rules
// under deploy/ against a running daemon and a real Prometheus: every panel
// query must name only metrics the daemon exports and must return data.
package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Query is one PromQL expression of a dashboard panel.
type Query struct {
	Panel string
	RefID string
	Expr  string
}

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
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
				out = append(out, Query{Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
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
	return fmt.Sprintf("panel %q query %s (%s): %s", p.Query.Panel, p.Query.RefID, p.Query.Expr, p.Why)
}

// Check runs every query against Prometheus at promURL and reports the
// queries that name a metric missing from exported, fail to evaluate, or
// return no series.
func Check(ctx context.Context, promURL string, queries []Query, exported map[string]bool) []Problem {
	var out []Problem
	for _, q := range queries {
		var missing []string
		for _, name := range metricName.FindAllString(q.Expr, -1) {
			if !exported[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			out = append(out, Problem{q, "the daemon does not export " + strings.Join(missing, ", ")})
			continue
		}
		n, err := InstantSeries(ctx, promURL, Expand(q.Expr))
		switch {
		case err != nil:
			out = append(out, Problem{q, err.Error()})
		case n == 0:
			out = append(out, Problem{q, "no series"})
		}
	}
	return out
}

// InstantSeries evaluates expr now and returns the number of series.
func InstantSeries(ctx context.Context, promURL, expr string) (int, error) {
	u := promURL + "/api/v1/query?" + url.Values{"query": {expr}, "time": {fmt.Sprint(time.Now().Unix())}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return 0, fmt.Errorf("prometheus answered %d: %.200s", resp.StatusCode, raw)
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("prometheus: %s", body.Error)
	}
	if body.Data.ResultType == "scalar" {
		return 1, nil
	}
	return len(body.Data.Result), nil
}
