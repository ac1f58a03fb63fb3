package boltstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/storetest"
)

func open(t *testing.T) store.Store {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "hsmca.db"), boltstore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open)
}

func TestLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hsmca.db")
	first, err := boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)

	start := time.Now()
	second, err := boltstore.Open(path, boltstore.Options{Timeout: 200 * time.Millisecond})
	require.Error(t, err)
	assert.Nil(t, second)
	assert.True(t, errors.Is(err, boltstore.ErrLocked))
	assert.Contains(t, err.Error(), "store file is locked by another process (is hsmcad running?)")
	assert.Contains(t, err.Error(), path)
	assert.Less(t, time.Since(start), 2*time.Second, "the timeout bounds the wait")

	// Once the holder closes, the file opens and keeps its data.
	ctx := context.Background()
	require.NoError(t, first.Create(ctx, &store.Record{Kind: "k", Tenant: "t", ID: "a", Data: []byte(`{}`)}, store.WriteOpts{}))
	require.NoError(t, first.Close())
	again, err := boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)
	defer again.Close()
	got, err := again.Get(ctx, "k", "t", "a")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), got.Seq)
}

func TestClosedIsUnavailable(t *testing.T) {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "hsmca.db"), boltstore.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	ctx := context.Background()
	assert.ErrorIs(t, s.Ping(ctx), store.ErrUnavailable)
	_, err = s.Get(ctx, "k", "t", "a")
	assert.ErrorIs(t, err, store.ErrUnavailable)
	err = s.Create(ctx, &store.Record{Kind: "k", Tenant: "t", ID: "a"}, store.WriteOpts{})
	assert.ErrorIs(t, err, store.ErrUnavailable)
}

func TestIndexes(t *testing.T) {
	storetest.RunIndexed(t, func(t *testing.T) storetest.Reopen {
		path := filepath.Join(t.TempDir(), "hsmca.db")
		var last store.Store
		return func(t *testing.T, ixs []store.Index) store.Store {
			if last != nil {
				last.Close()
			}
			s, err := boltstore.Open(path, boltstore.Options{Indexes: ixs})
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			last = s
			return s
		}
	})
}

// The suite again with its fields indexed: same answers on other paths.
func TestConformanceIndexed(t *testing.T) {
	opener := func(t *testing.T) store.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "hsmca.db"), boltstore.Options{Indexes: storetest.SuiteIndexes})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	storetest.Run(t, opener)
	storetest.RunBulk(t, opener)
}

// A file whose indexes were built before the per-value counts existed
// (marker 1, no counts) has them built again at open.
func TestIndexesBuiltBeforeCountsAreRebuilt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hsmca.db")
	ixs := []store.Index{{Kind: "doc", Field: "s"}}
	s, err := boltstore.Open(path, boltstore.Options{Indexes: ixs})
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 9 {
		require.NoError(t, s.Create(ctx, &store.Record{Kind: "doc", Tenant: "t", ID: fmt.Sprint(i),
			Fields: map[string]string{"s": fmt.Sprint(i % 3)}, Data: json.RawMessage(`{}`)}, store.WriteOpts{}))
	}
	require.NoError(t, s.Close())
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		kind := tx.Bucket([]byte("tenants")).Bucket([]byte("t")).Bucket([]byte("k/doc"))
		if err := kind.DeleteBucket([]byte("xc")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("ix\x00doc\x00s"), []byte{1})
	}))
	require.NoError(t, db.Close())

	s, err = boltstore.Open(path, boltstore.Options{Indexes: ixs})
	require.NoError(t, err)
	defer s.Close()
	page, err := s.List(ctx, store.Query{Kind: "doc", Tenant: "t", OffsetPaging: true, Limit: 1,
		Filters: []store.Filter{{Field: "s", Value: "1"}}})
	require.NoError(t, err)
	assert.Equal(t, 3, page.Total)
}
