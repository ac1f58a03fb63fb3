package boltstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
