package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/redisstore"
)

// A tenant is listed by the append that starts its chain, also when the
// server lost everything since an earlier append of this process.
func TestEventTenantsListedWhenChainStarts(t *testing.T) {
	r := testenv.StartRedis(t)
	s := open(t, r.URL(), redisstore.Options{})
	ctx := context.Background()
	ev := []json.RawMessage{json.RawMessage(`{"n":1}`)}
	_, err := s.AppendEvents(ctx, "t1", ev)
	require.NoError(t, err)
	_, err = s.AppendEvents(ctx, "t1", ev)
	require.NoError(t, err)
	tenants, err := s.EventTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"t1"}, tenants)

	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	require.NoError(t, rdb.FlushAll(ctx).Err())
	evs, err := s.AppendEvents(ctx, "t1", ev)
	require.NoError(t, err)
	assert.EqualValues(t, 1, evs[0].Seq)
	tenants, err = s.EventTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"t1"}, tenants)
}

// Two replicas append to one tenant's chain at once: each links its events
// to the head it last saw and the script writes them only if that head is
// still the stored one, so every event is stored once, in one unbroken
// chain, whichever replica wrote the one before.
func TestAppendEventsFromTwoReplicasKeepOneChain(t *testing.T) {
	r := testenv.StartRedis(t)
	a := open(t, r.URL(), redisstore.Options{KeyPrefix: "two"})
	b := open(t, r.URL(), redisstore.Options{KeyPrefix: "two"})
	ctx := context.Background()
	const each = 200
	var wg sync.WaitGroup
	for _, s := range []*redisstore.Store{a, b} {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each / 4 {
					_, err := s.AppendEvents(ctx, "t1", []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))})
					assert.NoError(t, err)
				}
			}()
		}
	}
	wg.Wait()
	evs, err := a.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 2*each)
	_, err = store.VerifyChain(evs, "", 0)
	assert.NoError(t, err)
	seq, hash, err := b.EventHead(ctx, "t1")
	require.NoError(t, err)
	assert.EqualValues(t, 2*each, seq)
	assert.Equal(t, evs[len(evs)-1].Hash, hash)
}

// GetByUnique reads in one step: a record deleted or re-keyed is not
// found under its old key, and a key pointing nowhere is not found.
func TestGetByUniqueFollowsChanges(t *testing.T) {
	r := testenv.StartRedis(t)
	s := open(t, r.URL(), redisstore.Options{KeyPrefix: "gbu"})
	ctx := context.Background()
	rec := &store.Record{Kind: "k", Tenant: "t", ID: "a", Unique: []string{"name:x"}, Data: json.RawMessage(`{"v":1}`)}
	require.NoError(t, s.Create(ctx, rec, store.WriteOpts{}))
	got, err := s.GetByUnique(ctx, "k", "t", "name:x")
	require.NoError(t, err)
	assert.Equal(t, "a", got.ID)
	assert.JSONEq(t, `{"v":1}`, string(got.Data))

	got.Unique = []string{"name:y"}
	require.NoError(t, s.Update(ctx, got, store.WriteOpts{}))
	_, err = s.GetByUnique(ctx, "k", "t", "name:x")
	assert.ErrorIs(t, err, store.ErrNotFound)
	got, err = s.GetByUnique(ctx, "k", "t", "name:y")
	require.NoError(t, err)
	assert.EqualValues(t, 2, got.Version)

	// An index entry whose record is gone reads as not found.
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	require.NoError(t, rdb.HSet(ctx, "gbu:{t}:uniq:k", "name:z", "missing").Err())
	_, err = s.GetByUnique(ctx, "k", "t", "name:z")
	assert.ErrorIs(t, err, store.ErrNotFound)
	require.NoError(t, s.Delete(ctx, "k", "t", "a", store.WriteOpts{}))
	_, err = s.GetByUnique(ctx, "k", "t", "name:y")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

// A replica that declares fewer indexes than the record has entries in
// still updates and deletes them: the scripts name every index key they
// touch, learning the record's extra ones from a first refusal.
func TestWritesKeepIndexesOtherReplicasDeclare(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	ixs := []store.Index{{Kind: "k", Field: "a"}}
	full := open(t, r.URL(), redisstore.Options{KeyPrefix: "few", Indexes: ixs})
	bare := open(t, r.URL(), redisstore.Options{KeyPrefix: "few"})
	rec := &store.Record{Kind: "k", Tenant: "t", ID: "r1", Fields: map[string]string{"a": "x"}, Data: json.RawMessage(`{}`)}
	require.NoError(t, full.Create(ctx, rec, store.WriteOpts{}))
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	entries := func() []string {
		v, err := rdb.ZRange(ctx, "few:{t}:ix:k:a", 0, -1).Result()
		require.NoError(t, err)
		return v
	}
	require.Len(t, entries(), 1)

	got, err := bare.Get(ctx, "k", "t", "r1")
	require.NoError(t, err)
	got.Fields = map[string]string{"a": "y"}
	require.NoError(t, bare.Update(ctx, got, store.WriteOpts{}))
	assert.Empty(t, entries(), "the entry of the old value is gone")
	page, err := full.List(ctx, store.Query{Kind: "k", Tenant: "t", Filters: []store.Filter{{Field: "a", Value: "x"}}})
	require.NoError(t, err)
	assert.Empty(t, page.Records)

	require.NoError(t, full.Delete(ctx, "k", "t", "r1", store.WriteOpts{}))
	require.NoError(t, full.Create(ctx, rec, store.WriteOpts{}))
	require.Len(t, entries(), 1)
	require.NoError(t, bare.Delete(ctx, "k", "t", "r1", store.WriteOpts{}))
	assert.Empty(t, entries())
}

// Tenants listed under the set names of earlier versions (without the
// platform hash tag) keep their intents and event chains visible.
func TestTenantsListedByEarlierVersions(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	s := open(t, r.URL(), redisstore.Options{KeyPrefix: "old"})
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	in := `{"id":"i1","tenant":"t1","kind":"ca","keyIds":["aa"],"created":"2026-01-02T03:04:05Z"}`
	require.NoError(t, rdb.SAdd(ctx, "old:intent-tenants", "t1").Err())
	require.NoError(t, rdb.HSet(ctx, "old:{t1}:intents", "i1", in).Err())
	_, err := s.AppendEvents(ctx, "t2", []json.RawMessage{json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.NoError(t, rdb.Del(ctx, "old:{:platform}:event-tenants").Err())
	require.NoError(t, rdb.SAdd(ctx, "old:event-tenants", "t2").Err())

	ins, err := s.ListIntents(ctx)
	require.NoError(t, err)
	require.Len(t, ins, 1)
	assert.Equal(t, "i1", ins[0].ID)
	tenants, err := s.EventTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"t2"}, tenants)
	require.NoError(t, s.DeleteIntent(ctx, "i1"))
	ins, err = s.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, ins)
}
