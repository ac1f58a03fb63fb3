// Package daemon wires hsmcad together: config -> store -> engine -> HSM
// (opened in the background) -> router -> listeners, and shuts it down in
// the reverse order, draining in-flight requests first.
package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/eventexport"
	"github.com/hsmca/hsmca/internal/families"
	"github.com/hsmca/hsmca/internal/logjson"
	"github.com/hsmca/hsmca/internal/storeopen"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/acme"
	"github.com/hsmca/hsmca/signer/admins"
	"github.com/hsmca/hsmca/signer/apig"
	"github.com/hsmca/hsmca/signer/dts"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/signer/keys"
	"github.com/hsmca/hsmca/signer/ocsp"
	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/redisstore"
)

// Version is set at build time with -ldflags "-X ...daemon.Version=...".
var Version = "dev"

// Daemon is one running hsmcad.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *metrics.Metrics
	store   store.Store
	engine  *signer.Core
	admins  *admins.Service
	acme    *acme.Service
	srv     *http.Server
	ln      net.Listener
	admin   *http.Server
	adminLn net.Listener

	stopHSM context.CancelFunc
	hsmDone chan struct{}

	stopJanitor context.CancelFunc
	janitorDone chan struct{}
	exporter    *eventexport.Exporter
	janitorWG   sync.WaitGroup
	serveWG     sync.WaitGroup
	errc        chan error

	procs *procTuner
	// wrap, when set (tests), wraps the HTTP handler.
	wrap func(http.Handler) http.Handler
}

// backgroundWork is a store that tells of work of its own off the
// request path (boltstore: the copy of its event journal into the file),
// which the daemon runs with every processor (procTuner.hold).
type backgroundWork interface {
	OnBackground(fn func() (done func()))
}

// idleOneProc tells whether the daemon lowers GOMAXPROCS while idle
// (config idle_one_proc): by default on Redis, not on bolt, where a
// request's journal sync blocks its thread and one processor measured no
// faster at one connection (docs/BENCHMARKS.md, eighth round); never when
// the environment sets GOMAXPROCS, the operator's choice.
func idleOneProc(cfg *config.Config) bool {
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		return false
	}
	if cfg.IdleOneProc == nil {
		return cfg.Store.Backend == "redis"
	}
	return *cfg.IdleOneProc
}

// overlapCredentialCheck tells whether token checks may overlap their
// requests' work (config overlap_credential_check): by default on Redis,
// where the check is a round trip; on bolt it is a read of the local file
// that costs less than the goroutine it would run on.
func overlapCredentialCheck(cfg *config.Config) bool {
	if cfg.OverlapCredentialCheck == nil {
		return cfg.Store.Backend == "redis"
	}
	return *cfg.OverlapCredentialCheck
}

// OpenStore opens the configured store backend (see storeopen.Open).
func OpenStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	return storeopen.Open(ctx, cfg)
}

// HSMConfig turns the daemon config into the HSM layer's, reading the PIN.
func HSMConfig(cfg *config.Config, m *metrics.Metrics, log *slog.Logger) (hsm.Config, error) {
	pin, err := hsm.ReadPIN(cfg.PKCS11.PINFile, cfg.PKCS11.PINEnv)
	if err != nil {
		return hsm.Config{}, err
	}
	hc := hsm.Config{
		Module:     cfg.PKCS11.Module,
		TokenLabel: cfg.PKCS11.TokenLabel,
		Slot:       cfg.PKCS11.Slot,
		PIN:        pin,
		PoolSize:   cfg.PKCS11.PoolSize,
		Logger:     log,

		CallTimeout:      cfg.PKCS11.CallTimeout,
		KeygenTimeout:    cfg.PKCS11.KeygenTimeout,
		BreakerThreshold: cfg.PKCS11.BreakerThreshold,
		SessionCopies:    cfg.PKCS11.SessionCopies,
	}
	if m != nil {
		hc.Observer = func(function string, d time.Duration, err error) {
			m.ObserveHSMCall(function, d, hsm.ErrorCode(err))
		}
	}
	return hc, nil
}

// DTSIssuerAltName is the IssuerAlternativeName of managed DTS root CA
// certificates, and the setting it comes from: issuer_alt_name, else the
// daemon's public_base_url, else none ("" : the DTS family then refuses
// managed roots rather than make 20-year roots without it).
func DTSIssuerAltName(cfg *config.Config) (value, setting string) {
	switch {
	case cfg.IssuerAltName != "":
		return cfg.IssuerAltName, "issuer_alt_name"
	case cfg.PublicBaseURL != "":
		return cfg.PublicBaseURL, "public_base_url (the default issuer_alt_name)"
	}
	return "", ""
}

// publicBaseURL is the configured public base URL, checked (Load checks
// it too; a config built in code may not have been) and without a
// trailing slash; "" when unset.
func publicBaseURL(cfg *config.Config) (string, error) {
	if cfg.PublicBaseURL == "" {
		return "", nil
	}
	u, err := config.CheckPublicBaseURL(cfg.PublicBaseURL)
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	return u, nil
}

// Start opens everything and begins serving. It returns once the listener
// is bound; the HSM may still be opening (see /readyz).
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	return start(ctx, cfg, log, nil)
}

func start(ctx context.Context, cfg *config.Config, log *slog.Logger, wrap func(http.Handler) http.Handler) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, metrics: metrics.New(Version), errc: make(chan error, 2), wrap: wrap}
	hc, err := HSMConfig(cfg, d.metrics, log)
	if err != nil {
		return nil, err
	}
	publicBase, err := publicBaseURL(cfg)
	if err != nil {
		return nil, err
	}
	if publicBase == "" {
		log.Info("public_base_url is not set: the certificates the daemon signs name no CRL distribution point " +
			"and no issuer certificate URL")
	}
	ian, ianSetting := DTSIssuerAltName(cfg)
	if ian != "" {
		if err := issuance.ValidIssuerAltName(ian); err != nil {
			return nil, fmt.Errorf("config: %s: %w", ianSetting, err)
		}
	} else {
		log.Warn("neither issuer_alt_name nor public_base_url is set: creating managed DTS root CA certificates " +
			"is refused (503) until one is, since ISO/IEC 18013-5 requires their IssuerAlternativeName")
	}
	opened := time.Now()
	d.store, err = OpenStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store (%s): %w", cfg.Store.Backend, err)
	}
	if b, ok := d.store.(interface{ ReadAhead() int64 }); ok && b.ReadAhead() > 0 {
		log.Info("the bolt file named no list of free pages (the last stop was not clean): read it before the open found them",
			"path", cfg.Store.BoltPath, "bytes", b.ReadAhead(), "took", time.Since(opened).Round(time.Millisecond).String())
	}
	tlsConf, err := serverTLS(cfg)
	if err != nil {
		d.store.Close()
		return nil, err
	}
	d.ln, err = net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		d.store.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.ListenAddr, err)
	}
	d.engine = signer.New(signer.Options{Families: families.All(), Store: d.store, Metrics: d.metrics, Logger: log,
		Quotas: cfg.Quotas, Instance: instanceName(d.ln.Addr()), PublicBaseURL: publicBase})
	d.admins = admins.New(d.engine)
	sinks, err := ExportSinks(cfg)
	if err != nil {
		d.ln.Close()
		d.engine.Close()
		d.store.Close()
		return nil, err
	}
	if tlsConf != nil {
		d.ln = tls.NewListener(d.ln, tlsConf)
	}
	rps := config.DefaultRateLimit
	if p := cfg.RateLimit.RequestsPerSecond; p != nil {
		rps = *p
	}
	publicRPS := config.DefaultPublicRateLimit
	if p := cfg.RateLimit.PublicRequestsPerSecond; p != nil {
		publicRPS = *p
	}
	ocspMode, _ := ocsp.ParseMode(cfg.OCSP.Signer) // config.Load checked it
	ocspCfg := ocsp.Config{Mode: ocspMode}
	pcaSvc := pca.New(d.engine, pca.OCSP(ocspCfg))
	dtsSvc := dts.New(d.engine, dts.IssuerAltName(ian), dts.OCSP(ocspCfg))
	responder := ocsp.NewResponder(d.engine, ocsp.ResponderConfig{FreshRate: cfg.OCSP.FreshRequestsPerSecond,
		FreshBurst: int64(cfg.OCSP.FreshBurst)}, pcaSvc.OCSPPublisher(), dtsSvc.OCSPPublisher())
	d.acme = acme.New(d.engine, pcaSvc, acme.Config{HTTPPort: cfg.ACME.HTTP01Port, HTTPSPort: cfg.ACME.HTTPSPort,
		TLSALPNPort: cfg.ACME.TLSALPN01Port, Resolver: cfg.ACME.Resolver, Timeout: cfg.ACME.ValidationTimeout,
		OrdersPerHour: cfg.ACME.OrdersPerHour, OrderBurst: cfg.ACME.OrderBurst, OpenOrdersPerAccount: cfg.ACME.OpenOrdersPerAccount})
	handler := api.Router(api.Options{Engine: d.engine, Admins: d.admins, PCA: pcaSvc, Logger: log,
		APIG:         apig.New(d.engine),
		Keys:         keys.New(d.engine),
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes, TrustedProxy: cfg.TLS.TrustedProxy,
		RateLimit:              api.RateLimit{RequestsPerSecond: rps, Burst: cfg.RateLimit.Burst},
		PublicRateLimit:        api.PublicRateLimit{RequestsPerSecond: publicRPS, Burst: cfg.RateLimit.PublicBurst},
		DTS:                    dtsSvc,
		OCSP:                   responder,
		ACME:                   d.acme,
		HSTS:                   tlsConf != nil,
		AccessTokenTTL:         cfg.OAuth.AccessTokenTTL,
		PublicBaseURL:          publicBase,
		OverlapCredentialCheck: overlapCredentialCheck(cfg)})
	var h http.Handler = handler
	if idleOneProc(cfg) {
		d.procs = processProcs
		h = d.procs.wrap(h)
		if bg, ok := d.store.(backgroundWork); ok {
			bg.OnBackground(d.procs.hold)
		}
	}
	if d.wrap != nil {
		h = d.wrap(h)
	}
	d.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		WriteTimeout:      cfg.HTTP.WriteTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes(cfg),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if err := d.startAdminSocket(); err != nil {
		d.ln.Close()
		for _, s := range sinks {
			_ = s.Sink.Close()
		}
		d.store.Close()
		return nil, err
	}
	if d.procs != nil {
		d.procs.start()
	}

	hsmCtx, cancel := context.WithCancel(context.Background())
	d.stopHSM = cancel
	d.hsmDone = make(chan struct{})
	go d.openHSM(hsmCtx, hc)
	d.engine.StartInventory(cfg.InventoryInterval)
	janitorCtx, stopJanitor := context.WithCancel(context.Background())
	d.stopJanitor, d.janitorDone = stopJanitor, make(chan struct{})
	go func() {
		defer close(d.janitorDone)
		// The families' janitors: purge private CAs whose scheduled
		// deletion fell due, also in tenants nobody reads, and re-sign
		// the CRLs (PCA and DTS) due for refresh; the first round waits
		// for the HSM to open.
		select {
		case <-time.After(time.Minute):
		case <-janitorCtx.Done():
			return
		}
		d.engine.RunJanitors(janitorCtx, time.Hour)
	}()
	d.janitorWG.Add(1)
	go func() {
		defer d.janitorWG.Done()
		d.checkpointLoop(janitorCtx)
	}()
	if len(sinks) > 0 {
		d.exporter = eventexport.Start(eventexport.Options{Store: d.store, Metrics: d.metrics, Logger: log,
			Instance: instanceName(d.ln.Addr()), Poll: cfg.Events.ExportPollInterval}, sinks)
	}

	d.serveWG.Add(1)
	go func() {
		defer d.serveWG.Done()
		if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.errc <- err
		}
	}()
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	storeName := cfg.Store.Backend
	if rs, ok := d.store.(*redisstore.Store); ok {
		storeName += " " + string(rs.Mode())
		if n, _ := rs.WaitReplicas(); n > 0 {
			storeName += fmt.Sprintf(" (writes wait for %d replica(s))", n)
		}
	}
	log.Info("hsmcad listening", "addr", d.ln.Addr().String(), "scheme", scheme,
		"store", storeName, "token_label", cfg.PKCS11.TokenLabel, "version", Version)
	return d, nil
}

// openHSM opens the token, retrying with backoff while it is missing or the
// module fails, so the daemon can start before its HSM. A wrong or locked
// PIN stops the retries: repeated bad logins lock a token.
func (d *Daemon) openHSM(ctx context.Context, hc hsm.Config) {
	defer close(d.hsmDone)
	backoff := 500 * time.Millisecond
	for {
		h, err := hsm.Open(hc)
		if err == nil {
			d.reconcile(ctx, h)
			d.engine.SetHSM(h)
			d.log.Info("HSM token open", "token_label", hc.TokenLabel)
			d.reconcileLoop(ctx)
			return
		}
		reason := err.Error()
		d.engine.SetHSMDown(reason)
		if hsm.IsPINError(err) {
			d.log.Error("HSM login refused; not retrying (a token locks after repeated bad PINs): fix the PIN and restart", "err", reason)
			return
		}
		d.log.Warn("HSM not available yet; retrying", "err", reason, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// sharedGrace is how old another replica's intent must be before the
// reconciler settles it: longer than any operation runs.
const sharedGrace = 2 * time.Minute

// instanceName names this replica stably across restarts: the host and
// the bound listen address. No two live replicas share it (one address is
// bound once per host), and a replica restarted after a crash finds the
// same name on its own leftover intents.
func instanceName(addr net.Addr) string {
	host, _ := os.Hostname()
	return host + "/" + addr.String()
}

// reconcile settles intents left by a crash before the HSM serves
// requests. On bolt this daemon is the only writer, so every intent is a
// leftover; on Redis its own earlier life's intents are too, while other
// replicas' intents are left sharedGrace.
func (d *Daemon) reconcile(ctx context.Context, h *hsm.HSM) {
	grace := time.Duration(0)
	if d.cfg.Store.Backend == "redis" {
		grace = sharedGrace
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if n, err := h.SweepRemnants(rctx); err != nil {
		d.log.Warn("could not sweep empty HSM objects a crash left", "err", err.Error())
	} else if n > 0 {
		d.log.Info("destroyed empty HSM objects a crash left mid-creation", "objects", n)
	}
	rep, err := d.engine.ReconcileAtStart(rctx, h, grace)
	if err != nil {
		d.log.Error("start-up reconciliation incomplete; it runs again at the next start", "err", err.Error())
		return
	}
	if rep.Intents > 0 || rep.Skipped > 0 {
		d.log.Info("start-up reconciliation", "intents", rep.Intents, "keys_destroyed", rep.Destroyed,
			"keys_kept", rep.Kept, "keys_appeared_late", rep.Late, "intents_too_recent", rep.Skipped)
	}
}

// reconcileLoop settles leftovers without a restart, once they are older
// than sharedGrace, every sharedGrace/2 until ctx ends: those of replicas
// that crashed and did not come back under the same name, and this
// daemon's own when the HSM or the store failed while a key was being
// created (the key could then be neither committed nor destroyed).
func (d *Daemon) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(sharedGrace / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		rep, err := d.engine.Reconcile(rctx, nil, sharedGrace)
		cancel()
		switch {
		case err != nil:
			d.log.Warn("periodic reconciliation incomplete; it runs again", "err", err.Error())
		case rep.Intents > 0:
			d.log.Info("periodic reconciliation", "intents", rep.Intents, "keys_destroyed", rep.Destroyed, "keys_kept", rep.Kept)
		}
	}
}

// maxHeaderBytes is the configured bound of a request's line and headers.
// Go's server reads up to this plus 4 KiB before answering 431, the
// request line (and so the method) included.
func maxHeaderBytes(cfg *config.Config) int {
	if n := cfg.HTTP.MaxHeaderBytes; n > 0 {
		return n
	}
	return config.DefaultMaxHeaderBytes
}

// tls12Suites are the only cipher suites offered to TLS 1.2 clients:
// ECDHE key exchange (forward secrecy) with an AEAD (AES-GCM or
// ChaCha20-Poly1305); no CBC, no SHA-1 MAC, no RSA key exchange. TLS 1.3
// has only such suites and Go does not let them be configured.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func serverTLS(cfg *config.Config) (*tls.Config, error) {
	if !cfg.TLSEnabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tls12Suites,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if cfg.TLS.ClientCA != "" {
		pem, err := os.ReadFile(cfg.TLS.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no PEM certificate found", cfg.TLS.ClientCA)
		}
		tc.ClientCAs = pool
		// Token callers present no certificate; admins must present a valid one.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// startAdminSocket serves the ops CLI on a unix socket only the daemon's
// user can open, so `hsmca token create` works while the daemon holds the
// bolt file.
func (d *Daemon) startAdminSocket() error {
	path := d.cfg.AdminSocket
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("admin socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s is in use: another hsmcad runs with this data directory", path)
	}
	_ = os.Remove(path)
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("admin socket: %w", err)
	}
	d.adminLn = ln
	d.admin = &http.Server{Handler: api.AdminSocketHandler(d.engine, d.admins, d.log, d.acme), ReadHeaderTimeout: 5 * time.Second}
	d.serveWG.Add(1)
	go func() {
		defer d.serveWG.Done()
		if err := d.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.errc <- err
		}
	}()
	return nil
}

// Addr is the bound listener address.
func (d *Daemon) Addr() string { return d.ln.Addr().String() }

// Engine exposes the engine (tests and ops).
func (d *Daemon) Engine() *signer.Core { return d.engine }

// Errors reports fatal serving errors.
func (d *Daemon) Errors() <-chan error { return d.errc }

// Shutdown stops accepting, waits for in-flight requests (up to the
// configured timeout), then flushes events and closes the HSM and store.
func (d *Daemon) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.HTTP.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := d.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("drain: %w", err))
	}
	if d.admin != nil {
		_ = d.admin.Shutdown(ctx)
		_ = os.Remove(d.cfg.AdminSocket)
	}
	d.serveWG.Wait()
	if d.procs != nil {
		if bg, ok := d.store.(backgroundWork); ok {
			bg.OnBackground(nil)
		}
		d.procs.end()
		d.procs = nil
	}
	d.stopJanitor()
	<-d.janitorDone
	d.janitorWG.Wait()
	if d.exporter != nil {
		d.exporter.Stop()
	}
	d.stopHSM()
	<-d.hsmDone
	if err := d.engine.Close(); err != nil {
		errs = append(errs, fmt.Errorf("hsm: %w", err))
	}
	if err := d.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("store: %w", err))
	}
	return errors.Join(errs...)
}

// NewLogger builds the JSON logger at a level name (slog's JSON handler;
// the API writes its access lines through it directly, logjson).
func NewLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(logjson.New(w, l))
}
