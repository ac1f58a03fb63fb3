package metrics

// Series that exist at 0 from the start.
//
// A labelled series appears the first time it is observed. Until then a
// dashboard panel or an alert over it has nothing to read ("No data"), and
// the first increment of a new counter is lost to rate() and increase():
// Prometheus first sees it at 1. New therefore creates at 0 the series
// that the dashboard (deploy/grafana) and the alert rules
// (deploy/prometheus) read and that nothing else produces before the first
// request or fault. The set is kept small (each series shows as one more
// line or bar on a panel):
//
//	hsmca_hsm_call_errors_total      KnownHSMFunctions × WatchedHSMErrorCodes
//	hsmca_http_requests_total        the scrape route's 5xx (the error ratio's numerator)
//	hsmca_signing_duration_seconds   a native API signature with an EC256 key
//	hsmca_events_total               that signature's event, in each stage
//
// The rest needs nothing here: the scrape itself makes the HTTP series, the
// first readiness probe (at start, then every inventory_interval) the
// PKCS#11 latency, store latency and hsmca_component_up series, the first
// inventory the quota-use and CA-count gauges, and the signer the store
// error and heavy-work series (for every operation), and each configured
// event export sink its series (ExportSink). The CA expiry gauge
// stays absent until a CA exists: 0 would read "expires now" and fire the
// expiry alert.

// KnownHSMFunctions are the PKCS#11 functions the HSM layer reports to
// ObserveHSMCall. Every one has its hsmca_hsm_call_errors_total series for
// each of WatchedHSMErrorCodes from the start. A function the HSM layer
// starts calling is added here (it must be a C_ name of the standard:
// HSMFunction).
var KnownHSMFunctions = []string{
	"C_OpenSession",
	"C_Login",
	"C_GetTokenInfo",
	"C_GetSessionInfo",
	"C_FindObjects",
	"C_GetAttributeValue",
	"C_GenerateKeyPair",
	"C_GenerateKey",
	"C_CreateObject",
	"C_CopyObject",
	"C_DestroyObject",
	"C_Sign",
	"C_Encrypt",
	"C_Decrypt",
}

// WatchedHSMErrorCodes are the error codes whose first occurrence must
// show on the dashboard's PKCS#11 errors panel: the HSM layer's own codes
// of a token that stalls or cannot be reached. Each must be a value of the
// code label (HSMErrorCode).
var WatchedHSMErrorCodes = []string{
	"timeout",
}

// ScrapeRoute is the route template of the metrics endpoint. Its 5xx
// series exists from the start, so that the error ratio (panel and alert)
// has a numerator before the first server error.
const ScrapeRoute = "/metrics"

// The signature whose duration and event series exist from the start: one
// through the native keys API with an EC256 key (the README's example).
const (
	BaselineSignOperation = "key_sign"
	BaselineSignAlgorithm = "EC256"
	BaselineSignEvent     = "KEY_SIGN"
)

// baseline creates the series listed above at 0.
func (m *Metrics) baseline() {
	for _, fn := range KnownHSMFunctions {
		for _, code := range WatchedHSMErrorCodes {
			m.hsmCallErrors.WithLabelValues(HSMFunction(fn), HSMErrorCode(code))
		}
	}
	m.httpRequests.WithLabelValues(ScrapeRoute, "GET", StatusClass(500))
	m.signingDuration.WithLabelValues(BaselineSignOperation, KeyAlgorithm(BaselineSignAlgorithm))
	for _, stage := range []string{StageStart, StageSuccess, StageFail} {
		m.Events.WithLabelValues(BaselineSignEvent, stage)
	}
}
