package signer

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// On a store that writes an event with a Create, an operation whose last
// step is that Create records exactly one event: SUCCESS with the record
// (written by the Create), or FAIL when the Create is refused (written by
// Done, the refused Create having written nothing).
func TestOpWithEventRecordsOnce(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	defer st.Close()
	c := New(Options{Store: st})
	defer c.Close()
	ctx := WithCaller(context.Background(), Caller{Principal: "p", RequestID: "r1"})
	create := func(id string) error {
		op := c.Start(ctx, "t1", "THING_CREATE")
		rec := &store.Record{Kind: "thing", Tenant: "t1", ID: id, Data: json.RawMessage(`{}`)}
		opts := op.WithEvent(id, rec, store.WriteOpts{})
		assert.NotNil(t, opts.Event)
		err := c.Store().Create(ctx, rec, opts)
		if errors.Is(err, store.ErrExists) {
			err = E(KindConflict, "exists")
		}
		return op.Done(id, err)
	}
	require.NoError(t, create("a"))
	require.Error(t, create("a"))
	evs, err := c.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.Equal(t, "SUCCESS", evs[0].Outcome)
	assert.Equal(t, "a", evs[0].Resource)
	assert.Equal(t, "p", evs[0].Principal)
	assert.Equal(t, "r1", evs[0].RequestID)
	assert.NotEmpty(t, evs[0].ID)
	assert.Equal(t, "FAIL", evs[1].Outcome)

	// Another tenant's record: the event stays with the operation's chain,
	// written by Done.
	op := c.Start(ctx, "t1", "THING_CREATE")
	rec := &store.Record{Kind: "thing", Tenant: "t2", ID: "b", Data: json.RawMessage(`{}`)}
	opts := op.WithEvent("b", rec, store.WriteOpts{})
	assert.Nil(t, opts.Event)
	require.NoError(t, op.Done("b", c.Store().Create(ctx, rec, opts)))
	evs, err = c.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	assert.Len(t, evs, 3)
}

// DoneIf records the success only while the guarded record is unchanged;
// otherwise nothing is recorded or counted and the operation ends later
// with Done. Guarded records batched with others (many requests at once)
// are left out one by one.
func TestOpDoneIfRecordsOnlyWhileTheRecordHolds(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	defer st.Close()
	m := metrics.New("test")
	c := New(Options{Store: st, Metrics: m})
	defer c.Close()
	ctx := WithCaller(context.Background(), Caller{Principal: "p", RequestID: "r1"})
	rec := &store.Record{Kind: "thing", Tenant: "t1", ID: "k", Data: json.RawMessage(`{}`)}
	require.NoError(t, c.Store().Create(ctx, rec, store.WriteOpts{}))
	at := func(v uint64) store.Guard { return store.Guard{Kind: "thing", ID: "k", Version: v} }

	op := c.Start(ctx, "t1", "THING_USE")
	require.True(t, op.Guarded())
	held, err := op.DoneIf("k", at(1))
	assert.True(t, held)
	assert.NoError(t, err)

	require.NoError(t, c.Store().Update(ctx, rec, store.WriteOpts{}))
	op = c.Start(ctx, "t1", "THING_USE")
	held, err = op.DoneIf("k", at(1))
	assert.False(t, held, "the record moved to version 2")
	assert.NoError(t, err)
	var counted dto.Metric
	require.NoError(t, m.Events.WithLabelValues("THING_USE", metrics.StageSuccess).Write(&counted))
	assert.Equal(t, 1.0, counted.GetCounter().GetValue(), "nothing counted")
	require.Error(t, op.Done("k", E(KindWrongState, "changed")))

	// Many at once: the event writer batches them; each guard is its own.
	var wg sync.WaitGroup
	results := make([]bool, 40)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := uint64(2)
			if i%2 == 1 {
				v = 1
			}
			held, err := c.Start(ctx, "t1", "THING_USE").DoneIf("k", at(v))
			assert.NoError(t, err)
			results[i] = held
		}()
	}
	wg.Wait()
	for i, held := range results {
		assert.Equal(t, i%2 == 0, held, "request %d", i)
	}
	evs, err := c.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	assert.Len(t, evs, 1+1+20, "one success, one failure, the 20 whose guard held")
}
