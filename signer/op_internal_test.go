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

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

// On a store that writes an event with a Create, an operation whose last
// step is that Create records exactly one event: SUCCESS with the record
// (written by the Create), or FAIL when the Create is refused (written by
// Done, the refused Create having written nothing).
// On Redis the record goes with the Create only while the event writer is
// idle: a busy writer keeps grouping records, and Done writes it.
func TestOpWithEventRecordsOnce(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
		require.NoError(t, err)
		defer st.Close()
		testOpWithEventRecordsOnce(t, st)
	})
	t.Run("redis", func(t *testing.T) {
		r := testenv.StartRedis(t)
		st, err := redisstore.Open(context.Background(), r.URL(), redisstore.Options{})
		require.NoError(t, err)
		defer st.Close()
		testOpWithEventRecordsOnce(t, st)

		c := New(Options{Store: st})
		defer c.Close()
		ctx := WithCaller(context.Background(), Caller{Principal: "p", RequestID: "r2"})
		c.events.mu.Lock()
		c.events.running = true // an append under way
		c.events.mu.Unlock()
		op := c.Start(ctx, "t1", "THING_CREATE")
		rec := &store.Record{Kind: "thing", Tenant: "t1", ID: "busy", Data: json.RawMessage(`{}`)}
		assert.Nil(t, op.WithEvent("busy", rec, store.WriteOpts{}).Event)
		require.NoError(t, c.Store().Create(ctx, rec, store.WriteOpts{}))
		c.events.mu.Lock()
		c.events.running = false
		c.events.mu.Unlock()
		require.NoError(t, op.Done("busy", nil))
		evs, err := c.ListEvents(ctx, "t1", 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, 4)
		assert.Equal(t, "busy", evs[3].Resource)
		assert.Equal(t, "SUCCESS", evs[3].Outcome)

		// Two operations under way: neither Create carries its record;
		// once one has ended, the other's does.
		one, two := c.Start(ctx, "t1", "THING_CREATE"), c.Start(ctx, "t1", "THING_CREATE")
		r1 := &store.Record{Kind: "thing", Tenant: "t1", ID: "one", Data: json.RawMessage(`{}`)}
		assert.Nil(t, one.WithEvent("one", r1, store.WriteOpts{}).Event)
		require.NoError(t, two.Done("two", nil))
		opts := one.WithEvent("one", r1, store.WriteOpts{})
		assert.NotNil(t, opts.Event)
		assert.True(t, c.aloneCreate.Load(), "held until Done")
		require.NoError(t, one.Done("one", c.Store().Create(ctx, r1, opts)))
		assert.False(t, c.aloneCreate.Load())
		assert.Zero(t, c.inflight.Load())
		evs, err = c.ListEvents(ctx, "t1", 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, 6, "two's record, then one's, once")
		assert.Equal(t, []string{"two", "one"}, []string{evs[4].Resource, evs[5].Resource})
	})
}

func testOpWithEventRecordsOnce(t *testing.T, st store.Store) {
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
