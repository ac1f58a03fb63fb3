package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// A journal that cannot be written fails the appends and new records of
// that group and changes nothing: no event or record is seen, the chain's
// head stays, and a commit through bbolt still copies the events
// acknowledged before.
func TestJournalWriteFailureChangesNothing(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "hsmca.db"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	first, err := s.AppendEvents(ctx, "t", []json.RawMessage{json.RawMessage(`{"n":1}`)})
	require.NoError(t, err)

	j := s.w.j
	good := j.f
	j.f = nil // every write now fails
	_, err = s.AppendEvents(ctx, "t", []json.RawMessage{json.RawMessage(`{"n":2}`)})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), `"n":2`, "the record's content stays out of the error")
	seq, hash, err := s.EventHead(ctx, "t")
	require.NoError(t, err)
	assert.Equal(t, first[0].Seq, seq)
	assert.Equal(t, first[0].Hash, hash)
	evs, err := s.ListEvents(ctx, "t", 0, 0)
	require.NoError(t, err)
	assert.Len(t, evs, 1)

	// A new record with its event fails the same way and leaves nothing.
	err = s.Create(ctx, &store.Record{Kind: "k", Tenant: "t", ID: "a", Data: []byte(`{}`)},
		store.WriteOpts{Event: json.RawMessage(`{"n":3}`)})
	require.Error(t, err)
	_, err = s.Get(ctx, "k", "t", "a")
	assert.ErrorIs(t, err, store.ErrNotFound)

	// A write through bbolt copies the journal's event first.
	require.NoError(t, s.ReserveQuota(ctx, "t", "certs", 1, -1))
	used, _, copies := s.JournalStats()
	assert.Zero(t, used)
	assert.Equal(t, uint64(1), copies)
	evs, err = s.ListEvents(ctx, "t", 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)

	// Writable again: the next append goes to the journal's start.
	j.f = good
	more, err := s.AppendEvents(ctx, "t", []json.RawMessage{json.RawMessage(`{"n":4}`)})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), more[0].Seq)
	assert.Equal(t, evs[0].Hash, more[0].PrevHash)
	require.NoError(t, s.Create(ctx, &store.Record{Kind: "k", Tenant: "t", ID: "a", Data: []byte(`{}`)},
		store.WriteOpts{Event: json.RawMessage(`{"n":5}`)}))
	evs, err = s.ListEvents(ctx, "t", 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	_, err = store.VerifyChain(evs, "", 0)
	require.NoError(t, err)
}

// A journal holding checkpointRecords new records has them copied into
// bbolt, so that no write waits for a commit of hundreds.
func TestJournalCheckpointsAfterSomeRecords(t *testing.T) {
	age := checkpointAge
	checkpointAge = time.Hour // only the count asks
	t.Cleanup(func() { checkpointAge = age })
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "hsmca.db"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	create := func(i int) {
		require.NoError(t, s.Create(ctx, &store.Record{Kind: "k", Tenant: "t", ID: fmt.Sprint(i), Data: []byte(`{}`)}, store.WriteOpts{}))
	}
	for i := range checkpointRecords - 1 {
		create(i)
	}
	_, _, copies := s.JournalStats()
	assert.Zero(t, copies)
	create(checkpointRecords)
	assert.Eventually(t, func() bool {
		used, _, copies := s.JournalStats()
		return copies == 1 && used == 0
	}, 10*time.Second, 5*time.Millisecond)
}
