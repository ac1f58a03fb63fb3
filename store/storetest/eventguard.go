package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

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
