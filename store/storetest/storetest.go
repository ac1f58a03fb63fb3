// Package storetest is the conformance suite every store.Store backend runs
// unchanged. Each test opens a fresh, empty store through the backend's
// open function.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// Opener returns a fresh, empty store; it registers its own cleanup.
type Opener func(t *testing.T) store.Store

// Run runs the conformance suite. Subtests run in parallel, each on its
// own store.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateGet", testCreateGet},
		{"GetByUnique", testGetByUnique},
		{"Update", testUpdate},
		{"UpdateUniqueKeys", testUpdateUniqueKeys},
		{"Delete", testDelete},
		{"CreateExists", testCreateExists},
		{"ConcurrentUniqueKey", testConcurrentUniqueKey},
		{"TenantIsolation", testTenantIsolation},
		{"Invalid", testInvalid},
		{"CursorPaging", testCursorPaging},
		{"CursorPagingDesc", testCursorPagingDesc},
		{"CursorPagingFilters", testCursorPagingFilters},
		{"CursorPagingConcurrentChanges", testCursorPagingChanges},
		{"OffsetPaging", testOffsetPaging},
		{"Quota", testQuota},
		{"CreateWithQuota", testCreateWithQuota},
		{"QuotaRace", testQuotaRace},
		{"DeleteReleasesQuota", testDeleteReleasesQuota},
		{"Intents", testIntents},
		{"WriteWithIntent", testWriteWithIntent},
		{"Events", testEvents},
		{"EventsConcurrent", testEventsConcurrent},
		{"EventsDataRoundTrip", testEventsDataRoundTrip},
		{"EventWithCreate", testEventWithCreate},
		{"EventsIf", testEventsIf},
		{"CredentialGuards", testCredentialGuards},
		{"GuardChecks", testGuardChecks},
		{"CreateGuarded", testCreateGuarded},
		{"CountRecords", testCountRecords},
		{"Throttle", testThrottle},
		{"ThrottleConcurrent", testThrottleConcurrent},
		{"GetByUniqueThrottled", testGetByUniqueThrottled},
		{"ManyTenants", testManyTenants},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

const kind = "thing"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func rec(tenant, id string, unique ...string) *store.Record {
	return &store.Record{
		Kind:   kind,
		Tenant: tenant,
		ID:     id,
		Unique: unique,
		Fields: map[string]string{"name": id},
		Data:   json.RawMessage(fmt.Sprintf(`{"id": %q, "n": 1}`, id)),
	}
}

func mustCreate(t *testing.T, s store.Store, r *store.Record) *store.Record {
	t.Helper()
	require.NoError(t, s.Create(ctxT(t), r, store.WriteOpts{}))
	return r
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func testCreateGet(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	require.NotEmpty(t, s.Backend())
	require.NoError(t, s.Ping(ctx))

	before := time.Now().Add(-time.Second)
	r := rec("t1", "a", "name:a", "serial:01")
	r.Fields["status"] = "active"
	require.NoError(t, s.Create(ctx, r, store.WriteOpts{}))
	assert.Equal(t, uint64(1), r.Seq, "first record of a kind gets seq 1")
	assert.Equal(t, uint64(1), r.Version)
	assert.True(t, r.Created.After(before), "created set")
	assert.Equal(t, r.Created, r.Updated)

	got, err := s.Get(ctx, kind, "t1", "a")
	require.NoError(t, err)
	assert.Equal(t, kind, got.Kind)
	assert.Equal(t, "t1", got.Tenant)
	assert.Equal(t, "a", got.ID)
	assert.Equal(t, []string{"name:a", "serial:01"}, got.Unique)
	assert.Equal(t, map[string]string{"name": "a", "status": "active"}, got.Fields)
	assert.JSONEq(t, `{"id":"a","n":1}`, string(got.Data))
	assert.Equal(t, uint64(1), got.Seq)
	assert.Equal(t, uint64(1), got.Version)
	assert.True(t, got.Created.Equal(r.Created), "created survives storage: %v vs %v", got.Created, r.Created)

	r2 := mustCreate(t, s, rec("t1", "b"))
	assert.Equal(t, uint64(2), r2.Seq, "seq grows in creation order")

	_, err = s.Get(ctx, kind, "t1", "nope")
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.Get(ctx, "otherkind", "t1", "a")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func testGetByUnique(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, rec("t1", "a", "name:a", "serial:01"))
	mustCreate(t, s, rec("t1", "b", "name:b"))
	for key, want := range map[string]string{"name:a": "a", "serial:01": "a", "name:b": "b"} {
		got, err := s.GetByUnique(ctx, kind, "t1", key)
		require.NoError(t, err, key)
		assert.Equal(t, want, got.ID, key)
	}
	_, err := s.GetByUnique(ctx, kind, "t1", "name:c")
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.GetByUnique(ctx, kind, "t2", "name:a")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func testUpdate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r := mustCreate(t, s, rec("t1", "a", "name:a"))
	created := r.Created

	upd := *r
	upd.Fields = map[string]string{"name": "a", "status": "revoked"}
	upd.Data = json.RawMessage(`{"v":2}`)
	require.NoError(t, s.Update(ctx, &upd, store.WriteOpts{}))
	assert.Equal(t, uint64(2), upd.Version)
	assert.Equal(t, r.Seq, upd.Seq)
	assert.True(t, upd.Created.Equal(created))
	assert.False(t, upd.Updated.Before(created))

	got, err := s.Get(ctx, kind, "t1", "a")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), got.Version)
	assert.Equal(t, "revoked", got.Fields["status"])
	assert.JSONEq(t, `{"v":2}`, string(got.Data))
	assert.Equal(t, r.Seq, got.Seq, "seq kept")
	assert.True(t, got.Created.Equal(created), "created kept")

	// A writer still holding version 1 loses.
	stale := *r
	stale.Data = json.RawMessage(`{"v":"stale"}`)
	err = s.Update(ctx, &stale, store.WriteOpts{})
	require.ErrorIs(t, err, store.ErrVersionConflict)
	got, err = s.Get(ctx, kind, "t1", "a")
	require.NoError(t, err)
	assert.JSONEq(t, `{"v":2}`, string(got.Data), "conflicting update wrote nothing")

	missing := rec("t1", "ghost")
	missing.Version = 1
	assert.ErrorIs(t, s.Update(ctx, missing, store.WriteOpts{}), store.ErrNotFound)

	withQuota := *got
	err = s.Update(ctx, &withQuota, store.WriteOpts{Quota: &store.Quota{Resource: "x", Limit: 1}})
	assert.ErrorIs(t, err, store.ErrInvalid, "update takes no quota")

	// Concurrent updates from the same version: exactly one wins.
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := *got
			u.Data = json.RawMessage(fmt.Sprintf(`{"writer":%d}`, i))
			switch err := s.Update(ctx, &u, store.WriteOpts{}); {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrVersionConflict):
				conflicts.Add(1)
			default:
				t.Errorf("update: %v", err)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(1), wins.Load())
	assert.Equal(t, int32(9), conflicts.Load())
	final, err := s.Get(ctx, kind, "t1", "a")
	require.NoError(t, err)
	assert.Equal(t, got.Version+1, final.Version)
}

func testUpdateUniqueKeys(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a := mustCreate(t, s, rec("t1", "a", "name:a", "serial:01"))
	b := mustCreate(t, s, rec("t1", "b", "name:b"))

	// Rename a: name:a is released, name:a2 taken, serial:01 kept.
	a.Unique = []string{"name:a2", "serial:01"}
	require.NoError(t, s.Update(ctx, a, store.WriteOpts{}))
	_, err := s.GetByUnique(ctx, kind, "t1", "name:a")
	assert.ErrorIs(t, err, store.ErrNotFound, "old key released")
	got, err := s.GetByUnique(ctx, kind, "t1", "name:a2")
	require.NoError(t, err)
	assert.Equal(t, "a", got.ID)
	got, err = s.GetByUnique(ctx, kind, "t1", "serial:01")
	require.NoError(t, err)
	assert.Equal(t, "a", got.ID)

	// The released key can be taken by another record.
	mustCreate(t, s, rec("t1", "c", "name:a"))

	// Taking a key another record holds fails and changes nothing.
	b.Unique = []string{"name:b2", "name:a2"}
	b.Data = json.RawMessage(`{"changed":true}`)
	err = s.Update(ctx, b, store.WriteOpts{})
	require.ErrorIs(t, err, store.ErrExists)
	got, err = s.Get(ctx, kind, "t1", "b")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), got.Version)
	assert.Equal(t, []string{"name:b"}, got.Unique)
	_, err = s.GetByUnique(ctx, kind, "t1", "name:b2")
	assert.ErrorIs(t, err, store.ErrNotFound, "no key of a failed update is taken")
	got, err = s.GetByUnique(ctx, kind, "t1", "name:a2")
	require.NoError(t, err)
	assert.Equal(t, "a", got.ID)

	// Dropping every key.
	a.Unique = nil
	require.NoError(t, s.Update(ctx, a, store.WriteOpts{}))
	_, err = s.GetByUnique(ctx, kind, "t1", "serial:01")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func testDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, rec("t1", "a", "name:a"))
	mustCreate(t, s, rec("t1", "b", "name:b"))
	require.NoError(t, s.Delete(ctx, kind, "t1", "a", store.WriteOpts{}))

	_, err := s.Get(ctx, kind, "t1", "a")
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.GetByUnique(ctx, kind, "t1", "name:a")
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.ErrorIs(t, s.Delete(ctx, kind, "t1", "a", store.WriteOpts{}), store.ErrNotFound)
	assert.ErrorIs(t, s.Delete(ctx, kind, "t9", "b", store.WriteOpts{}), store.ErrNotFound)

	page, err := s.List(ctx, store.Query{Kind: kind, Tenant: "t1"})
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, ids(page.Records))

	// Id and unique key are free again; the new record is newer than b.
	again := mustCreate(t, s, rec("t1", "a", "name:a"))
	assert.Equal(t, uint64(3), again.Seq)
	n, err := s.CountRecords(ctx, kind, "t1")
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
}

func testCreateExists(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	q := &store.Quota{Resource: "things", Limit: 10}
	require.NoError(t, s.Create(ctx, rec("t1", "a", "name:a"), store.WriteOpts{Quota: q}))

	// Duplicate id with a fresh unique key.
	dup := rec("t1", "a", "name:fresh")
	dup.Data = json.RawMessage(`{"dup":true}`)
	err := s.Create(ctx, dup, store.WriteOpts{Quota: q})
	require.ErrorIs(t, err, store.ErrExists)
	_, err = s.GetByUnique(ctx, kind, "t1", "name:fresh")
	assert.ErrorIs(t, err, store.ErrNotFound, "unique key of a failed create is not taken")
	got, err := s.Get(ctx, kind, "t1", "a")
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"a","n":1}`, string(got.Data), "original untouched")

	// Duplicate unique key with a fresh id.
	err = s.Create(ctx, rec("t1", "b", "name:b", "name:a"), store.WriteOpts{Quota: q})
	require.ErrorIs(t, err, store.ErrExists)
	_, err = s.Get(ctx, kind, "t1", "b")
	assert.ErrorIs(t, err, store.ErrNotFound, "record of a failed create is not gettable")
	_, err = s.GetByUnique(ctx, kind, "t1", "name:b")
	assert.ErrorIs(t, err, store.ErrNotFound)

	usage, err := s.QuotaUsage(ctx, "t1", "things")
	require.NoError(t, err)
	assert.Equal(t, int64(1), usage, "failed creates reserve nothing")
	n, err := s.CountRecords(ctx, kind, "t1")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)

	// Failed creates do not consume sequence numbers visibly out of order.
	c := mustCreate(t, s, rec("t1", "c"))
	assert.Greater(t, c.Seq, got.Seq)
}

func testConcurrentUniqueKey(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 50
	var ok, exists atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := s.Create(ctx, rec("t1", fmt.Sprintf("r%02d", i), "name:same"), store.WriteOpts{}); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrExists):
				exists.Add(1)
			default:
				t.Errorf("create: %v", err)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(1), ok.Load())
	assert.Equal(t, int32(n-1), exists.Load())
	count, err := s.CountRecords(ctx, kind, "t1")
	require.NoError(t, err)
	assert.Equal(t, int64(1), count)
}

func testTenantIsolation(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a1 := rec("t1", "a", "name:a")
	a1.Data = json.RawMessage(`{"tenant":1}`)
	a2 := rec("t2", "a", "name:a")
	a2.Data = json.RawMessage(`{"tenant":2}`)
	mustCreate(t, s, a1)
	mustCreate(t, s, a2)
	assert.Equal(t, uint64(1), a2.Seq, "seq is per tenant")

	got, err := s.Get(ctx, kind, "t2", "a")
	require.NoError(t, err)
	assert.JSONEq(t, `{"tenant":2}`, string(got.Data))
	_, err = s.Get(ctx, kind, "t3", "a")
	assert.ErrorIs(t, err, store.ErrNotFound)

	require.NoError(t, s.Delete(ctx, kind, "t1", "a", store.WriteOpts{}))
	got, err = s.GetByUnique(ctx, kind, "t2", "name:a")
	require.NoError(t, err)
	assert.Equal(t, "t2", got.Tenant)

	require.NoError(t, s.ReserveQuota(ctx, "t1", "things", 2, 5))
	usage, err := s.QuotaUsage(ctx, "t2", "things")
	require.NoError(t, err)
	assert.Zero(t, usage)

	page, err := s.List(ctx, store.Query{Kind: kind, Tenant: "t1"})
	require.NoError(t, err)
	assert.Empty(t, page.Records)
}

func testInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	bad := []*store.Record{
		{Kind: "", Tenant: "t1", ID: "a"},
		{Kind: kind, Tenant: "", ID: "a"},
		{Kind: kind, Tenant: "t1", ID: ""},
		{Kind: "a:b", Tenant: "t1", ID: "a"},
		{Kind: kind, Tenant: "t{1}", ID: "a"},
		{Kind: kind, Tenant: "t1", ID: "a", Unique: []string{""}},
		{Kind: kind, Tenant: "t1", ID: "a", Data: json.RawMessage(`{not json`)},
	}
	for _, r := range bad {
		assert.ErrorIs(t, s.Create(ctx, r, store.WriteOpts{}), store.ErrInvalid, "%+v", r)
	}
	assert.ErrorIs(t, s.Create(ctx, rec("t1", "a"), store.WriteOpts{Quota: &store.Quota{}}), store.ErrInvalid)
	_, err := s.Get(ctx, kind, "t:1", "a")
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.List(ctx, store.Query{Kind: kind, Tenant: "t1", Cursor: "garbage"})
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.List(ctx, store.Query{Kind: kind, Tenant: "t1", Limit: -1})
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.List(ctx, store.Query{Kind: kind, Tenant: "t1", Filters: []store.Filter{{Field: "x", Match: 9}}})
	assert.ErrorIs(t, err, store.ErrInvalid)
	assert.ErrorIs(t, s.PutIntent(ctx, &store.Intent{ID: "i1"}), store.ErrInvalid, "intent without tenant")
	_, err = s.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(`{`)})
	assert.ErrorIs(t, err, store.ErrInvalid)

	// Nothing of the above was written.
	n, err := s.CountRecords(ctx, kind, "t1")
	require.NoError(t, err)
	assert.Zero(t, n)
	tenants, err := s.EventTenants(ctx)
	require.NoError(t, err)
	assert.Empty(t, tenants)
}

func createN(t *testing.T, s store.Store, tenant string, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf("r%03d", i)
		mustCreate(t, s, rec(tenant, out[i]))
	}
	return out
}

// walk follows cursors to the end and returns every id seen.
func walk(t *testing.T, s store.Store, q store.Query) ([]string, int) {
	t.Helper()
	var seen []string
	pages := 0
	for {
		page, err := s.List(ctxT(t), q)
		require.NoError(t, err)
		pages++
		if q.Limit > 0 {
			require.LessOrEqual(t, len(page.Records), q.Limit)
		}
		seen = append(seen, ids(page.Records)...)
		if page.NextCursor == "" {
			return seen, pages
		}
		require.NotEmpty(t, page.Records, "a page with a next cursor has records")
		q.Cursor = page.NextCursor
		require.Less(t, pages, 1000, "cursor walk does not end")
	}
}

func testCursorPaging(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	want := createN(t, s, "t1", 25)
	createN(t, s, "t2", 3) // another tenant is not listed

	first, err := s.List(ctx, store.Query{Kind: kind, Tenant: "t1", Limit: 7})
	require.NoError(t, err)
	assert.Equal(t, want[:7], ids(first.Records))
	assert.NotEmpty(t, first.NextCursor)
	assert.Equal(t, 25, first.Total, "unfiltered cursor paging knows the total")

	seen, pages := walk(t, s, store.Query{Kind: kind, Tenant: "t1", Limit: 7})
	assert.Equal(t, want, seen, "every record once, in creation order")
	assert.Equal(t, 4, pages)

	// A limit that divides the count exactly ends without an empty page.
	seen, pages = walk(t, s, store.Query{Kind: kind, Tenant: "t1", Limit: 5})
	assert.Equal(t, want, seen)
	assert.Equal(t, 5, pages)

	all, err := s.List(ctx, store.Query{Kind: kind, Tenant: "t1"})
	require.NoError(t, err)
	assert.Equal(t, want, ids(all.Records), "limit 0 returns all")
	assert.Empty(t, all.NextCursor)

	empty, err := s.List(ctx, store.Query{Kind: "none", Tenant: "t1", Limit: 5})
	require.NoError(t, err)
	assert.Empty(t, empty.Records)
	assert.Empty(t, empty.NextCursor)

	// A cursor of an ascending walk does not continue a descending one.
	_, err = s.List(ctx, store.Query{Kind: kind, Tenant: "t1", Limit: 5, Cursor: first.NextCursor, Desc: true})
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.List(ctx, store.Query{Kind: kind, Tenant: "t1", SortBy: "name", Cursor: first.NextCursor})
	assert.ErrorIs(t, err, store.ErrInvalid, "cursor with offset paging")
}

func testCursorPagingDesc(t *testing.T, s store.Store) {
	want := createN(t, s, "t1", 12)
	rev := make([]string, len(want))
	for i, id := range want {
		rev[len(want)-1-i] = id
	}
	seen, pages := walk(t, s, store.Query{Kind: kind, Tenant: "t1", Limit: 5, Desc: true})
	assert.Equal(t, rev, seen, "newest first")
	assert.Equal(t, 3, pages)
}

func testCursorPagingFilters(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	// Enough records that a filtered walk spans several internal chunks;
	// created concurrently to keep the test fast, so the expected order is
	// read back from an unfiltered listing.
	const n = 600
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := rec("t1", fmt.Sprintf("r%03d", i))
				r.Fields["parity"] = []string{"even", "odd"}[i%2]
				if i%7 == 0 {
					r.Fields["parity"] = "Seventh"
				}
				if err := s.Create(ctx, r, store.WriteOpts{}); err != nil {
					t.Errorf("create %s: %v", r.ID, err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	all, err := s.List(ctx, store.Query{Kind: kind, Tenant: "t1"})
	require.NoError(t, err)
	require.Len(t, all.Records, n)
	var want []string
	for i, r := range all.Records {
		if i > 0 {
			require.Greater(t, r.Seq, all.Records[i-1].Seq, "creation order")
		}
		if r.Fields["parity"] == "Seventh" {
			want = append(want, r.ID)
		}
	}

	q := store.Query{Kind: kind, Tenant: "t1", Limit: 9,
		Filters: []store.Filter{{Field: "parity", Value: "SEVEN", Match: store.Contains}}}
	page, err := s.List(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, -1, page.Total, "filtered cursor paging does not count")
	seen, _ := walk(t, s, q)
	assert.Equal(t, want, seen)

	q.Desc = true
	seen, _ = walk(t, s, q)
	require.Len(t, seen, len(want))
	for i := range want {
		assert.Equal(t, want[len(want)-1-i], seen[i])
	}
}

func testCursorPagingChanges(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	want := createN(t, s, "t1", 10)
	q := store.Query{Kind: kind, Tenant: "t1", Limit: 4}
	page, err := s.List(ctx, q)
	require.NoError(t, err)
	require.Equal(t, want[:4], ids(page.Records))

	// The record the cursor points at and one ahead go away; a new one
	// arrives. The walk continues without repeats and sees the newcomer.
	require.NoError(t, s.Delete(ctx, kind, "t1", want[3], store.WriteOpts{}))
	require.NoError(t, s.Delete(ctx, kind, "t1", want[5], store.WriteOpts{}))
	mustCreate(t, s, rec("t1", "new"))
	q.Cursor = page.NextCursor
	seen, _ := walk(t, s, q)
	assert.Equal(t, []string{want[4], want[6], want[7], want[8], want[9], "new"}, seen)
}

func testOffsetPaging(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	// name sorts: c, a, b, a (ties by creation), d
	data := []struct{ id, name, status string }{
		{"r1", "c", "Active"},
		{"r2", "a", "revoked"},
		{"r3", "b", "active"},
		{"r4", "a", "ACTIVE"},
		{"r5", "d", "expired"},
	}
	for _, d := range data {
		r := rec("t1", d.id)
		r.Fields = map[string]string{"name": d.name, "status": d.status}
		mustCreate(t, s, r)
	}
	noName := rec("t1", "r6")
	noName.Fields = map[string]string{"status": "pending"}
	mustCreate(t, s, noName)

	list := func(q store.Query) *store.Page {
		t.Helper()
		q.Kind, q.Tenant = kind, "t1"
		p, err := s.List(ctx, q)
		require.NoError(t, err)
		assert.Empty(t, p.NextCursor, "offset paging has no cursor")
		return p
	}

	p := list(store.Query{SortBy: "name"})
	assert.Equal(t, []string{"r6", "r2", "r4", "r3", "r1", "r5"}, ids(p.Records), "missing field sorts first, ties by creation")
	assert.Equal(t, 6, p.Total)

	p = list(store.Query{SortBy: "name", Desc: true})
	assert.Equal(t, []string{"r5", "r1", "r3", "r4", "r2", "r6"}, ids(p.Records), "desc reverses the whole order")

	p = list(store.Query{SortBy: "name", Offset: 1, Limit: 2})
	assert.Equal(t, []string{"r2", "r4"}, ids(p.Records))
	assert.Equal(t, 6, p.Total)

	p = list(store.Query{SortBy: "name", Offset: 6, Limit: 2})
	assert.Empty(t, p.Records)
	assert.Equal(t, 6, p.Total)

	p = list(store.Query{Offset: 2, Limit: 2})
	assert.Equal(t, []string{"r3", "r4"}, ids(p.Records), "offset without sort key pages in creation order")

	p = list(store.Query{SortBy: "name", Filters: []store.Filter{{Field: "status", Value: "active"}}})
	assert.Equal(t, []string{"r3"}, ids(p.Records), "equal is exact")
	assert.Equal(t, 1, p.Total)

	p = list(store.Query{SortBy: "name", Limit: 2, Filters: []store.Filter{{Field: "status", Value: "acTIVE", Match: store.Contains}}})
	assert.Equal(t, []string{"r4", "r3"}, ids(p.Records), "contains is case-insensitive")
	assert.Equal(t, 3, p.Total, "total counts all matches, not the page")

	p = list(store.Query{SortBy: "status", Filters: []store.Filter{
		{Field: "status", Value: "E", Match: store.Contains},
		{Field: "name", Value: "a"},
	}})
	assert.Equal(t, []string{"r4", "r2"}, ids(p.Records), "filters combine with AND")

	p = list(store.Query{SortBy: "name", Filters: []store.Filter{{Field: "status", Value: "none"}}})
	assert.Empty(t, p.Records)
	assert.Equal(t, 0, p.Total)

	p = list(store.Query{SortBy: "name", Filters: []store.Filter{{Field: "name", Value: ""}}})
	assert.Equal(t, []string{"r6"}, ids(p.Records), "a missing field equals the empty string")
}

func testQuota(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	usage := func(res string) int64 {
		t.Helper()
		n, err := s.QuotaUsage(ctx, "t1", res)
		require.NoError(t, err)
		return n
	}
	assert.Zero(t, usage("keys"))
	require.NoError(t, s.ReserveQuota(ctx, "t1", "keys", 2, 3))
	assert.Equal(t, int64(2), usage("keys"))
	require.NoError(t, s.ReserveQuota(ctx, "t1", "keys", 1, 3))
	assert.ErrorIs(t, s.ReserveQuota(ctx, "t1", "keys", 1, 3), store.ErrQuotaExceeded)
	assert.Equal(t, int64(3), usage("keys"), "refused reservation changes nothing")
	assert.ErrorIs(t, s.ReserveQuota(ctx, "t1", "other", 2, 1), store.ErrQuotaExceeded)
	assert.Zero(t, usage("other"))

	require.NoError(t, s.ReleaseQuota(ctx, "t1", "keys", 2))
	assert.Equal(t, int64(1), usage("keys"))
	require.NoError(t, s.ReleaseQuota(ctx, "t1", "keys", 5))
	assert.Zero(t, usage("keys"), "release never goes below zero")
	require.NoError(t, s.ReleaseQuota(ctx, "t1", "never-used", 1))
	assert.Zero(t, usage("never-used"))

	require.NoError(t, s.SetQuotaUsage(ctx, "t1", "keys", 7))
	assert.Equal(t, int64(7), usage("keys"))
	assert.ErrorIs(t, s.ReserveQuota(ctx, "t1", "keys", 1, 7), store.ErrQuotaExceeded)
	require.NoError(t, s.SetQuotaUsage(ctx, "t1", "keys", 0))
	assert.Zero(t, usage("keys"))

	require.NoError(t, s.ReserveQuota(ctx, "t1", "unlimited", 1000, -1), "negative limit never refuses")
	assert.Equal(t, int64(1000), usage("unlimited"))
	require.NoError(t, s.ReserveQuota(ctx, "t1", "keys", 0, 0), "reserving nothing fits any limit")
	assert.ErrorIs(t, s.ReserveQuota(ctx, "t1", "keys", -1, 5), store.ErrInvalid)
	assert.ErrorIs(t, s.SetQuotaUsage(ctx, "t1", "keys", -1), store.ErrInvalid)
}

func testCreateWithQuota(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	q := &store.Quota{Resource: "things", Limit: 2}
	require.NoError(t, s.Create(ctx, rec("t1", "a"), store.WriteOpts{Quota: q}))
	require.NoError(t, s.Create(ctx, rec("t1", "b"), store.WriteOpts{Quota: q}))
	err := s.Create(ctx, rec("t1", "c", "name:c"), store.WriteOpts{Quota: q})
	require.ErrorIs(t, err, store.ErrQuotaExceeded)
	_, err = s.Get(ctx, kind, "t1", "c")
	assert.ErrorIs(t, err, store.ErrNotFound, "nothing written when the quota is full")
	_, err = s.GetByUnique(ctx, kind, "t1", "name:c")
	assert.ErrorIs(t, err, store.ErrNotFound)
	usage, err := s.QuotaUsage(ctx, "t1", "things")
	require.NoError(t, err)
	assert.Equal(t, int64(2), usage)

	// The same resource in another tenant is another counter.
	require.NoError(t, s.Create(ctx, rec("t2", "c"), store.WriteOpts{Quota: q}))
	// Without a limit the counter still counts.
	require.NoError(t, s.Create(ctx, rec("t1", "d"), store.WriteOpts{Quota: &store.Quota{Resource: "free", Limit: -1}}))
	usage, err = s.QuotaUsage(ctx, "t1", "free")
	require.NoError(t, err)
	assert.Equal(t, int64(1), usage)
}

func testQuotaRace(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 200
	var ok, exceeded atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := s.Create(ctx, rec("t1", fmt.Sprintf("r%03d", i)), store.WriteOpts{Quota: &store.Quota{Resource: "things", Limit: 3}})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrQuotaExceeded):
				exceeded.Add(1)
			default:
				t.Errorf("create %d: %v", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int32(3), ok.Load())
	assert.Equal(t, int32(n-3), exceeded.Load())
	usage, err := s.QuotaUsage(ctx, "t1", "things")
	require.NoError(t, err)
	assert.Equal(t, int64(3), usage)
	count, err := s.CountRecords(ctx, kind, "t1")
	require.NoError(t, err)
	assert.Equal(t, int64(3), count)
}

func testDeleteReleasesQuota(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	q := &store.Quota{Resource: "things", Limit: 1}
	require.NoError(t, s.Create(ctx, rec("t1", "a"), store.WriteOpts{Quota: q}))
	require.ErrorIs(t, s.Create(ctx, rec("t1", "b"), store.WriteOpts{Quota: q}), store.ErrQuotaExceeded)
	require.NoError(t, s.Delete(ctx, kind, "t1", "a", store.WriteOpts{Quota: q}))
	usage, err := s.QuotaUsage(ctx, "t1", "things")
	require.NoError(t, err)
	assert.Zero(t, usage)
	require.NoError(t, s.Create(ctx, rec("t1", "b"), store.WriteOpts{Quota: q}), "released unit is usable")

	// A failed delete releases nothing; a delete never drives usage negative.
	require.ErrorIs(t, s.Delete(ctx, kind, "t1", "ghost", store.WriteOpts{Quota: q}), store.ErrNotFound)
	usage, err = s.QuotaUsage(ctx, "t1", "things")
	require.NoError(t, err)
	assert.Equal(t, int64(1), usage)
	require.NoError(t, s.SetQuotaUsage(ctx, "t1", "things", 0))
	require.NoError(t, s.Delete(ctx, kind, "t1", "b", store.WriteOpts{Quota: q}))
	usage, err = s.QuotaUsage(ctx, "t1", "things")
	require.NoError(t, err)
	assert.Zero(t, usage)
}

func intentIDs(ins []store.Intent) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.ID
	}
	return out
}

func testIntents(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	list := func() []store.Intent {
		t.Helper()
		ins, err := s.ListIntents(ctx)
		require.NoError(t, err)
		return ins
	}
	assert.Empty(t, list())

	t0 := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	in1 := &store.Intent{ID: "i1", Tenant: "t1", Kind: "ca", KeyIDs: []string{"0a0b"}, Created: t0,
		Data: json.RawMessage(`{"op": "create"}`)}
	require.NoError(t, s.PutIntent(ctx, in1))
	require.NoError(t, s.PutIntent(ctx, &store.Intent{ID: "i2", Tenant: "t2", Kind: "key", Created: t0.Add(time.Second)}))
	require.NoError(t, s.PutIntent(ctx, &store.Intent{ID: "i3", Tenant: store.PlatformTenant, Kind: "admin"}))

	ins := list()
	require.Equal(t, []string{"i1", "i2", "i3"}, intentIDs(ins), "oldest first")
	assert.Equal(t, "t1", ins[0].Tenant)
	assert.Equal(t, "ca", ins[0].Kind)
	assert.Equal(t, []string{"0a0b"}, ins[0].KeyIDs)
	assert.True(t, ins[0].Created.Equal(t0))
	assert.JSONEq(t, `{"op":"create"}`, string(ins[0].Data))
	assert.False(t, ins[2].Created.IsZero(), "store fills in a missing creation time")

	// Put with a known id replaces.
	in1.KeyIDs = []string{"0a0b", "0c0d"}
	require.NoError(t, s.PutIntent(ctx, in1))
	ins = list()
	require.Len(t, ins, 3)
	assert.Equal(t, []string{"0a0b", "0c0d"}, ins[0].KeyIDs)

	require.NoError(t, s.DeleteIntent(ctx, "i2"))
	assert.Equal(t, []string{"i1", "i3"}, intentIDs(list()))
	require.NoError(t, s.DeleteIntent(ctx, "i2"), "deleting an absent intent is fine")
	require.NoError(t, s.DeleteIntent(ctx, "i1"))
	require.NoError(t, s.DeleteIntent(ctx, "i3"))
	assert.Empty(t, list())
}

func testWriteWithIntent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, id := range []string{"i-create", "i-failed", "i-update", "i-delete"} {
		require.NoError(t, s.PutIntent(ctx, &store.Intent{ID: id, Tenant: "t1", Kind: kind}))
	}
	require.NoError(t, s.PutIntent(ctx, &store.Intent{ID: "i-other", Tenant: "t2", Kind: kind}))
	remaining := func() []string {
		t.Helper()
		ins, err := s.ListIntents(ctx)
		require.NoError(t, err)
		out := intentIDs(ins)
		return out
	}

	a := rec("t1", "a")
	require.NoError(t, s.Create(ctx, a, store.WriteOpts{Intent: "i-create"}))
	assert.ElementsMatch(t, []string{"i-failed", "i-update", "i-delete", "i-other"}, remaining())

	// A failed create keeps its intent: the key it announced must be found
	// and destroyed by the reconciler.
	require.ErrorIs(t, s.Create(ctx, rec("t1", "a"), store.WriteOpts{Intent: "i-failed"}), store.ErrExists)
	require.ErrorIs(t, s.Create(ctx, rec("t1", "q"), store.WriteOpts{Intent: "i-failed",
		Quota: &store.Quota{Resource: "r", Limit: 0}}), store.ErrQuotaExceeded)
	assert.ElementsMatch(t, []string{"i-failed", "i-update", "i-delete", "i-other"}, remaining())

	// Only an intent of the record's tenant is retired.
	require.NoError(t, s.Create(ctx, rec("t1", "b"), store.WriteOpts{Intent: "i-other"}))
	assert.ElementsMatch(t, []string{"i-failed", "i-update", "i-delete", "i-other"}, remaining())

	// An absent intent is not an error.
	require.NoError(t, s.Create(ctx, rec("t1", "c"), store.WriteOpts{Intent: "never-written"}))

	stale := *a
	stale.Version = 99
	require.ErrorIs(t, s.Update(ctx, &stale, store.WriteOpts{Intent: "i-update"}), store.ErrVersionConflict)
	assert.Contains(t, remaining(), "i-update", "failed update keeps its intent")
	require.NoError(t, s.Update(ctx, a, store.WriteOpts{Intent: "i-update"}))
	assert.ElementsMatch(t, []string{"i-failed", "i-delete", "i-other"}, remaining())

	require.NoError(t, s.Delete(ctx, kind, "t1", "a", store.WriteOpts{Intent: "i-delete"}))
	assert.ElementsMatch(t, []string{"i-failed", "i-other"}, remaining())
}

func testEvents(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenants, err := s.EventTenants(ctx)
	require.NoError(t, err)
	assert.Empty(t, tenants)

	evs, err := s.AppendEvents(ctx, "t1", []json.RawMessage{
		json.RawMessage(`{"name":"CA_CREATE_START"}`),
		json.RawMessage(`{"name":"CA_CREATE_SUCCESS"}`),
	})
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.Equal(t, uint64(1), evs[0].Seq)
	assert.Equal(t, uint64(2), evs[1].Seq)
	assert.Equal(t, "", evs[0].PrevHash, "the chain starts from the empty hash")
	assert.Equal(t, evs[0].Hash, evs[1].PrevHash)
	assert.Equal(t, "t1", evs[0].Tenant)
	assert.False(t, evs[0].Time.IsZero())

	more, err := s.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(`{"name":"KEY_SIGN_START"}`)})
	require.NoError(t, err)
	require.Len(t, more, 1)
	assert.Equal(t, uint64(3), more[0].Seq)
	assert.Equal(t, evs[1].Hash, more[0].PrevHash, "appends link onto the stored head")

	_, err = s.AppendEvents(ctx, "t2", []json.RawMessage{json.RawMessage(`{"name":"X"}`)})
	require.NoError(t, err)
	none, err := s.AppendEvents(ctx, "t3", nil)
	require.NoError(t, err)
	assert.Empty(t, none)

	all, err := s.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	require.Len(t, all, 3)
	assert.Equal(t, append(evs, more...), all, "listed as appended")
	bad, err := store.VerifyChain(all, "", 0)
	require.NoError(t, err)
	assert.Zero(t, bad)

	after, err := s.ListEvents(ctx, "t1", 1, 1)
	require.NoError(t, err)
	require.Len(t, after, 1)
	assert.Equal(t, uint64(2), after[0].Seq)
	rest, err := s.ListEvents(ctx, "t1", 2, 10)
	require.NoError(t, err)
	require.Len(t, rest, 1)
	// Verification can resume from any link.
	bad, err = store.VerifyChain(rest, after[0].Hash, after[0].Seq)
	require.NoError(t, err)
	assert.Zero(t, bad)
	empty, err := s.ListEvents(ctx, "t1", 3, 10)
	require.NoError(t, err)
	assert.Empty(t, empty)
	empty, err = s.ListEvents(ctx, "nobody", 0, 10)
	require.NoError(t, err)
	assert.Empty(t, empty)

	tenants, err = s.EventTenants(ctx)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"t1", "t2"}, tenants)

	// The verifier notices a missing link.
	gap := append([]store.Event{all[0]}, all[2])
	bad, err = store.VerifyChain(gap, "", 0)
	assert.Error(t, err)
	assert.Equal(t, uint64(2), bad)
	assert.Equal(t, &store.ChainBreak{Seq: 2, Kind: store.BreakGap}, err)

	// ... and a record that does not link to its predecessor.
	relinked := append([]store.Event{}, all[:2]...)
	relinked[1].PrevHash = relinked[1].Hash
	bad, err = store.VerifyChain(relinked, "", 0)
	assert.Equal(t, uint64(2), bad)
	assert.Equal(t, &store.ChainBreak{Seq: 2, Kind: store.BreakLink}, err)
}

func testEventsConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const writers, appends = 20, 5
	var wg sync.WaitGroup
	var total atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range appends {
				batch := make([]json.RawMessage, 1+(w+a)%3)
				for i := range batch {
					batch[i] = json.RawMessage(fmt.Sprintf(`{"w":%d,"a":%d,"i":%d}`, w, a, i))
				}
				evs, err := s.AppendEvents(ctx, "t1", batch)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				for i := 1; i < len(evs); i++ {
					if evs[i].Seq != evs[i-1].Seq+1 || evs[i].PrevHash != evs[i-1].Hash {
						t.Errorf("one append is not contiguous: %+v", evs)
					}
				}
				total.Add(int64(len(evs)))
			}
		}()
	}
	wg.Wait()
	all, err := s.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	require.Len(t, all, int(total.Load()))
	for i, e := range all {
		require.Equal(t, uint64(i+1), e.Seq, "no gaps")
	}
	bad, err := store.VerifyChain(all, "", 0)
	require.NoError(t, err, "chain breaks at %d", bad)

	// Paging through the chain in small steps gives the same events.
	var paged []store.Event
	for after := uint64(0); ; {
		page, err := s.ListEvents(ctx, "t1", after, 7)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1].Seq
	}
	assert.Equal(t, all, paged)
}

func testEventsDataRoundTrip(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	// Whitespace and HTML characters are normalised before hashing, so the
	// chain still verifies after any JSON round trip.
	raw := json.RawMessage("{ \"note\" : \"<b>&</b>\",\n \"n\": [1, 2] }")
	evs, err := s.AppendEvents(ctx, "t1", []json.RawMessage{raw, nil})
	require.NoError(t, err)
	assert.JSONEq(t, string(raw), string(evs[0].Data))
	assert.Equal(t, "null", string(evs[1].Data))

	b, err := json.Marshal(evs)
	require.NoError(t, err)
	var back []store.Event
	require.NoError(t, json.Unmarshal(b, &back))
	bad, err := store.VerifyChain(back, "", 0)
	require.NoError(t, err, "round-tripped chain breaks at %d", bad)

	stored, err := s.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	assert.Equal(t, evs, stored)

	// An edited record breaks the chain.
	stored[0].Data = json.RawMessage(`{"note":"edited","n":[1,2]}`)
	bad, err = store.VerifyChain(stored, "", 0)
	assert.Error(t, err)
	assert.Equal(t, uint64(1), bad)
	assert.Equal(t, &store.ChainBreak{Seq: 1, Kind: store.BreakHash}, err)
}

func testCountRecords(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	count := func(k, tenant string) int64 {
		t.Helper()
		n, err := s.CountRecords(ctx, k, tenant)
		require.NoError(t, err)
		return n
	}
	assert.Zero(t, count(kind, "t1"))
	createN(t, s, "t1", 4)
	createN(t, s, "t2", 2)
	other := rec("t1", "x")
	other.Kind = "other"
	mustCreate(t, s, other)
	assert.Equal(t, int64(4), count(kind, "t1"))
	assert.Equal(t, int64(2), count(kind, "t2"))
	assert.Equal(t, int64(1), count("other", "t1"))
	require.NoError(t, s.Delete(ctx, kind, "t1", "r000", store.WriteOpts{}))
	assert.Equal(t, int64(3), count(kind, "t1"))
	// A failed create does not count.
	require.ErrorIs(t, s.Create(ctx, rec("t1", "r001"), store.WriteOpts{}), store.ErrExists)
	assert.Equal(t, int64(3), count(kind, "t1"))
}

// testThrottle: a burst is admitted at once, the next request is told how
// long to wait (about one interval: the rate is so low that no test runs
// long enough to earn a new request), keys are independent, and bad
// arguments are refused.
func testThrottle(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const rate, burst = 0.001, 3 // one request per 1000 s
	for i := 0; i < burst; i++ {
		d, err := s.Throttle(ctx, "token:a", rate, burst)
		require.NoError(t, err)
		require.Zero(t, d, "request %d of the burst", i+1)
	}
	for i := 0; i < 2; i++ {
		d, err := s.Throttle(ctx, "token:a", rate, burst)
		require.NoError(t, err)
		assert.Greater(t, d, 900*time.Second, "refused requests are not counted: the wait stays one interval")
		assert.LessOrEqual(t, d, 1000*time.Second)
	}
	d, err := s.Throttle(ctx, "token:b", rate, burst)
	require.NoError(t, err)
	assert.Zero(t, d, "another key has its own burst")
	for _, bad := range []struct {
		key   string
		rate  float64
		burst int64
	}{{"", rate, burst}, {"k", 0, burst}, {"k", -1, burst}, {"k", rate, 0}} {
		_, err := s.Throttle(ctx, bad.key, bad.rate, bad.burst)
		assert.ErrorIs(t, err, store.ErrInvalid, "%+v", bad)
	}
}

// testThrottleConcurrent: racing callers of one key get exactly the burst.
func testThrottleConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const burst = 10
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 4*burst; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := s.Throttle(ctx, "token:race", 0.001, burst)
			if assert.NoError(t, err) && d == 0 {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(burst), admitted.Load())
}

// testGetByUniqueThrottled: the lookup answers as GetByUnique does, and
// every call, found or not, counts against the limit, which is the same
// limit Throttle counts against; bad arguments are refused before either.
func testGetByUniqueThrottled(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r := &store.Record{Kind: "tok", Tenant: "t1", ID: "x1", Unique: []string{"hash:aa"}, Data: json.RawMessage(`{"n":1}`)}
	require.NoError(t, s.Create(ctx, r, store.WriteOpts{}))
	lim := store.ThrottleRequest{Key: "credential:aa", Rate: 0.001, Burst: 3}

	got, tr, err := s.GetByUniqueThrottled(ctx, "tok", "t1", "hash:aa", lim)
	require.NoError(t, err)
	require.NoError(t, tr.Err)
	assert.Zero(t, tr.Wait)
	assert.Equal(t, "x1", got.ID)
	assert.JSONEq(t, `{"n":1}`, string(got.Data))

	_, tr, err = s.GetByUniqueThrottled(ctx, "tok", "t1", "hash:none", lim)
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NoError(t, tr.Err)
	assert.Zero(t, tr.Wait, "the second of a burst of 3")

	d, err := s.Throttle(ctx, lim.Key, lim.Rate, lim.Burst)
	require.NoError(t, err)
	assert.Zero(t, d, "the third, through Throttle: one limit")

	got, tr, err = s.GetByUniqueThrottled(ctx, "tok", "t1", "hash:aa", lim)
	require.NoError(t, err, "the record is still answered when the limit refuses")
	assert.Equal(t, "x1", got.ID)
	require.NoError(t, tr.Err)
	assert.Greater(t, tr.Wait, 900*time.Second)

	_, _, err = s.GetByUniqueThrottled(ctx, "tok", "t1", "hash:aa", store.ThrottleRequest{Key: "", Rate: 1, Burst: 1})
	assert.ErrorIs(t, err, store.ErrInvalid)
	_, _, err = s.GetByUniqueThrottled(ctx, "tok", "", "hash:aa", lim)
	assert.ErrorIs(t, err, store.ErrInvalid)
}

// ManyTenants are the tenants of the ManyTenants test: on Redis Cluster
// their keys hash to slots of several masters.
var ManyTenants = []string{"t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"}

// testManyTenants runs the same work in several tenants at once: records
// with unique keys, a quota and an intent, an update and a delete, an
// event chain and a rate limit each; then the listings that span tenants.
func testManyTenants(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for _, tn := range ManyTenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := &store.Quota{Resource: "things", Limit: 3}
			if !assert.NoError(t, s.PutIntent(ctx, &store.Intent{ID: "in-" + tn, Tenant: tn, Kind: kind})) {
				return
			}
			if !assert.NoError(t, s.PutIntent(ctx, &store.Intent{ID: "left-" + tn, Tenant: tn, Kind: kind})) {
				return
			}
			for i := range 3 {
				opts := store.WriteOpts{Quota: q}
				if i == 0 {
					opts.Intent = "in-" + tn
					assert.NoError(t, s.Create(ctx, rec(tn, "r0", "name:"+tn), opts))
					continue
				}
				err := s.Create(ctx, rec(tn, fmt.Sprint("r", i), "name:"+tn), opts)
				assert.ErrorIs(t, err, store.ErrExists, "the name is taken in %s", tn)
				assert.NoError(t, s.Create(ctx, rec(tn, fmt.Sprint("r", i), fmt.Sprint("name:", i)), opts), "%s r%d", tn, i)
			}
			err := s.Create(ctx, rec(tn, "over"), store.WriteOpts{Quota: q})
			assert.ErrorIs(t, err, store.ErrQuotaExceeded, tn)
			got, err := s.GetByUnique(ctx, kind, tn, "name:"+tn)
			if !assert.NoError(t, err) {
				return
			}
			got.Fields = map[string]string{"name": "renamed"}
			assert.NoError(t, s.Update(ctx, got, store.WriteOpts{}))
			assert.NoError(t, s.Delete(ctx, kind, tn, "r1", store.WriteOpts{Quota: q}))
			_, err = s.AppendEvents(ctx, tn, []json.RawMessage{json.RawMessage(`{"n":1}`), json.RawMessage(`{"n":2}`)})
			assert.NoError(t, err)
			wait, err := s.Throttle(ctx, "many:"+tn, 0.001, 1)
			assert.NoError(t, err)
			assert.Zero(t, wait)
		}()
	}
	wg.Wait()
	for _, tn := range ManyTenants {
		usage, err := s.QuotaUsage(ctx, tn, "things")
		require.NoError(t, err)
		assert.EqualValues(t, 2, usage, tn)
		page, err := s.List(ctx, store.Query{Kind: kind, Tenant: tn})
		require.NoError(t, err)
		assert.Equal(t, []string{"r0", "r2"}, ids(page.Records), tn)
		n, err := s.CountRecords(ctx, kind, tn)
		require.NoError(t, err)
		assert.EqualValues(t, 2, n, tn)
		evs, err := s.ListEvents(ctx, tn, 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, 2, tn)
		broken, err := store.VerifyChain(evs, "", 0)
		require.NoError(t, err, tn)
		assert.Zero(t, broken, tn)
		wait, err := s.Throttle(ctx, "many:"+tn, 0.001, 1)
		require.NoError(t, err)
		assert.Positive(t, wait, "%s: the limit is shared", tn)
	}
	ins, err := s.ListIntents(ctx)
	require.NoError(t, err)
	var left []string
	for _, tn := range ManyTenants {
		left = append(left, "left-"+tn)
	}
	assert.ElementsMatch(t, left, intentIDs(ins), "committed intents are gone, the others listed")
	for _, tn := range ManyTenants {
		require.NoError(t, s.DeleteIntent(ctx, "left-"+tn))
	}
	ins, err = s.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, ins)
	tenants, err := s.EventTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, ManyTenants, tenants)
}
