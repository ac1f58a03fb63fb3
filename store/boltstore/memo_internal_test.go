package boltstore

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// reads is how many read transactions the store's file has begun.
func reads(s *Store) int { return s.db.Stats().TxN }

// A guard on a record read since the last write of its kind holds without
// a read transaction; a write of its kind since, or one under way, sends
// it to the file again, where a changed record fails it. Writes of other
// kinds leave it as it is.
func TestGuardOnARecordUnwrittenSinceNeedsNoRead(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "hsmca.db"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	rec := &store.Record{Kind: "k", Tenant: "t", ID: "a", Data: []byte(`{"n":1}`)}
	require.NoError(t, s.Create(ctx, rec, store.WriteOpts{}))
	// A new record waits in the journal, where a guard finds it without a
	// read either; a count of its kind puts it into the file.
	opened := reads(s)
	held, err := s.CheckGuard(ctx, "t", &store.Guard{Kind: "k", ID: "a", Version: rec.Version})
	require.NoError(t, err)
	require.True(t, held)
	assert.Equal(t, opened, reads(s), "a record in the journal: no read")
	_, err = s.CountRecords(ctx, "k", "t")
	require.NoError(t, err)
	g := &store.Guard{Kind: "k", ID: "a", Version: rec.Version}

	held, err = s.CheckGuard(ctx, "t", g)
	require.NoError(t, err)
	require.True(t, held)
	before := reads(s)
	for range 3 {
		held, err = s.CheckGuard(ctx, "t", g)
		require.NoError(t, err)
		require.True(t, held)
	}
	assert.Equal(t, before, reads(s), "nothing written since: no read")
	held, err = s.CheckGuard(ctx, "t", &store.Guard{Kind: "k", ID: "a", Version: rec.Version + 1})
	require.NoError(t, err)
	assert.False(t, held, "another version does not hold from the memo")

	// A write of its kind under way: the file decides, and nothing is
	// remembered.
	s.gens.of("k").begin()
	before = reads(s)
	held, err = s.CheckGuard(ctx, "t", g)
	require.NoError(t, err)
	assert.True(t, held)
	s.gens.of("k").end()
	assert.Equal(t, before+1, reads(s))

	// Read again once (the count moved), then records of other kinds
	// written, and events: no read.
	held, err = s.CheckGuard(ctx, "t", g)
	require.NoError(t, err)
	require.True(t, held)
	require.NoError(t, s.Create(ctx, &store.Record{Kind: "cert", Tenant: "t", ID: "c1", Data: []byte(`{}`)},
		store.WriteOpts{Event: json.RawMessage(`{"op":"issue"}`)}))
	_, err = s.AppendEvents(ctx, "t", []json.RawMessage{json.RawMessage(`{"op":"sign"}`)})
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "cert", "t", "c1", store.WriteOpts{}))
	before = reads(s)
	held, err = s.CheckGuard(ctx, "t", g)
	require.NoError(t, err)
	assert.True(t, held)
	assert.Equal(t, before, reads(s), "only other kinds written since: no read")

	// A write of the record (the committer's path): the old version fails.
	old := rec.Version
	rec.Data = []byte(`{"n":2}`)
	require.NoError(t, s.Update(ctx, rec, store.WriteOpts{}))
	require.Greater(t, rec.Version, old)
	held, err = s.CheckGuard(ctx, "t", g)
	require.NoError(t, err)
	assert.False(t, held, "a record written since is read again")
	held, err = s.CheckGuard(ctx, "t", &store.Guard{Kind: "k", ID: "a", Version: rec.Version})
	require.NoError(t, err)
	assert.True(t, held)

	// A write of another record of its kind (a bulk load here) forgets
	// it too.
	require.NoError(t, s.BulkCreate(ctx, []store.Record{{Kind: "k", Tenant: "t", ID: "b", Data: []byte(`{}`)}}, store.Quota{}))
	before = reads(s)
	held, err = s.CheckGuard(ctx, "t", &store.Guard{Kind: "k", ID: "a", Version: rec.Version})
	require.NoError(t, err)
	assert.True(t, held)
	assert.Equal(t, before+1, reads(s))

	// A deleted record fails its guard.
	require.NoError(t, s.Delete(ctx, "k", "t", "a", store.WriteOpts{}))
	held, err = s.CheckGuard(ctx, "t", &store.Guard{Kind: "k", ID: "a", Version: rec.Version})
	require.NoError(t, err)
	assert.False(t, held)

	// A closed store says so, even for a guard it remembers.
	b := &store.Record{Kind: "k", Tenant: "t", ID: "b"}
	got, err := s.Get(ctx, "k", "t", "b")
	require.NoError(t, err)
	b.Version = got.Version
	gb := &store.Guard{Kind: "k", ID: "b", Version: b.Version}
	held, err = s.CheckGuard(ctx, "t", gb)
	require.NoError(t, err)
	require.True(t, held)
	require.NoError(t, s.Close())
	held, err = s.CheckGuard(ctx, "t", gb)
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.False(t, held)
}

// An event append guarded by a record read since the last write, on a
// chain with events in the journal, goes to the journal without a read
// transaction; a guard on a record written since is read again and fails.
func TestJournalAppendUnderAKnownGuardNeedsNoRead(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "hsmca.db"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	rec := &store.Record{Kind: "key", Tenant: "t", ID: "k1", Data: []byte(`{}`)}
	require.NoError(t, s.Create(ctx, rec, store.WriteOpts{}))
	g := []*store.Guard{{Kind: "key", ID: "k1", Version: rec.Version}}
	ev := []json.RawMessage{json.RawMessage(`{"op":"sign"}`)}

	_, dropped, err := s.AppendEventsIf(ctx, "t", ev, g)
	require.NoError(t, err)
	require.Empty(t, dropped)
	before := reads(s)
	for range 5 {
		_, dropped, err = s.AppendEventsIf(ctx, "t", ev, g)
		require.NoError(t, err)
		require.Empty(t, dropped)
	}
	assert.Equal(t, before, reads(s), "the guard from the memo, the head from the journal")
	used, _, _ := s.JournalStats()
	assert.Positive(t, used, "the appends went to the journal")

	rec.Data = []byte(`{"disabled":true}`)
	require.NoError(t, s.Update(ctx, rec, store.WriteOpts{}))
	_, dropped, err = s.AppendEventsIf(ctx, "t", ev, g)
	require.NoError(t, err)
	assert.Equal(t, []int{0}, dropped, "the key changed: its old version's event is dropped")

	evs, err := s.ListEvents(ctx, "t", 0, 0)
	require.NoError(t, err)
	assert.Len(t, evs, 6)
	_, err = store.VerifyChain(evs, "", 0)
	require.NoError(t, err)
}

// Checks from the memo beside writes of the same record never hold a
// version after a later one has been seen to hold (go test -race).
func TestGuardMemoBesideWrites(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "hsmca.db"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	rec := &store.Record{Kind: "k", Tenant: "t", ID: "a", Data: []byte(`{}`)}
	require.NoError(t, s.Create(ctx, rec, store.WriteOpts{}))

	var mu sync.Mutex
	latest := rec.Version // the newest version the writer has finished
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				v := latest
				mu.Unlock()
				// A version older than one already written never holds.
				held, err := s.CheckGuard(ctx, "t", &store.Guard{Kind: "k", ID: "a", Version: v - 1})
				if !assert.NoError(t, err) || !assert.False(t, held, "version %d after %d was written", v-1, v) {
					return
				}
			}
		})
	}
	for range 200 {
		rec.Data = []byte(`{}`)
		require.NoError(t, s.Update(ctx, rec, store.WriteOpts{}))
		mu.Lock()
		latest = rec.Version
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
}
