package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gathered returns the series of one metric family of a registry, each as
// its labels, with its value (a counter's, or a histogram's sample count).
func gathered(t *testing.T, m *Metrics, name string) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			out[labelString(s)] = value(s)
		}
	}
	return out
}

func labelString(s *dto.Metric) string {
	var out string
	for _, l := range s.GetLabel() {
		out += l.GetName() + "=" + l.GetValue() + ","
	}
	return out
}

func value(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Histogram != nil:
		return float64(s.Histogram.GetSampleCount())
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	}
	return -1
}

// TestFreshRegistryHasBaselineSeries: before anything is observed, the
// series the dashboard and the alerts read exist at 0, and nothing more.
func TestFreshRegistryHasBaselineSeries(t *testing.T) {
	m := New("test")

	errs := gathered(t, m, "hsmca_hsm_call_errors_total")
	assert.Len(t, errs, len(KnownHSMFunctions)*len(WatchedHSMErrorCodes))
	for _, fn := range KnownHSMFunctions {
		for _, code := range WatchedHSMErrorCodes {
			v, ok := errs["code="+code+",function="+fn+","]
			assert.True(t, ok, "%s %s", fn, code)
			assert.Zero(t, v)
		}
	}

	assert.Equal(t, map[string]float64{"code=5xx,method=GET,route=" + ScrapeRoute + ",": 0},
		gathered(t, m, "hsmca_http_requests_total"))
	assert.Equal(t, map[string]float64{"key_algorithm=" + BaselineSignAlgorithm + ",operation=" + BaselineSignOperation + ",": 0},
		gathered(t, m, "hsmca_signing_duration_seconds"))
	assert.Equal(t, map[string]float64{
		"event=" + BaselineSignEvent + ",stage=START,":   0,
		"event=" + BaselineSignEvent + ",stage=SUCCESS,": 0,
		"event=" + BaselineSignEvent + ",stage=FAIL,":    0,
	}, gathered(t, m, "hsmca_events_total"))

	// Latencies and the HTTP duration come from the first real calls.
	assert.Empty(t, gathered(t, m, "hsmca_hsm_call_duration_seconds"))
	assert.Empty(t, gathered(t, m, "hsmca_http_request_duration_seconds"))
}

// TestBaselineLabelsAreInTheirSets: every pre-created label value is one
// the observers produce themselves, so a pre-created series is the very
// one the first real observation increments.
func TestBaselineLabelsAreInTheirSets(t *testing.T) {
	seen := map[string]bool{}
	for _, fn := range KnownHSMFunctions {
		assert.Equal(t, fn, HSMFunction(fn), "KnownHSMFunctions: not a PKCS#11 function")
		assert.False(t, seen[fn], "KnownHSMFunctions: %s twice", fn)
		seen[fn] = true
	}
	for _, code := range WatchedHSMErrorCodes {
		assert.Equal(t, code, HSMErrorCode(code), "WatchedHSMErrorCodes: not a code label value")
	}
	assert.Equal(t, BaselineSignAlgorithm, KeyAlgorithm(BaselineSignAlgorithm))

	m := New("test")
	m.AllowRoutes(ScrapeRoute)
	for _, fn := range KnownHSMFunctions {
		for _, code := range WatchedHSMErrorCodes {
			m.ObserveHSMCall(fn, 0, code)
		}
	}
	m.ObserveHTTP(ScrapeRoute, "GET", 503, 0)
	m.ObserveSigning(BaselineSignOperation, BaselineSignAlgorithm, 0)
	m.Event(BaselineSignEvent, StageFail)

	for _, name := range []string{"hsmca_hsm_call_errors_total", "hsmca_http_requests_total", "hsmca_signing_duration_seconds"} {
		for s, v := range gathered(t, m, name) {
			assert.Equal(t, 1.0, v, "%s{%s}: the observation made a new series", name, s)
		}
	}
	ev := gathered(t, m, "hsmca_events_total")
	assert.Len(t, ev, 3)
	assert.Equal(t, 1.0, ev["event="+BaselineSignEvent+",stage=FAIL,"])
}
