package monitoring

import (
	"context"
	"fmt"
	"regexp"

	"gopkg.in/yaml.v3"
)

// Rule is one alerting rule of a Prometheus rules file.
type Rule struct {
	Alert string
	Expr  string
}

// Rules lists the alerting rules of a Prometheus rules file.
func Rules(raw []byte) ([]Rule, error) {
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	var out []Rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, Rule{Alert: r.Alert, Expr: r.Expr})
			}
		}
	}
	return out, nil
}

// A vector selector: a metric name with its label matchers, or an hsmca_
// name alone (as inside rate(...[5m])). Label values here hold no brace.
var selector = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\}|\bhsmca_[a-zA-Z0-9_]+`)

// Selectors lists the vector selectors of a PromQL expression.
func Selectors(expr string) []string {
	return selector.FindAllString(expr, -1)
}

// CheckRules evaluates every selector of every rule against Prometheus at
// promURL and reports those that return no series: the rule reads
// nothing, so it can neither fire nor show as resolved, and a counter
// that appears with its first increment hides that increment from
// rate(). absent names the selectors allowed to be empty, each with why.
func CheckRules(ctx context.Context, promURL string, rules []Rule, absent map[string]string) []Problem {
	var out []Problem
	for _, r := range rules {
		for _, sel := range Selectors(r.Expr) {
			if _, ok := absent[sel]; ok {
				continue
			}
			q := Query{Panel: "alert " + r.Alert, RefID: "selector", Expr: sel}
			n, err := InstantSeries(ctx, promURL, sel)
			switch {
			case err != nil:
				out = append(out, Problem{q, err.Error()})
			case n == 0:
				out = append(out, Problem{q, "no series"})
			}
		}
	}
	return out
}
