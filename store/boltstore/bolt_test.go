package boltstore_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestFreePagesAreFoundAtOpen: the store does not write bbolt's list of
// free pages with each commit, only with the last one, at Close. The next
// open reads the list; an open after a crash (a copy of the file taken
// while the store was open) finds the free pages from the pages the trees
// reach. Either way they are used again (the file does not grow when as
// much is written again). A build that writes the list opens the file
// too, and the store opens it after that.
func TestFreePagesAreFoundAtOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path, crashed := filepath.Join(dir, "hsmca.db"), filepath.Join(dir, "crashed.db")
	data := json.RawMessage(fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", 3000)))
	fill := func(s store.Store, round int) {
		for i := range 300 {
			require.NoError(t, s.Create(ctx, &store.Record{Kind: "k", Tenant: "t", ID: fmt.Sprintf("r%d-%d", round, i), Data: data}, store.WriteOpts{}))
		}
	}
	empty := func(s store.Store, round int) {
		for i := range 300 {
			require.NoError(t, s.Delete(ctx, "k", "t", fmt.Sprintf("r%d-%d", round, i), store.WriteOpts{}))
		}
	}
	// The free-page list the newest meta page names: after a page header
	// of 16 bytes, the freelist's page id follows the magic, version, page
	// size, flags and root bucket (32 bytes); the transaction id is 16
	// bytes further. ^0 (bbolt's pgidNoFreelist) names none.
	freelist := func(path string) uint64 {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		pageSize := int(binary.LittleEndian.Uint32(raw[16+8:]))
		meta := 0
		if binary.LittleEndian.Uint64(raw[pageSize+64:]) > binary.LittleEndian.Uint64(raw[64:]) {
			meta = pageSize
		}
		return binary.LittleEndian.Uint64(raw[meta+48:])
	}
	size := func(path string) int64 {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		return fi.Size()
	}
	s, err := boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)
	fill(s, 1)
	empty(s, 1)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(crashed, raw, 0o600))
	require.NoError(t, s.Close())
	assert.Equal(t, ^uint64(0), freelist(crashed), "no commit writes the list")
	assert.NotEqual(t, ^uint64(0), freelist(path), "the last commit, at Close, wrote it")

	for _, p := range []string{path, crashed} {
		grown := size(p)
		s, err = boltstore.Open(p, boltstore.Options{})
		require.NoError(t, err)
		fill(s, 2)
		require.NoError(t, s.Close())
		assert.Equal(t, grown, size(p), "%s: the pages freed before the stop were found and used again", filepath.Base(p))
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err, "a build that writes the free-page list opens the file")
	require.NoError(t, db.Close())
	s, err = boltstore.Open(path, boltstore.Options{})
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Get(ctx, "k", "t", "r2-299")
	require.NoError(t, err)
	assert.JSONEq(t, string(data), string(got.Data))
}

// BenchmarkCommitWithManyFreePages commits one 300-byte record per bbolt
// transaction on a file with tens of thousands of free pages, with the
// free-page list written at each commit (bbolt's default) and without
// (what the store does), side by side:
// `go test -run '^$' -bench CommitWithManyFreePages ./store/boltstore/`.
func BenchmarkCommitWithManyFreePages(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		name := "list-written"
		if noSync {
			name = "list-not-written"
		}
		b.Run(name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "fragmented.db")
			opts := &bolt.Options{FreelistType: bolt.FreelistMapType, NoFreelistSync: noSync}
			db, err := bolt.Open(path, 0o600, opts)
			require.NoError(b, err)
			defer db.Close()
			big := []byte(strings.Repeat("y", 1500))
			key := func(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }
			const n = 100000
			for i := 0; i < n; i += 1000 {
				require.NoError(b, db.Update(func(tx *bolt.Tx) error {
					bk, err := tx.CreateBucketIfNotExists([]byte("p"))
					for j := i; j < i+1000 && err == nil; j++ {
						err = bk.Put(key(j), big)
					}
					return err
				}))
			}
			for i := 0; i < n; i += 2000 {
				require.NoError(b, db.Update(func(tx *bolt.Tx) error {
					bk := tx.Bucket([]byte("p"))
					var err error
					for j := i; j < i+2000 && err == nil; j += 2 {
						err = bk.Delete(key(j))
					}
					return err
				}))
			}
			free := db.Stats().FreePageN
			rec := []byte(strings.Repeat("x", 300))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				require.NoError(b, db.Update(func(tx *bolt.Tx) error {
					bk, err := tx.CreateBucketIfNotExists([]byte("e"))
					if err != nil {
						return err
					}
					return bk.Put(key(i), rec)
				}))
			}
			b.ReportMetric(float64(free), "free-pages")
		})
	}
}

// TestGuardCheckedAloneTakesOneRateLimit: bolt counts one rate limit per
// guard checked alone (it cannot take back a count when a second one
// refuses), and refuses a chain with two.
func TestGuardCheckedAloneTakesOneRateLimit(t *testing.T) {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	rec := &store.Record{Kind: "thing", Tenant: "t1", ID: "a", Data: []byte(`{}`)}
	require.NoError(t, s.Create(t.Context(), rec, store.WriteOpts{}))
	limit := func(k string) *store.ThrottleRequest { return &store.ThrottleRequest{Key: k, Rate: 1, Burst: 1} }
	g := &store.Guard{Kind: "thing", ID: "a", Version: rec.Version, Throttle: limit("one"),
		And: &store.Guard{Kind: "thing", ID: "a", Version: rec.Version, Throttle: limit("two")}}
	_, err = s.CheckGuard(t.Context(), "t1", g)
	assert.ErrorIs(t, err, store.ErrInvalid)
	wait, err := s.Throttle(t.Context(), "one", 1, 1)
	require.NoError(t, err)
	assert.Zero(t, wait, "nothing counted")
}
