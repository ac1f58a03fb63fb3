package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const metricsBefore = `# HELP hsmca_http_request_duration_seconds HTTP request latency.
# TYPE hsmca_http_request_duration_seconds histogram
hsmca_http_request_duration_seconds_bucket{method="POST",route="/v1/keys/:id/sign",le="0.001"} 10
hsmca_http_request_duration_seconds_sum{method="POST",route="/v1/keys/:id/sign"} 0.005
hsmca_http_request_duration_seconds_count{method="POST",route="/v1/keys/:id/sign"} 10
hsmca_http_request_duration_seconds_sum{method="GET",route="/metrics"} 0.5
hsmca_http_request_duration_seconds_count{method="GET",route="/metrics"} 1
hsmca_hsm_call_duration_seconds_sum{function="C_Sign"} 0.002
hsmca_hsm_call_duration_seconds_count{function="C_Sign"} 10
hsmca_store_operation_duration_seconds_sum{backend="redis",operation="append_events"} 0.001
hsmca_store_operation_duration_seconds_count{backend="redis",operation="append_events"} 10
hsmca_signing_duration_seconds_sum{key_algorithm="EC256",operation="key_sign"} 9
hsmca_signing_duration_seconds_count{key_algorithm="EC256",operation="key_sign"} 10
# TYPE hsmca_event_group_records histogram
hsmca_event_group_records_bucket{le="1"} 4
hsmca_event_group_records_sum 10
hsmca_event_group_records_count 4
go_goroutines 12
`

const metricsAfter = `hsmca_http_request_duration_seconds_sum{method="POST",route="/v1/keys/:id/sign"} 0.505
hsmca_http_request_duration_seconds_count{method="POST",route="/v1/keys/:id/sign"} 1010
hsmca_http_request_duration_seconds_sum{method="POST",route="/v1/keys"} 0.1
hsmca_http_request_duration_seconds_count{method="POST",route="/v1/keys"} 1
hsmca_http_request_duration_seconds_sum{method="GET",route="/metrics"} 1.5
hsmca_http_request_duration_seconds_count{method="GET",route="/metrics"} 2000
hsmca_hsm_call_duration_seconds_sum{function="C_Sign"} 0.162
hsmca_hsm_call_duration_seconds_count{function="C_Sign"} 1010
hsmca_hsm_call_duration_seconds_sum{function="C_FindObjects"} 0.0001
hsmca_hsm_call_duration_seconds_count{function="C_FindObjects"} 0
hsmca_store_operation_duration_seconds_sum{backend="redis",operation="append_events"} 0.141
hsmca_store_operation_duration_seconds_count{backend="redis",operation="append_events"} 1010
hsmca_store_operation_duration_seconds_sum{backend="redis",operation="get_by_unique_throttled"} 0.13
hsmca_store_operation_duration_seconds_sum{backend="redis",operation="quota_usage"} 0.002
hsmca_store_operation_duration_seconds_count{backend="redis",operation="quota_usage"} 2
hsmca_hsm_call_duration_seconds_sum{function="C_GetSessionInfo"} 0.0002
hsmca_hsm_call_duration_seconds_count{function="C_GetSessionInfo"} 4
hsmca_store_operation_duration_seconds_count{backend="redis",operation="get_by_unique_throttled"} 1000
hsmca_signing_duration_seconds_sum{key_algorithm="EC256",operation="key_sign"} 99
hsmca_signing_duration_seconds_count{key_algorithm="EC256",operation="key_sign"} 1010
hsmca_event_group_records_bucket{le="1"} 4
hsmca_event_group_records_sum 1010
hsmca_event_group_records_count 84
go_goroutines 80
`

// Inside reads the handler's time and its timed parts between two
// scrapes: the busiest route (never /metrics), every HSM function and
// store operation that ran, as means per request, largest first.
func TestInsideOfTwoScrapes(t *testing.T) {
	a, err := parseTimings(strings.NewReader(metricsBefore))
	require.NoError(t, err)
	b, err := parseTimings(strings.NewReader(metricsAfter))
	require.NoError(t, err)
	assert.Equal(t, sumCount{0.002, 10}, a["hsmca_hsm_call_duration_seconds/C_Sign"])
	assert.NotContains(t, a, "hsmca_signing_duration_seconds/key_sign", "only the families Inside reads")

	in := insideOf(a, b)
	require.NotNil(t, in)
	assert.Equal(t, "/v1/keys/:id/sign", in.Route)
	assert.Equal(t, 1000, in.Requests)
	assert.InDelta(t, 500*time.Microsecond, in.Mean, float64(time.Microsecond))
	require.Len(t, in.Parts, 3, "C_FindObjects did not run in the window; the probe's call and the scrape's reads are not on a request's path")
	names := []string{in.Parts[0].Name, in.Parts[1].Name, in.Parts[2].Name}
	assert.Equal(t, []string{"HSM C_Sign", "store append_events", "store get_by_unique_throttled"}, names)
	assert.InDelta(t, 160*time.Microsecond, in.Parts[0].Mean, float64(time.Microsecond))
	assert.InDelta(t, 140*time.Microsecond, in.Parts[1].Mean, float64(time.Microsecond))
	assert.InDelta(t, 130*time.Microsecond, in.Parts[2].Mean, float64(time.Microsecond))
	assert.InDelta(t, 70*time.Microsecond, in.Rest, float64(time.Microsecond), "background work is not taken from the handler's time")
	assert.Equal(t, "500 µs = HSM C_Sign 160 + store append_events 140 + store get_by_unique_throttled 130 + the rest 70", in.String())

	// The event writer's groups: 1,000 records in 80 appends; no other
	// unlabelled series is read.
	assert.InDelta(t, 12.5, recordsPerAppend(a, b), 1e-9)
	assert.NotContains(t, a, "go_goroutines/")
	assert.Zero(t, recordsPerAppend(b, b))

	// Nothing but /metrics between the scrapes: no window to read.
	assert.Nil(t, insideOf(b, b))

	// A bad value is an error, not a zero.
	_, err = parseTimings(strings.NewReader(`hsmca_hsm_call_duration_seconds_sum{function="C_Sign"} x` + "\n"))
	assert.Error(t, err)
}

// labelValue finds a label anywhere in the list, and nothing in a list
// that does not hold it.
func TestLabelValue(t *testing.T) {
	assert.Equal(t, "C_Sign", labelValue(`function="C_Sign"`, "function"))
	assert.Equal(t, "/v1/keys", labelValue(`method="POST",route="/v1/keys"`, "route"))
	assert.Equal(t, "create", labelValue(`backend="bolt",operation="create"`, "operation"))
	assert.Empty(t, labelValue(`backend="bolt"`, "operation"))
	assert.Empty(t, labelValue(`backend="bolt`, "backend"))
}

// scrapeTimings reads a real HTTP answer, and a refusal is an error, not
// an empty scrape.
func TestScrapeTimings(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/metrics", r.URL.Path)
		_, _ = io.WriteString(w, metricsAfter)
	}))
	defer ok.Close()
	got, err := scrapeTimings(context.Background(), ok.URL)
	require.NoError(t, err)
	assert.Equal(t, sumCount{0.162, 1010}, got["hsmca_hsm_call_duration_seconds/C_Sign"])

	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer refused.Close()
	_, err = scrapeTimings(context.Background(), refused.URL)
	assert.ErrorContains(t, err, "503")
}
