package monitoring_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/monitoring"
)

func TestSelectors(t *testing.T) {
	for expr, want := range map[string][]string{
		`up{job="hsmca"} == 0`: {`up{job="hsmca"}`},
		`sum by (instance) (rate(hsmca_http_requests_total{code="5xx", route!="unmatched"}[5m]))
		  / sum by (instance) (rate(hsmca_http_requests_total{route!="unmatched"}[5m])) > 0.05`: {
			`hsmca_http_requests_total{code="5xx", route!="unmatched"}`, `hsmca_http_requests_total{route!="unmatched"}`},
		`histogram_quantile(0.99, sum by (instance, le) (rate(hsmca_signing_duration_seconds_bucket[5m]))) > 0.25`: {
			`hsmca_signing_duration_seconds_bucket`},
		`hsmca_ca_certificate_expiry_seconds < 30 * 86400`: {`hsmca_ca_certificate_expiry_seconds`},
	} {
		assert.Equal(t, want, monitoring.Selectors(expr), expr)
	}
}

// TestDeployFilesParse: every alert rule of deploy/prometheus has an
// expression with a selector, and the dashboard's CA expiry and event
// export panels say what they show before any CA or sink exists.
func TestDeployFilesParse(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/prometheus/alerts.yml"))
	require.NoError(t, err)
	rules, err := monitoring.Rules(raw)
	require.NoError(t, err)
	require.NotEmpty(t, rules)
	for _, r := range rules {
		assert.NotEmpty(t, monitoring.Selectors(r.Expr), r.Alert)
	}

	raw, err = os.ReadFile(filepath.Join(repoRoot(t), "deploy/grafana/hsmca.json"))
	require.NoError(t, err)
	queries, err := monitoring.Queries(raw)
	require.NoError(t, err)
	noValue := map[string]string{}
	for _, q := range queries {
		if q.NoValue != "" {
			noValue[q.Panel] = q.NoValue
		}
	}
	assert.Equal(t, map[string]string{"CA certificate expiry": "no active CA",
		"Event export lag": "no export sink configured", "Event export backlog": "no export sink configured"}, noValue)
}
