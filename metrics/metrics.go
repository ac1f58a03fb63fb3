// Package metrics holds hsmca's Prometheus collectors. They are created once,
// registered on one registry and passed to the packages that observe.
//
// Names follow Prometheus conventions: one hsmca_ prefix, base units,
// _total for counters, _seconds for durations. No label ever carries a
// tenant or a resource id, and every label takes its values from a fixed
// set (labels.go), so series stay bounded whatever clients send.
package metrics

import (
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// GoProcChanges counts the GOMAXPROCS changes of the process's idle
// tuning (hsmca_go_procs_changes_total); the daemon adds to it.
var GoProcChanges atomic.Int64

// Event stages.
const (
	StageStart   = "START"
	StageSuccess = "SUCCESS"
	StageFail    = "FAIL"
)

// Metrics is the set of collectors of one daemon.
type Metrics struct {
	Registry *prometheus.Registry

	// The collectors whose labels take values from outside the program
	// are unexported: they are observed only through ObserveSigning,
	// ObserveHSMCall and ObserveHTTP, which map every value into its fixed
	// set (labels.go).
	signingDuration *prometheus.HistogramVec // operation, key_algorithm
	hsmCallDuration *prometheus.HistogramVec // function
	hsmCallErrors   *prometheus.CounterVec   // function, code
	httpRequests    *prometheus.CounterVec   // route, method, code
	httpDuration    *prometheus.HistogramVec // route, method

	Events         *prometheus.CounterVec   // event, stage
	StoreDuration  *prometheus.HistogramVec // backend, operation
	StoreErrors    *prometheus.CounterVec   // backend, operation
	ComponentUp    *prometheus.GaugeVec     // component (hsm, store)
	BuildInfo      *prometheus.GaugeVec     // version, goversion
	QuotaUsage     *prometheus.GaugeVec     // resource: highest used/limit of any tenant
	CAExpiry       *prometheus.GaugeVec     // kind: seconds until the soonest active CA certificate expires
	CACertificates *prometheus.GaugeVec     // kind: active CA certificates
	CRLOverdue     *prometheus.CounterVec   // family (pca, dts): CRLs served past nextUpdate
	HeavyInFlight  *prometheus.GaugeVec     // operation: heavy operations running
	HeavyWaiting   *prometheus.GaugeVec     // operation: heavy operations waiting for their turn
	HeavyWait      *prometheus.HistogramVec // operation: time a heavy operation waited for its turn
	HeavyRefused   *prometheus.CounterVec   // operation, reason: heavy operations refused
	OCSPAnswers    *prometheus.CounterVec   // status, cache: OCSP answers
	// CredentialChecksAhead counts the credential checks that ran beside
	// their request's work, by outcome (confirmed, carried, refused,
	// throttled).
	CredentialChecksAhead *prometheus.CounterVec
	// CredentialGuardChecks counts the checks of API tokens made as a
	// guard on the token's record alone, by outcome (held, failed).
	CredentialGuardChecks *prometheus.CounterVec
	// EventGroups observes how many event records each append of the
	// event writer carries (group commit).
	EventGroups prometheus.Histogram

	// Event-log export, by sink (a configured name: bounded by the
	// configuration).
	ExportLagRecords *prometheus.GaugeVec   // records in the store the sink has not delivered
	ExportLagSeconds *prometheus.GaugeVec   // age of the oldest of them
	ExportSpooled    *prometheus.GaugeVec   // 1 while the backlog is read back from the store
	ExportRecords    *prometheus.CounterVec // records delivered
	ExportErrors     *prometheus.CounterVec // failed deliveries (the records are sent again)

	sessions atomic.Pointer[func() (int, int64)]
	circuit  atomic.Pointer[func() bool]
	journal  atomic.Pointer[func() (used, size int64, checkpoints uint64)]
	routes   sync.Map // route templates the router registered: string -> struct{}
}

// Latency buckets from 100µs to 10s: an HSM signature takes from about
// 100µs (SoftHSM2 ECDSA) to tens of milliseconds (network HSM, RSA-4096).
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// New creates and registers every collector on a fresh registry, together
// with the Go runtime and process collectors, and creates at 0 the series
// the dashboard and the alerts read (baseline.go).
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		signingDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hsmca_signing_duration_seconds",
			Help:    "Time spent producing one signature in the HSM, by operation and key algorithm.",
			Buckets: latencyBuckets,
		}, []string{"operation", "key_algorithm"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_events_total",
			Help: "Operation events by event name and stage (START, SUCCESS, FAIL).",
		}, []string{"event", "stage"}),
		hsmCallDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hsmca_hsm_call_duration_seconds",
			Help:    "Latency of PKCS#11 operations, by function.",
			Buckets: latencyBuckets,
		}, []string{"function"}),
		hsmCallErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_hsm_call_errors_total",
			Help: "PKCS#11 operations that failed, by function and return code.",
		}, []string{"function", "code"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_http_requests_total",
			Help: "HTTP requests by route template, method and status class.",
		}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hsmca_http_request_duration_seconds",
			Help:    "HTTP request latency by route template and method.",
			Buckets: latencyBuckets,
		}, []string{"route", "method"}),
		StoreDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hsmca_store_operation_duration_seconds",
			Help:    "Latency of metadata store operations, by backend and operation.",
			Buckets: latencyBuckets,
		}, []string{"backend", "operation"}),
		StoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_store_errors_total",
			Help: "Metadata store operations that failed for a reason other than a normal answer (not found, conflict, quota).",
		}, []string{"backend", "operation"}),
		ComponentUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_component_up",
			Help: "1 when the component (hsm, store) answered its last readiness probe, else 0.",
		}, []string{"component"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_build_info",
			Help: "Build information; always 1.",
		}, []string{"version", "goversion"}),
		QuotaUsage: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_quota_usage_ratio",
			Help: "Highest quota use of any tenant for the resource, as a fraction of its limit (1 = full).",
		}, []string{"resource"}),
		CAExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_ca_certificate_expiry_seconds",
			Help: "Seconds until the soonest-expiring active CA certificate of the kind expires (negative once expired).",
		}, []string{"kind"}),
		CACertificates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_ca_certificates",
			Help: "Active CA certificates by kind.",
		}, []string{"kind"}),
		CRLOverdue: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_crl_overdue_total",
			Help: "CRLs found past their nextUpdate when served (each CRL counted once), by family (pca, dts): the background refresh did not replace them.",
		}, []string{"family"}),
		HeavyInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_heavy_operations_in_flight",
			Help: "Costly operations (password exports, RSA key generation, signatures with RSA keys over 4096 bits) running now, by operation.",
		}, []string{"operation"}),
		HeavyWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_heavy_operations_waiting",
			Help: "Costly operations waiting for their turn in the heavy-work pool, by operation.",
		}, []string{"operation"}),
		HeavyWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hsmca_heavy_operation_wait_seconds",
			Help:    "Time a costly operation waited for its turn in the heavy-work pool, by operation.",
			Buckets: latencyBuckets,
		}, []string{"operation"}),
		HeavyRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_heavy_operations_refused_total",
			Help: "Costly operations refused with 503 by the heavy-work pool, by operation and reason (queue_full, timeout, canceled).",
		}, []string{"operation", "reason"}),
		OCSPAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_ocsp_answers_total",
			Help: "OCSP answers by status (good, revoked, unknown, malformed, unauthorized, try_later, internal_error) and cache (hit: a stored answer; miss: signed and stored; fresh: signed for this request alone, for a nonce or an unknown certificate; none: an unsigned error).",
		}, []string{"status", "cache"}),
		CredentialChecksAhead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_credential_checks_ahead_total",
			Help: "API token checks that ran beside their request's work (overlap_credential_check), by outcome: confirmed; carried (made by the script of the request's first write); refused (the token revoked or expired meanwhile, or the store did not answer) or throttled (over its rate limit), whose work was discarded unanswered.",
		}, []string{"outcome"}),
		CredentialGuardChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_credential_guard_checks_total",
			Help: "API token checks made as a guard alone (a token checked in full through this daemon within 30 s; bolt, Redis standalone or Sentinel: its record at the version then, and its rate-limit count, without reading the record), by outcome: held; failed (the record changed, the limit refused or the store did not answer: the full check then decided).",
		}, []string{"outcome"}),
		EventGroups: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hsmca_event_group_records",
			Help:    "Event records per store append of the event writer: records of requests that finished while the previous append was under way go to the store together (one journal sync on bolt, one round trip on Redis).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		ExportLagRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_event_export_lag_records",
			Help: "Event records in the store that the export sink has not delivered yet, over every tenant.",
		}, []string{"sink"}),
		ExportLagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_event_export_lag_seconds",
			Help: "Age of the oldest event record the export sink has not delivered yet (0 when it has them all).",
		}, []string{"sink"}),
		ExportSpooled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hsmca_event_export_spooled",
			Help: "1 while the export sink's backlog is more than one batch, so that it is read back from the store (on disk) rather than streamed, else 0.",
		}, []string{"sink"}),
		ExportRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_event_export_records_total",
			Help: "Event records the export sink delivered (a record sent again after a failure counts again).",
		}, []string{"sink"}),
		ExportErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hsmca_event_export_errors_total",
			Help: "Failed deliveries of the export sink (connection refused or lost, write failed); the records are sent again.",
		}, []string{"sink"}),
	}
	poolSize := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hsmca_hsm_session_pool_size",
		Help: "Size of the PKCS#11 session pool (0 while the HSM is not open): the configured pool_size, less what the token refused.",
	}, func() float64 { n, _ := m.sessionStats(); return float64(n) })
	circuit := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hsmca_hsm_circuit_open",
		Help: "1 while no work is sent to the token because its calls kept passing their deadline (until a probe is answered), else 0.",
	}, func() float64 {
		if f := m.circuit.Load(); f != nil && (*f)() {
			return 1
		}
		return 0
	})
	inUse := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hsmca_hsm_sessions_in_use",
		Help: "PKCS#11 sessions held by operations in progress.",
	}, func() float64 { _, n := m.sessionStats(); return float64(n) })
	journal := func() (int64, int64, uint64) {
		if f := m.journal.Load(); f != nil {
			return (*f)()
		}
		return 0, 0, 0
	}
	journalUsed := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hsmca_bolt_journal_used_ratio",
		Help: "Share of the bolt store's event journal written since its events were last copied into the store file (0 without a journal).",
	}, func() float64 {
		used, size, _ := journal()
		if size == 0 {
			return 0
		}
		return float64(used) / float64(size)
	})
	goProcs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hsmca_go_procs",
		Help: "Processors Go's scheduler runs goroutines on now (GOMAXPROCS): 1 while the daemon serves one request at a time and little else, when idle_one_proc is on.",
	}, func() float64 { return float64(runtime.GOMAXPROCS(0)) })
	goProcChanges := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "hsmca_go_procs_changes_total",
		Help: "Changes of GOMAXPROCS made by idle_one_proc in this process, down to 1 and back.",
	}, func() float64 { return float64(GoProcChanges.Load()) })
	journalCopies := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "hsmca_bolt_journal_checkpoints_total",
		Help: "Times the bolt store's event journal was copied into the store file (by a commit of another write, a checkpoint, or at open after a crash).",
	}, func() float64 { _, _, n := journal(); return float64(n) })
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.signingDuration, m.Events, m.hsmCallDuration, m.hsmCallErrors,
		m.httpRequests, m.httpDuration, m.StoreDuration, m.StoreErrors,
		m.ComponentUp, m.BuildInfo, m.QuotaUsage, m.CAExpiry, m.CACertificates, m.CRLOverdue,
		poolSize, inUse, circuit, journalUsed, journalCopies, goProcs, goProcChanges,
		m.HeavyInFlight, m.HeavyWaiting, m.HeavyWait, m.HeavyRefused,
		m.OCSPAnswers, m.CredentialChecksAhead, m.CredentialGuardChecks, m.EventGroups,
		m.ExportLagRecords, m.ExportLagSeconds, m.ExportSpooled, m.ExportRecords, m.ExportErrors,
	)
	m.BuildInfo.WithLabelValues(version, goVersion()).Set(1)
	m.baseline()
	return m
}

// ExportSink creates the series of an export sink at 0: the dashboard
// and the export alert read them before its first record.
func (m *Metrics) ExportSink(name string) {
	m.ExportLagRecords.WithLabelValues(name)
	m.ExportLagSeconds.WithLabelValues(name)
	m.ExportSpooled.WithLabelValues(name)
	m.ExportRecords.WithLabelValues(name)
	m.ExportErrors.WithLabelValues(name)
}

// SetSessionSource installs the function the session-pool gauges read
// (the open HSM's pool size and sessions in use); nil reports zeros.
func (m *Metrics) SetSessionSource(f func() (poolSize int, inUse int64)) {
	if f == nil {
		m.sessions.Store(nil)
		return
	}
	m.sessions.Store(&f)
}

// SetJournalSource installs the function the bolt event journal's series
// read (boltstore.Store.JournalStats).
func (m *Metrics) SetJournalSource(f func() (used, size int64, checkpoints uint64)) {
	if f == nil {
		m.journal.Store(nil)
		return
	}
	m.journal.Store(&f)
}

// SetCircuitSource installs the function the circuit-breaker gauge reads.
func (m *Metrics) SetCircuitSource(f func() bool) {
	if f == nil {
		m.circuit.Store(nil)
		return
	}
	m.circuit.Store(&f)
}

func (m *Metrics) sessionStats() (int, int64) {
	if f := m.sessions.Load(); f != nil {
		return (*f)()
	}
	return 0, 0
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Event counts one stage of an operation event.
func (m *Metrics) Event(event, stage string) {
	m.Events.WithLabelValues(event, stage).Inc()
}

// ObserveSigning records the latency of one signature. keyAlgorithm is
// bucketed into a fixed set (KeyAlgorithm): an imported key of an odd size
// adds no series.
func (m *Metrics) ObserveSigning(operation, keyAlgorithm string, d time.Duration) {
	m.signingDuration.WithLabelValues(operation, KeyAlgorithm(keyAlgorithm)).Observe(d.Seconds())
}

// ObserveHSMCall records one PKCS#11 operation; code is the CKR_ name on
// failure ("" on success). Function and code are bounded (HSMFunction,
// HSMErrorCode): a vendor's own return value counts as OTHER.
func (m *Metrics) ObserveHSMCall(function string, d time.Duration, code string) {
	fn := HSMFunction(function)
	m.hsmCallDuration.WithLabelValues(fn).Observe(d.Seconds())
	if code != "" {
		m.hsmCallErrors.WithLabelValues(fn, HSMErrorCode(code)).Inc()
	}
}

// AllowRoutes declares route templates (as the router registers them) as
// values of the HTTP route label.
func (m *Metrics) AllowRoutes(templates ...string) {
	for _, t := range templates {
		m.routes.Store(t, struct{}{})
	}
}

// ObserveHTTP records one HTTP request. route is the matched template: one
// not declared with AllowRoutes (or "") counts as "unmatched"; the method
// and the status are mapped to their sets (HTTPMethod, StatusClass). The
// request itself can therefore add no series, whatever it sends.
func (m *Metrics) ObserveHTTP(route, method string, status int, d time.Duration) {
	if _, ok := m.routes.Load(route); !ok || route == "" {
		route = RouteUnmatched
	}
	method = HTTPMethod(method)
	m.httpRequests.WithLabelValues(route, method, StatusClass(status)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}
