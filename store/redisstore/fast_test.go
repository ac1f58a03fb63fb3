package redisstore_test

import (
	"context"
	"encoding/json"
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
