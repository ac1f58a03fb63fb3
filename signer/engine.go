// Package signer is hsmca's engine: authorities, issuance, revocation,
// certificate import checks, data signing, quotas and events. It knows
// nothing of HTTP; the api package adapts it to each wire family.
package signer

import (
	"context"
	"crypto"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/store"
)

// HSM is what the engine needs of the key store; *hsm.HSM implements it.
type HSM interface {
	Health(ctx context.Context) error
	Close() error
	Generate(ctx context.Context, id, label string, alg hsm.Algorithm) (crypto.Signer, error)
	Import(ctx context.Context, id, label string, key crypto.PrivateKey) (crypto.Signer, error)
	Signer(ctx context.Context, id string) (crypto.Signer, error)
	Delete(ctx context.Context, id string) error
	Exists(ctx context.Context, id string) (bool, error)
	EnsureWrappingKey(ctx context.Context, id, label string) error
	Wrap(ctx context.Context, wrapID string, plaintext, aad []byte) ([]byte, error)
	Unwrap(ctx context.Context, wrapID string, blob, aad []byte) ([]byte, error)
	// Supports, SupportsFeature and SupportsKey say whether the token has
	// the mechanisms an algorithm, a feature (hsm.FeaturePSS,
	// hsm.FeatureWrap) or an imported key needs: nil, or an error
	// wrapping hsm.ErrUnsupported naming what is missing.
	Supports(alg hsm.Algorithm) error
	SupportsFeature(feature string) error
	SupportsKey(pub crypto.PublicKey) error
}

// Options configure a Core.
type Options struct {
	Store   store.Store
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// HSM may be nil at start: the daemon opens the token in the background
	// and calls SetHSM when it appears.
	HSM HSM
	// Quotas override the per-tenant default limits by resource name
	// (the Quota* constants).
	Quotas map[string]int64
	// Instance names this replica stably across its restarts (the daemon
	// uses host name and listen address). Intents carry it, so that a
	// replica restarting after a crash settles its own leftovers at once
	// instead of waiting out the grace it leaves other replicas.
	Instance string
	// LateKeyWindow is how long after its intent a key creation sent
	// before a crash may still land in the token, for the start-up
	// reconciliation (ReconcileAtStart): 0 means DefaultLateKeyWindow, a
	// negative value no wait.
	LateKeyWindow time.Duration
	// HeavyWork bounds the costly operations running at once (heavy.go).
	HeavyWork HeavyWork
	// Families are the API families served (internal/families lists them).
	// The core learns what it needs of a family (indexes, quotas, key
	// owners, CA expiry, janitors) only from here.
	Families []Family
	// Now is the clock, time.Now when nil; tests set it to move time.
	Now func() time.Time
	// PublicBaseURL is the daemon's URL as relying parties reach it
	// (config public_base_url, checked at start), under which the
	// families' public routes serve CRLs and CA certificates; empty: the
	// certificates the families sign name no such URL.
	PublicBaseURL string
}

// Core is the shared machinery behind every API family: the run envelope
// and event log, errors, the HSM and key lifecycle, quotas, tokens and
// store metrics. It learns what it needs of a family from the Family data
// the family registers.
type Core struct {
	families  []Family
	quotaDef  map[string]QuotaDefault // by resource, from families
	wrapKnown sync.Map                // wrapKeyOf -> true: wrapping keys known to exist (Seal)

	store   store.Store
	metrics *metrics.Metrics
	log     *slog.Logger
	events  *eventWriter
	// eventsWithCreate: the store writes an operation's event with its
	// Create (store.EventsWithCreate; see Op.WithEvent).
	eventsWithCreate bool
	// eventCreateIdle: only while the event writer is idle, and one at a
	// time, held in aloneCreate (store.EventCreateAlone).
	eventCreateIdle bool
	aloneCreate     atomic.Bool
	inflight        atomic.Int64 // operations between Start and Done
	// guardedEvents: the store appends records under guards
	// (store.GuardedEvents; see Op.DoneIf).
	guardedEvents bool
	// credentialGuards: the store's guarded appends can carry the check
	// of a request's credential (store.CredentialGuards; credcheck.go).
	credentialGuards bool
	// guardChecks: the store checks a guard alone (store.GuardChecker),
	// which checks a token known lately (checkKnown).
	guardChecks bool

	hsm     atomic.Pointer[hsmBox]
	hsmMu   sync.Mutex
	hsmDown atomic.Pointer[string] // why the HSM is not open yet

	quotas    map[string]int64
	quotaFull sync.Map // quotaKey -> time a quota was found full (QuotaFreeIfFull)
	instance  string
	lateKeys  time.Duration // Options.LateKeyWindow

	inventoryStop chan struct{}
	inventoryDone chan struct{}
	inventoryOnce sync.Once

	secrets   secretCache        // opened access-key secrets (accesskeys.go)
	tokenSeen sync.Map           // token id -> time of the last last-used write
	tokens    *BytesCache[Token] // API tokens, read on every request
	// knownTokens: tokens found valid at their last check, whose next
	// request may run beside its check (credcheck.go).
	knownTokens knownTokens
	now         func() time.Time

	crlBackfilled sync.Map // index kind -> true: DueCRLs scheduled its older entries
	overdueCRLs   sync.Map // "family/id" -> nextUpdate (ms) of an overdue CRL already reported
	crlBuilds     sync.Map // "family/id" -> *crlBuild: the CRL builds of this process (BuildCRL)

	heavyWork *heavyPool

	publicBase string
}

type hsmBox struct{ h HSM }

// New builds an engine. Call Close to flush pending event records.
func New(o Options) *Core {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New("dev")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	_, withCreate := o.Store.(store.EventsWithCreate)
	_, createIdle := o.Store.(store.EventCreateAlone)
	_, guarded := o.Store.(store.GuardedEvents)
	cg, ok := o.Store.(store.CredentialGuards)
	credGuards := ok && guarded && cg.CredentialGuards()
	gc, ok := o.Store.(store.GuardChecker)
	guardChecks := ok && gc.GuardChecks()
	if js, ok := o.Store.(interface {
		JournalStats() (int64, int64, uint64)
	}); ok {
		o.Metrics.SetJournalSource(js.JournalStats)
	}
	o.Store = observeStore(o.Store, o.Metrics, credGuards)
	e := &Core{store: o.Store, metrics: o.Metrics, log: o.Logger, now: o.Now, eventsWithCreate: withCreate, eventCreateIdle: createIdle, guardedEvents: guarded, credentialGuards: credGuards, guardChecks: guardChecks,
		quotas: o.Quotas, instance: o.Instance,
		tokens:    JSONCache[Token](),
		heavyWork: newHeavyPool(o.HeavyWork, o.Metrics)}
	switch {
	case o.LateKeyWindow == 0:
		e.lateKeys = DefaultLateKeyWindow
	case o.LateKeyWindow > 0:
		e.lateKeys = o.LateKeyWindow
	}
	e.publicBase = strings.TrimRight(o.PublicBaseURL, "/")
	e.setFamilies(o.Families)
	e.events = newEventWriter(o.Store, o.Logger)
	e.events.groups = o.Metrics.EventGroups
	if o.HSM != nil {
		e.SetHSM(o.HSM)
	} else {
		e.SetHSMDown("HSM not opened yet")
	}
	return e
}

// Store returns the engine's store, timed by the store metrics: families
// read and write their records through it.
func (e *Core) Store() store.Store { return e.store }

// Metrics returns the collectors.
func (e *Core) Metrics() *metrics.Metrics { return e.metrics }

// Log returns the engine's logger.
func (e *Core) Log() *slog.Logger { return e.log }

// PublicURL is the absolute URL at which relying parties reach path (a
// public route, "/...") of this daemon, or "" when no public base URL is
// configured: the families then write no URL into certificates.
func (e *Core) PublicURL(path string) string {
	if e.publicBase == "" {
		return ""
	}
	return e.publicBase + path
}

// Now is the engine's clock (Options.Now): every validity window, expiry
// and schedule reads it, so that tests can move time.
func (e *Core) Now() time.Time { return e.now() }

// SetHSM installs the opened HSM.
func (e *Core) SetHSM(h HSM) {
	e.hsm.Store(&hsmBox{h: h})
	e.hsmDown.Store(nil)
	if sp, ok := h.(interface{ Sessions() (int, int64) }); ok {
		e.metrics.SetSessionSource(sp.Sessions)
	}
	if cb, ok := h.(interface{ BreakerOpen() bool }); ok {
		e.metrics.SetCircuitSource(cb.BreakerOpen)
	}
}

// SetHSMDown records why the HSM is not available yet.
func (e *Core) SetHSMDown(reason string) { e.hsmDown.Store(&reason) }

// HSM returns the open HSM or an unavailable error saying why there is none.
func (e *Core) HSM() (HSM, error) {
	if b := e.hsm.Load(); b != nil {
		return b.h, nil
	}
	reason := "HSM not available"
	if r := e.hsmDown.Load(); r != nil {
		reason = *r
	}
	return nil, &Error{Kind: KindUnavailable, Msg: "HSM unavailable: " + reason}
}

// Close flushes pending event records and closes the HSM. The store is
// the caller's to close.
func (e *Core) Close() error {
	e.stopInventory()
	e.events.close()
	if b := e.hsm.Load(); b != nil {
		return b.h.Close()
	}
	return nil
}

// Readiness probes the HSM and the store concurrently and returns the error
// of each component that failed, by name ("hsm", "store").
func (e *Core) Readiness(ctx context.Context) map[string]error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		fail = map[string]error{}
		wg   sync.WaitGroup
	)
	probe := func(name string, f func(context.Context) error) {
		defer wg.Done()
		err := f(ctx)
		up := 1.0
		if err != nil {
			up = 0
			mu.Lock()
			fail[name] = err
			mu.Unlock()
		}
		e.metrics.ComponentUp.WithLabelValues(name).Set(up)
	}
	wg.Add(2)
	go probe("hsm", func(ctx context.Context) error {
		h, err := e.HSM()
		if err != nil {
			return err
		}
		return h.Health(ctx)
	})
	go probe("store", e.store.Ping)
	wg.Wait()
	return fail
}

// Caller identifies who asks, for authorisation and the event log.
type Caller struct {
	Tenant    string   // empty for platform principals
	Principal string   // "token:<id>" or "admin:<serial>" or "ops:<user>"
	Roles     []string // tenant or platform roles
	RequestID string
	// Check, when set, is the check of the caller's credential, still
	// running beside the request's work (AuthenticateTokenAhead): every
	// write and the answer wait for it (AwaitCredential).
	Check *CredentialCheck
}

type callerKey struct{}

// WithCaller attaches the caller to a context.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller of a context (zero when none).
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}
