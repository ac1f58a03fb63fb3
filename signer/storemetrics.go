package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/store"
)

// observedStore times every store call and counts the failures that are
// not normal answers (not found, exists, quota, conflict, bad request):
// hsmca_store_operation_duration_seconds and hsmca_store_errors_total.
// Every write first waits for the check of the caller's credential when
// it runs beside the request (AwaitCredential), and a refusal writes
// nothing.
type observedStore struct {
	store.Store
	m       *metrics.Metrics
	backend string
	// carry: a Create may carry the deferred check of the caller's
	// credential (store.CredentialGuards; credcheck.go).
	carry bool
}

func observeStore(s store.Store, m *metrics.Metrics, carry bool) store.Store {
	if s == nil {
		return nil
	}
	if _, done := s.(*observedStore); done {
		return s
	}
	o := &observedStore{Store: s, m: m, backend: s.Backend(), carry: carry}
	// Zero-valued error series exist from the start, so that rate() and
	// alerts see 0 rather than nothing.
	for _, op := range storeOps {
		m.StoreErrors.WithLabelValues(o.backend, op)
	}
	return o
}

var storeOps = []string{"ping", "create", "get", "get_by_unique", "update", "delete", "list",
	"reserve_quota", "release_quota", "quota_usage", "set_quota_usage", "count",
	"put_intent", "delete_intent", "list_intents", "append_events", "list_events", "event_head", "event_tenants", "throttle", "check_guard"}

func (o *observedStore) done(op string, start time.Time, err error) {
	o.m.StoreDuration.WithLabelValues(o.backend, op).Observe(time.Since(start).Seconds())
	if err != nil && !normalStoreAnswer(err) {
		o.m.StoreErrors.WithLabelValues(o.backend, op).Inc()
	}
}

func normalStoreAnswer(err error) bool {
	for _, e := range []error{store.ErrNotFound, store.ErrExists, store.ErrQuotaExceeded,
		store.ErrVersionConflict, store.ErrInvalid, context.Canceled} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (o *observedStore) Ping(ctx context.Context) error {
	t := time.Now()
	err := o.Store.Ping(ctx)
	o.done("ping", t, err)
	return err
}

// Create carries the deferred check of the caller's credential, when
// there is one to carry (CredentialCheck.guard), in the record's guard:
// when that fails nothing is written, the check runs, and its refusal is
// the answer, or the record is created without it.
func (o *observedStore) Create(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	if cg, p := pendingCheck(ctx, o.carry); cg != nil {
		carried := opts
		carried.Guard = withGuard(opts.Guard, cg)
		t := time.Now()
		err := o.Store.Create(ctx, rec, carried)
		o.done("create", t, err)
		if err == nil {
			p.carried()
		}
		if !errors.Is(err, store.ErrVersionConflict) {
			return err
		}
	}
	if err := AwaitCredential(ctx); err != nil {
		return err
	}
	t := time.Now()
	err := o.Store.Create(ctx, rec, opts)
	o.done("create", t, err)
	return err
}

// withGuard is g with then chained after it (store.Guard.And).
func withGuard(g, then *store.Guard) *store.Guard {
	if g == nil {
		return then
	}
	c := *g
	c.And = withGuard(g.And, then)
	return &c
}

func (o *observedStore) Get(ctx context.Context, kind, tenant, id string) (*store.Record, error) {
	t := time.Now()
	r, err := o.Store.Get(ctx, kind, tenant, id)
	o.done("get", t, err)
	return r, err
}

func (o *observedStore) GetByUnique(ctx context.Context, kind, tenant, key string) (*store.Record, error) {
	t := time.Now()
	r, err := o.Store.GetByUnique(ctx, kind, tenant, key)
	o.done("get_by_unique", t, err)
	return r, err
}

func (o *observedStore) Update(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	if err := AwaitCredential(ctx); err != nil {
		return err
	}
	t := time.Now()
	err := o.Store.Update(ctx, rec, opts)
	o.done("update", t, err)
	return err
}

func (o *observedStore) Delete(ctx context.Context, kind, tenant, id string, opts store.WriteOpts) error {
	if err := AwaitCredential(ctx); err != nil {
		return err
	}
	t := time.Now()
	err := o.Store.Delete(ctx, kind, tenant, id, opts)
	o.done("delete", t, err)
	return err
}

func (o *observedStore) List(ctx context.Context, q store.Query) (*store.Page, error) {
	t := time.Now()
	p, err := o.Store.List(ctx, q)
	o.done("list", t, err)
	return p, err
}

func (o *observedStore) ReserveQuota(ctx context.Context, tenant, resource string, n, limit int64) error {
	if err := AwaitCredential(ctx); err != nil {
		return err
	}
	t := time.Now()
	err := o.Store.ReserveQuota(ctx, tenant, resource, n, limit)
	o.done("reserve_quota", t, err)
	return err
}

func (o *observedStore) ReleaseQuota(ctx context.Context, tenant, resource string, n int64) error {
	if err := AwaitCredential(ctx); err != nil {
		return err
	}
	t := time.Now()
	err := o.Store.ReleaseQuota(ctx, tenant, resource, n)
	o.done("release_quota", t, err)
	return err
}

func (o *observedStore) QuotaUsage(ctx context.Context, tenant, resource string) (int64, error) {
	t := time.Now()
	n, err := o.Store.QuotaUsage(ctx, tenant, resource)
	o.done("quota_usage", t, err)
	return n, err
}

func (o *observedStore) SetQuotaUsage(ctx context.Context, tenant, resource string, n int64) error {
	if err := AwaitCredential(ctx); err != nil {
		return err
	}
	t := time.Now()
	err := o.Store.SetQuotaUsage(ctx, tenant, resource, n)
	o.done("set_quota_usage", t, err)
	return err
}

func (o *observedStore) CountRecords(ctx context.Context, kind, tenant string) (int64, error) {
	t := time.Now()
	n, err := o.Store.CountRecords(ctx, kind, tenant)
	o.done("count", t, err)
	return n, err
}

func (o *observedStore) PutIntent(ctx context.Context, in *store.Intent) error {
	if err := AwaitCredential(ctx); err != nil {
		return err
	}
	t := time.Now()
	err := o.Store.PutIntent(ctx, in)
	o.done("put_intent", t, err)
	return err
}

func (o *observedStore) DeleteIntent(ctx context.Context, id string) error {
	if err := AwaitCredential(ctx); err != nil {
		return err
	}
	t := time.Now()
	err := o.Store.DeleteIntent(ctx, id)
	o.done("delete_intent", t, err)
	return err
}

func (o *observedStore) ListIntents(ctx context.Context) ([]store.Intent, error) {
	t := time.Now()
	in, err := o.Store.ListIntents(ctx)
	o.done("list_intents", t, err)
	return in, err
}

func (o *observedStore) AppendEvents(ctx context.Context, tenant string, data []json.RawMessage) ([]store.Event, error) {
	if err := AwaitCredential(ctx); err != nil {
		return nil, err
	}
	t := time.Now()
	ev, err := o.Store.AppendEvents(ctx, tenant, data)
	o.done("append_events", t, err)
	return ev, err
}

func (o *observedStore) AppendEventsIf(ctx context.Context, tenant string, data []json.RawMessage, guards []*store.Guard) ([]store.Event, []int, error) {
	gs, ok := o.Store.(store.GuardedEvents)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s appends no guarded events", store.ErrInvalid, o.backend)
	}
	if err := AwaitCredential(ctx); err != nil {
		return nil, nil, err
	}
	t := time.Now()
	ev, dropped, err := gs.AppendEventsIf(ctx, tenant, data, guards)
	o.done("append_events", t, err)
	return ev, dropped, err
}

func (o *observedStore) ListEvents(ctx context.Context, tenant string, after uint64, limit int) ([]store.Event, error) {
	t := time.Now()
	ev, err := o.Store.ListEvents(ctx, tenant, after, limit)
	o.done("list_events", t, err)
	return ev, err
}

// EventHead passes the head of a tenant's chain through from a store
// that reports it (EventHeader).
func (o *observedStore) EventHead(ctx context.Context, tenant string) (uint64, string, error) {
	h, ok := o.Store.(EventHeader)
	if !ok {
		return 0, "", store.ErrUnavailable
	}
	t := time.Now()
	seq, hash, err := h.EventHead(ctx, tenant)
	o.done("event_head", t, err)
	return seq, hash, err
}

func (o *observedStore) EventTenants(ctx context.Context) ([]string, error) {
	t := time.Now()
	ts, err := o.Store.EventTenants(ctx)
	o.done("event_tenants", t, err)
	return ts, err
}

func (o *observedStore) GetByUniqueThrottled(ctx context.Context, kind, tenant, key string, t store.ThrottleRequest) (*store.Record, store.ThrottleResult, error) {
	start := time.Now()
	r, tr, err := o.Store.GetByUniqueThrottled(ctx, kind, tenant, key, t)
	o.done("get_by_unique_throttled", start, err)
	return r, tr, err
}

// CheckGuard passes the check of a guard alone through
// (store.GuardChecker).
func (o *observedStore) CheckGuard(ctx context.Context, tenant string, g *store.Guard) (bool, error) {
	gc, ok := o.Store.(store.GuardChecker)
	if !ok {
		return false, fmt.Errorf("%w: the %s store checks no guards alone", store.ErrInvalid, o.backend)
	}
	start := time.Now()
	held, err := gc.CheckGuard(ctx, tenant, g)
	o.done("check_guard", start, err)
	return held, err
}

// GuardChecks reports the wrapped store's.
func (o *observedStore) GuardChecks() bool {
	gc, ok := o.Store.(store.GuardChecker)
	return ok && gc.GuardChecks()
}

func (o *observedStore) Throttle(ctx context.Context, key string, rate float64, burst int64) (time.Duration, error) {
	start := time.Now()
	d, err := o.Store.Throttle(ctx, key, rate, burst)
	o.done("throttle", start, err)
	return d, err
}
