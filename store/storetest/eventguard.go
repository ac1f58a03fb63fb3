package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// testEventsIf: guarded events are appended only while their record is
// at the version named, in order with the unguarded ones; a failed guard
// leaves its event out and writes nothing else in its place; the chain
// stays one chain. Both backends implement it.
func testEventsIf(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	gs, ok := s.(store.GuardedEvents)
	require.True(t, ok, "%s appends guarded events", s.Backend())
	ev := func(n string) json.RawMessage { return json.RawMessage(`{"n":"` + n + `"}`) }
	r := mustCreate(t, s, rec("t1", "k1"))
	at := func(v uint64) *store.Guard { return &store.Guard{Kind: kind, ID: "k1", Version: v} }

	evs, dropped, err := gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("a"), ev("b")}, []*store.Guard{at(r.Version), nil})
	require.NoError(t, err)
	assert.Empty(t, dropped)
	require.Len(t, evs, 2)
	assert.EqualValues(t, 1, evs[0].Seq)

	r.Fields = map[string]string{"state": "disabled"}
	require.NoError(t, s.Update(ctx, r, store.WriteOpts{}))
	evs, dropped, err = gs.AppendEventsIf(ctx, "t1",
		[]json.RawMessage{ev("stale"), ev("plain"), ev("fresh"), ev("gone"), ev("other-tenant-id")},
		[]*store.Guard{at(1), nil, at(r.Version), {Kind: kind, ID: "nope", Version: 1}, {Kind: "other", ID: "k1", Version: 1}})
	require.NoError(t, err)
	assert.Equal(t, []int{0, 3, 4}, dropped, "an old version, a missing record, another kind")
	require.Len(t, evs, 2)
	assert.JSONEq(t, `{"n":"plain"}`, string(evs[0].Data))
	assert.JSONEq(t, `{"n":"fresh"}`, string(evs[1].Data))
	assert.EqualValues(t, 3, evs[0].Seq, "no gap where the dropped events were")

	evs, dropped, err = gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("x")}, []*store.Guard{at(1)})
	require.NoError(t, err)
	assert.Equal(t, []int{0}, dropped)
	assert.Empty(t, evs, "nothing appended when every guard fails")
	_, dropped, err = gs.AppendEventsIf(ctx, "t2", []json.RawMessage{ev("x")}, []*store.Guard{at(r.Version)})
	require.NoError(t, err)
	assert.Equal(t, []int{0}, dropped, "a guard names a record of the event's tenant")

	_, _, err = gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("x")}, nil)
	assert.ErrorIs(t, err, store.ErrInvalid, "one guard (or nil) per event")

	// Racing writers: guarded appends while the record changes and plain
	// appends interleave; every append lands in one unbroken chain.
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				cur, err := s.Get(ctx, kind, "t1", "k1")
				if !assert.NoError(t, err) {
					return
				}
				g := []*store.Guard{{Kind: kind, ID: "k1", Version: cur.Version}}
				_, _, err = gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev(fmt.Sprint(w, i))}, g)
				assert.NoError(t, err)
				if i%5 == 0 {
					cur.Fields = map[string]string{"n": fmt.Sprint(w, i)}
					_ = s.Update(ctx, cur, store.WriteOpts{}) // a conflict is fine
				}
			}
		}()
	}
	wg.Wait()
	all, err := s.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	_, err = store.VerifyChain(all, "", 0)
	assert.NoError(t, err)
}

// testCreateGuarded: a Create with a guard is written only while the
// guard's record is at its version; otherwise nothing is written (no
// record, no unique key, no quota unit, no event) and it fails with
// ErrVersionConflict. Other writes refuse a guard.
func testCreateGuarded(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ca := mustCreate(t, s, rec("t1", "ca"))
	g := &store.Guard{Kind: kind, ID: "ca", Version: ca.Version}
	q := &store.Quota{Resource: "certs", Limit: 10}
	require.NoError(t, s.Create(ctx, rec("t1", "c1", "serial:1"), store.WriteOpts{Guard: g, Quota: q}))

	require.NoError(t, s.Update(ctx, ca, store.WriteOpts{})) // the CA changes
	opts := store.WriteOpts{Guard: g, Quota: q}
	if _, ok := s.(store.EventsWithCreate); ok {
		opts.Event = json.RawMessage(`{"n":"c2"}`)
	}
	err := s.Create(ctx, rec("t1", "c2", "serial:2"), opts)
	assert.ErrorIs(t, err, store.ErrVersionConflict)
	_, err = s.Get(ctx, kind, "t1", "c2")
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.GetByUnique(ctx, kind, "t1", "serial:2")
	assert.ErrorIs(t, err, store.ErrNotFound)
	used, err := s.QuotaUsage(ctx, "t1", "certs")
	require.NoError(t, err)
	assert.EqualValues(t, 1, used)
	evs, err := s.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	assert.Empty(t, evs)

	g.Version = ca.Version
	require.NoError(t, s.Create(ctx, rec("t1", "c2", "serial:2"), store.WriteOpts{Guard: g}))
	assert.ErrorIs(t, s.Create(ctx, rec("t1", "c3"), store.WriteOpts{Guard: &store.Guard{Kind: kind, ID: "gone", Version: 1}}),
		store.ErrVersionConflict, "a missing record fails the guard")
	assert.ErrorIs(t, s.Create(ctx, rec("t2", "c3"), store.WriteOpts{Guard: g}),
		store.ErrVersionConflict, "the guard names a record of the write's tenant")

	ca.Fields = map[string]string{"x": "y"}
	assert.ErrorIs(t, s.Update(ctx, ca, store.WriteOpts{Guard: g}), store.ErrInvalid)
	assert.ErrorIs(t, s.Delete(ctx, kind, "t1", "c1", store.WriteOpts{Guard: g}), store.ErrInvalid)
}

// testCredentialGuards: on a store that takes credential guards
// (store.CredentialGuards) an event's guard may name a record of another
// tenant, count against a rate limit and chain another guard; the event
// is appended only if every guard of its chain holds and its limits
// admit it, and the counts are taken only with the append. A store that
// does not take them refuses them: nothing is written.
func testCredentialGuards(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	gs := s.(store.GuardedEvents)
	ev := func(n string) json.RawMessage { return json.RawMessage(`{"n":"` + n + `"}`) }
	cred := mustCreate(t, s, rec(store.PlatformTenant, "tok1"))
	key := mustCreate(t, s, rec("t1", "k1"))
	const rate, burst = 0.001, 2 // one request per 1000 s
	credAt := func(v uint64, limit bool) *store.Guard {
		g := &store.Guard{Tenant: store.PlatformTenant, Kind: kind, ID: "tok1", Version: v}
		if limit {
			g.Throttle = &store.ThrottleRequest{Key: "credential:tok1", Rate: rate, Burst: burst}
		}
		return g
	}
	if cg, ok := s.(store.CredentialGuards); !ok || !cg.CredentialGuards() {
		for _, g := range []*store.Guard{credAt(cred.Version, false),
			{Kind: kind, ID: "k1", Version: key.Version, Throttle: &store.ThrottleRequest{Key: "k", Rate: 1, Burst: 1}},
			{Kind: kind, ID: "k1", Version: key.Version, And: &store.Guard{Kind: kind, ID: "k1", Version: key.Version}}} {
			_, _, err := gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("x")}, []*store.Guard{g})
			assert.ErrorIs(t, err, store.ErrInvalid, "%s takes no credential guards", s.Backend())
		}
		assert.ErrorIs(t, s.Create(ctx, rec("t1", "c1"), store.WriteOpts{Guard: credAt(cred.Version, false)}), store.ErrInvalid)
		evs, err := s.ListEvents(ctx, "t1", 0, 0)
		require.NoError(t, err)
		assert.Empty(t, evs)
		return
	}

	// Two events of one credential: both within its burst.
	evs, dropped, err := gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("a"), ev("b")},
		[]*store.Guard{credAt(cred.Version, true), {Kind: kind, ID: "k1", Version: key.Version, And: credAt(cred.Version, true)}})
	require.NoError(t, err)
	assert.Empty(t, dropped)
	require.Len(t, evs, 2)

	// The burst is spent: a third is refused by the limit, and an event
	// whose own record changed counts nothing.
	evs, dropped, err = gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("over"), ev("plain")},
		[]*store.Guard{credAt(cred.Version, true), nil})
	require.NoError(t, err)
	assert.Equal(t, []int{0}, dropped, "over the credential's limit")
	require.Len(t, evs, 1)
	assert.JSONEq(t, `{"n":"plain"}`, string(evs[0].Data))
	wait, err := s.Throttle(ctx, "credential:tok1", rate, burst)
	require.NoError(t, err)
	assert.Greater(t, wait, 900*time.Second, "two requests counted, the refused one not")

	fresh := credAt(cred.Version, true)
	fresh.Throttle.Key = "credential:fresh"
	_, dropped, err = gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("stale key")},
		[]*store.Guard{{Kind: kind, ID: "k1", Version: key.Version + 7, And: fresh}})
	require.NoError(t, err)
	assert.Equal(t, []int{0}, dropped)
	for i := 0; i < burst; i++ {
		wait, err = s.Throttle(ctx, "credential:fresh", rate, burst)
		require.NoError(t, err)
		assert.Zero(t, wait, "a dropped append counted nothing (request %d of the burst)", i+1)
	}

	// A Create carries them too: written (with its event, where the store
	// takes one) and counted only if every guard holds.
	onCreate := credAt(cred.Version, true)
	onCreate.Throttle.Key, onCreate.Throttle.Burst = "credential:create", 1
	opts := store.WriteOpts{Guard: &store.Guard{Kind: kind, ID: "k1", Version: key.Version, And: onCreate}}
	_, withEvent := s.(store.EventsWithCreate)
	if withEvent {
		opts.Event = ev("created")
	}
	require.NoError(t, s.Create(ctx, rec("t1", "c1", "serial:c1"), opts))
	stale := opts
	stale.Guard = credAt(cred.Version+1, false)
	assert.ErrorIs(t, s.Create(ctx, rec("t1", "c2", "serial:c2"), stale), store.ErrVersionConflict, "a changed credential")
	assert.ErrorIs(t, s.Create(ctx, rec("t1", "c3", "serial:c3"), opts), store.ErrVersionConflict, "over the limit (burst 1)")
	for _, id := range []string{"c2", "c3"} {
		_, err = s.Get(ctx, kind, "t1", id)
		assert.ErrorIs(t, err, store.ErrNotFound, "nothing written for %s", id)
	}
	wait, err = s.Throttle(ctx, "credential:create", rate, 2)
	require.NoError(t, err)
	assert.Zero(t, wait, "one request counted of a burst of two: the refused creates counted nothing")

	// The credential changed (revoked, its roles): its events are left out.
	cred.Fields = map[string]string{"roles": "auditor"}
	require.NoError(t, s.Update(ctx, cred, store.WriteOpts{}))
	_, dropped, err = gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("old"), ev("new")},
		[]*store.Guard{credAt(cred.Version-1, false), credAt(cred.Version, false)})
	require.NoError(t, err)
	assert.Equal(t, []int{0}, dropped)
	require.NoError(t, s.Delete(ctx, kind, store.PlatformTenant, "tok1", store.WriteOpts{}))
	_, dropped, err = gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("gone")}, []*store.Guard{credAt(cred.Version, false)})
	require.NoError(t, err)
	assert.Equal(t, []int{0}, dropped, "a deleted credential")

	bad := credAt(1, true)
	bad.Throttle.Rate = 0
	_, _, err = gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("x")}, []*store.Guard{bad})
	assert.ErrorIs(t, err, store.ErrInvalid, "a rate limit of rate 0")
	long := &store.Guard{Kind: kind, ID: "k1", Version: 1}
	for range 4 {
		long = &store.Guard{Kind: kind, ID: "k1", Version: 1, And: long}
	}
	_, _, err = gs.AppendEventsIf(ctx, "t1", []json.RawMessage{ev("x")}, []*store.Guard{long})
	assert.ErrorIs(t, err, store.ErrInvalid, "too long a chain")

	want := []string{"a", "b", "plain", "new"}
	if withEvent {
		want = []string{"a", "b", "plain", "created", "new"}
	}
	assert.Equal(t, want, eventNames(t, s, "t1"))
	all, err := s.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	_, err = store.VerifyChain(all, "", 0)
	assert.NoError(t, err)
}

// testGuardChecks: a store that checks a guard alone
// (store.GuardChecker) answers held when each guarded record of the chain
// is at its version and its rate limit admits the request (counted then),
// and counts nothing when a guard fails; one that does not refuses.
func testGuardChecks(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	cred := mustCreate(t, s, rec(store.PlatformTenant, "tok1"))
	key := mustCreate(t, s, rec("t1", "k1"))
	const rate = 0.001 // one request per 1000 s
	credAt := func(v uint64, limit bool) *store.Guard {
		g := &store.Guard{Tenant: store.PlatformTenant, Kind: kind, ID: "tok1", Version: v}
		if limit {
			g.Throttle = &store.ThrottleRequest{Key: "credential:tok1", Rate: rate, Burst: 2}
		}
		return g
	}
	cg, ok := s.(store.GuardChecker)
	if !ok || !cg.GuardChecks() {
		if ok {
			_, err := cg.CheckGuard(ctx, store.PlatformTenant, credAt(cred.Version, true))
			assert.ErrorIs(t, err, store.ErrInvalid, "%s checks no guards alone", s.Backend())
		}
		return
	}
	// Held and counted, or failed and nothing counted.
	alone := credAt(cred.Version, true)
	alone.Throttle.Key, alone.Throttle.Burst = "credential:alone", 1
	held, err := cg.CheckGuard(ctx, store.PlatformTenant, alone)
	require.NoError(t, err)
	assert.True(t, held, "the credential at its version, under its limit")
	held, err = cg.CheckGuard(ctx, store.PlatformTenant, alone)
	require.NoError(t, err)
	assert.False(t, held, "over the limit (burst 1)")
	changed := credAt(cred.Version+1, true)
	changed.Throttle.Key, changed.Throttle.Burst = "credential:changed", 1
	held, err = cg.CheckGuard(ctx, store.PlatformTenant, changed)
	require.NoError(t, err)
	assert.False(t, held, "a credential at another version")
	wait, err := s.Throttle(ctx, "credential:changed", rate, 1)
	require.NoError(t, err)
	assert.Zero(t, wait, "a guard that failed counted nothing")
	held, err = cg.CheckGuard(ctx, "t1", &store.Guard{Kind: kind, ID: "k1", Version: key.Version, And: credAt(cred.Version, false)})
	require.NoError(t, err)
	assert.True(t, held, "a chain: the tenant's record and the credential")
	held, err = cg.CheckGuard(ctx, "t1", &store.Guard{Kind: kind, ID: "k1", Version: key.Version, And: credAt(cred.Version+1, false)})
	require.NoError(t, err)
	assert.False(t, held, "a chain whose second guard fails")
	_, err = cg.CheckGuard(ctx, store.PlatformTenant, nil)
	assert.ErrorIs(t, err, store.ErrInvalid, "no guard")

	cred.Fields = map[string]string{"roles": "auditor"}
	require.NoError(t, s.Update(ctx, cred, store.WriteOpts{}))
	held, err = cg.CheckGuard(ctx, store.PlatformTenant, credAt(cred.Version-1, false))
	require.NoError(t, err)
	assert.False(t, held, "the credential changed")
	require.NoError(t, s.Delete(ctx, kind, store.PlatformTenant, "tok1", store.WriteOpts{}))
	held, err = cg.CheckGuard(ctx, store.PlatformTenant, credAt(cred.Version, false))
	require.NoError(t, err)
	assert.False(t, held, "the credential deleted")
	long := &store.Guard{Kind: kind, ID: "k1", Version: key.Version}
	for range 4 {
		long = &store.Guard{Kind: kind, ID: "k1", Version: key.Version, And: long}
	}
	_, err = cg.CheckGuard(ctx, "t1", long)
	assert.ErrorIs(t, err, store.ErrInvalid, "too long a chain")
}
