package boltstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Concurrent writes share commits; one that fails leaves no trace and
// gets its own error, and every other write of its group is committed.
func TestCommitterIsolatesAFailingWrite(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }))
	c := &committer{db: db, gens: &writeGens{}}
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.run(func(tx *bolt.Tx) error {
				if err := tx.Bucket([]byte("b")).Put([]byte(fmt.Sprint(i)), []byte("v")); err != nil {
					return err
				}
				if i%16 == 5 {
					return boom
				}
				return nil
			})
		}()
	}
	wg.Wait()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("b"))
		for i, err := range errs {
			if i%16 == 5 {
				assert.ErrorIs(t, err, boom)
				assert.Nil(t, b.Get([]byte(fmt.Sprint(i))), "write %d failed but left its key", i)
			} else {
				assert.NoError(t, err)
				assert.NotNil(t, b.Get([]byte(fmt.Sprint(i))), "write %d lost", i)
			}
		}
		return nil
	}))
	// A later lone write still commits.
	require.NoError(t, c.run(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("late"), []byte("v")) }))
}

// A write that panics inside the transaction fails its own commit and
// leaves the committer able to commit (it runs on its caller's goroutine,
// so the caller's recovery may survive it).
func TestCommitterSurvivesAPanickingWrite(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }))
	c := &committer{db: db, gens: &writeGens{}}
	assert.Panics(t, func() {
		_ = c.run(func(tx *bolt.Tx) error {
			_ = tx.Bucket([]byte("b")).Put([]byte("p"), []byte("v"))
			panic("boom")
		})
	})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.run(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(fmt.Sprint(i)), []byte("v")) }))
		}()
	}
	wg.Wait()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		assert.Nil(t, tx.Bucket([]byte("b")).Get([]byte("p")))
		assert.NotNil(t, tx.Bucket([]byte("b")).Get([]byte("15")))
		return nil
	}))
}
