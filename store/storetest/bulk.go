package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// BulkStore is a store with a bulk loader (both backends have one).
type BulkStore interface {
	store.Store
	BulkCreate(ctx context.Context, recs []store.Record, quota store.Quota) error
}

// RunBulk checks what the benchmark relies on: offset paging in creation
// order answers as the general sorted path does, and BulkCreate leaves a
// store that reads as if each record had been created alone.
func RunBulk(t *testing.T, open Opener) {
	t.Run("OffsetCreationOrder", func(t *testing.T) { t.Parallel(); testOffsetCreationOrder(t, open(t)) })
	t.Run("BulkCreate", func(t *testing.T) { t.Parallel(); testBulkCreate(t, open(t)) })
	t.Run("BulkCreateRefusals", func(t *testing.T) { t.Parallel(); testBulkCreateRefusals(t, open(t)) })
}

// testOffsetCreationOrder compares offset pages in creation order (the
// index path) with the same pages sorted on a field no record has, which
// the general path orders by creation too.
func testOffsetCreationOrder(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 30 {
		require.NoError(t, s.Create(ctx, &store.Record{Kind: "c", Tenant: "t", ID: fmt.Sprintf("r%02d", i),
			Fields: map[string]string{"n": fmt.Sprint(i)}, Data: json.RawMessage(`{}`)}, store.WriteOpts{}))
	}
	for i := 0; i < 30; i += 7 {
		require.NoError(t, s.Delete(ctx, "c", "t", fmt.Sprintf("r%02d", i), store.WriteOpts{}))
	}
	for _, desc := range []bool{false, true} {
		for _, off := range []int{0, 1, 5, 22, 25, 40} {
			for _, lim := range []int{0, 1, 5, 100} {
				name := fmt.Sprintf("desc=%v offset=%d limit=%d", desc, off, lim)
				fast, err := s.List(ctx, store.Query{Kind: "c", Tenant: "t", Offset: off, Limit: lim, Desc: desc})
				require.NoError(t, err, name)
				slow, err := s.List(ctx, store.Query{Kind: "c", Tenant: "t", SortBy: "absent", Offset: off, Limit: lim, Desc: desc})
				require.NoError(t, err, name)
				assert.Equal(t, ids(slow.Records), ids(fast.Records), name)
				assert.Equal(t, slow.Total, fast.Total, name)
				assert.Equal(t, 25, fast.Total, name)
			}
		}
	}
	p, err := s.List(ctx, store.Query{Kind: "none", Tenant: "t", Offset: 3, Limit: 2})
	require.NoError(t, err)
	assert.Empty(t, p.Records)
	assert.Zero(t, p.Total)
}

func bulkRecs(prefix string, n int) []store.Record {
	recs := make([]store.Record, n)
	for i := range recs {
		recs[i] = store.Record{Kind: "cert", Tenant: "t", ID: fmt.Sprintf("%s-%04d", prefix, i),
			Unique: []string{fmt.Sprintf("serial:ca:%s%04d", prefix, i)},
			Fields: map[string]string{"status": "ISSUED"}, Data: json.RawMessage(fmt.Sprintf(`{"n": %d}`, i))}
	}
	return recs
}

func testBulkCreate(t *testing.T, st store.Store) {
	s, ok := st.(BulkStore)
	require.True(t, ok, "the store has no BulkCreate")
	ctx := context.Background()
	q := store.Quota{Resource: "certs", Limit: 5000}
	require.NoError(t, s.Create(ctx, &store.Record{Kind: "cert", Tenant: "t", ID: "first", Data: json.RawMessage(`{}`)},
		store.WriteOpts{Quota: &q}))
	recs := bulkRecs("b", 1203) // more than one Redis chunk
	require.NoError(t, s.BulkCreate(ctx, recs, q))
	require.NoError(t, s.Create(ctx, &store.Record{Kind: "cert", Tenant: "t", ID: "last", Data: json.RawMessage(`{}`)},
		store.WriteOpts{Quota: &q}))

	n, err := s.CountRecords(ctx, "cert", "t")
	require.NoError(t, err)
	assert.EqualValues(t, 1205, n)
	used, err := s.QuotaUsage(ctx, "t", "certs")
	require.NoError(t, err)
	assert.EqualValues(t, 1205, used)

	r, err := s.Get(ctx, "cert", "t", "b-0042")
	require.NoError(t, err)
	assert.JSONEq(t, `{"n": 42}`, string(r.Data))
	assert.Equal(t, map[string]string{"status": "ISSUED"}, r.Fields)
	assert.EqualValues(t, 1, r.Version)
	assert.False(t, r.Created.IsZero())
	r, err = s.GetByUnique(ctx, "cert", "t", "serial:ca:b1202")
	require.NoError(t, err)
	assert.Equal(t, "b-1202", r.ID)

	// Creation order: the single create before, the batch in its order,
	// the single create after.
	p, err := s.List(ctx, store.Query{Kind: "cert", Tenant: "t", Limit: 3})
	require.NoError(t, err)
	assert.Equal(t, []string{"first", "b-0000", "b-0001"}, ids(p.Records))
	p, err = s.List(ctx, store.Query{Kind: "cert", Tenant: "t", Limit: 2, Desc: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"last", "b-1202"}, ids(p.Records))
	assert.Equal(t, 1205, p.Total)
	p, err = s.List(ctx, store.Query{Kind: "cert", Tenant: "t", Filters: []store.Filter{{Field: "status", Value: "ISSUED"}}, SortBy: "status", Offset: 1200, Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, []string{"b-1200", "b-1201", "b-1202"}, ids(p.Records))
	assert.Equal(t, 1203, p.Total)

	// Records loaded in bulk update and delete like any other, and
	// delete gives their quota unit back.
	r, err = s.Get(ctx, "cert", "t", "b-0007")
	require.NoError(t, err)
	r.Fields = map[string]string{"status": "REVOKED"}
	require.NoError(t, s.Update(ctx, r, store.WriteOpts{}))
	assert.EqualValues(t, 2, r.Version)
	require.NoError(t, s.Delete(ctx, "cert", "t", "b-0008", store.WriteOpts{Quota: &q}))
	_, err = s.GetByUnique(ctx, "cert", "t", "serial:ca:b0008")
	assert.ErrorIs(t, err, store.ErrNotFound)
	used, err = s.QuotaUsage(ctx, "t", "certs")
	require.NoError(t, err)
	assert.EqualValues(t, 1204, used)
}

func testBulkCreateRefusals(t *testing.T, st store.Store) {
	s, ok := st.(BulkStore)
	require.True(t, ok, "the store has no BulkCreate")
	ctx := context.Background()
	q := store.Quota{Resource: "certs", Limit: 100}
	require.NoError(t, s.BulkCreate(ctx, bulkRecs("a", 10), q))

	count := func() int64 {
		n, err := s.CountRecords(ctx, "cert", "t")
		require.NoError(t, err)
		return n
	}
	// A taken id, a taken unique key, the same key twice in one call and a
	// quota too small each refuse the whole call.
	taken := bulkRecs("c", 5)
	taken[3].ID = "a-0002"
	assert.ErrorIs(t, s.BulkCreate(ctx, taken, q), store.ErrExists)
	takenKey := bulkRecs("d", 5)
	takenKey[4].Unique = []string{"serial:ca:a0001"}
	assert.ErrorIs(t, s.BulkCreate(ctx, takenKey, q), store.ErrExists)
	twice := bulkRecs("e", 5)
	twice[1].Unique = twice[0].Unique
	assert.ErrorIs(t, s.BulkCreate(ctx, twice, q), store.ErrExists)
	err := s.BulkCreate(ctx, bulkRecs("f", 91), q)
	assert.True(t, errors.Is(err, store.ErrQuotaExceeded), "got %v", err)
	assert.EqualValues(t, 10, count())
	used, err := s.QuotaUsage(ctx, "t", "certs")
	require.NoError(t, err)
	assert.EqualValues(t, 10, used)

	bad := bulkRecs("g", 2)
	bad[1].Data = json.RawMessage(`{`)
	assert.ErrorIs(t, s.BulkCreate(ctx, bad, q), store.ErrInvalid)
	assert.EqualValues(t, 10, count())
}
