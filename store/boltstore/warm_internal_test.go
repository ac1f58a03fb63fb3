//go:build linux

package boltstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// After a crash (a copy of the file taken while the store was open) the
// file names no free-page list and Open reads it from start to end before
// bbolt walks it; after a clean stop it names one and Open reads nothing
// ahead. Files below the threshold, and files that are not bbolt's, are
// not read ahead.
func TestReadAheadAfterACrashOnly(t *testing.T) {
	defer func(v int64) { warmMinSize = v }(warmMinSize)
	warmMinSize = 64 << 10
	dir := t.TempDir()
	path, crashed := filepath.Join(dir, "hsmca.db"), filepath.Join(dir, "crashed.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	data := []byte(fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", 2000)))
	for i := range 200 {
		require.NoError(t, s.Create(context.Background(), &store.Record{Kind: "k", Tenant: "t", ID: fmt.Sprint(i), Data: data}, store.WriteOpts{}))
	}
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(crashed, raw, 0o600))
	require.NoError(t, s.Close())

	assert.True(t, namesNoFreelist(crashed))
	assert.False(t, namesNoFreelist(path))
	assert.False(t, FreelistWritten(crashed))
	assert.True(t, FreelistWritten(path))
	if memAvailable() > 0 {
		c, err := Open(crashed, Options{})
		require.NoError(t, err)
		assert.Equal(t, int64(len(raw)), c.ReadAhead(), "the whole file, before the walk")
		require.NoError(t, c.Close())
		assert.False(t, namesNoFreelist(crashed), "its clean stop wrote the list")
	}
	s, err = Open(path, Options{})
	require.NoError(t, err)
	assert.Zero(t, s.ReadAhead(), "a clean stop: the list is read")
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "a second Close is a no-op")

	// A file a running store holds is not read ahead: the open is refused.
	require.NoError(t, os.WriteFile(crashed, raw, 0o600))
	if memAvailable() > 0 {
		held, err := os.Open(crashed)
		require.NoError(t, err)
		require.NoError(t, syscall.Flock(int(held.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
		assert.Zero(t, readAhead(crashed), "locked by another open")
		_, err = Open(crashed, Options{Timeout: 50 * time.Millisecond})
		assert.ErrorIs(t, err, ErrLocked)
		require.NoError(t, held.Close())
		assert.Equal(t, int64(len(raw)), readAhead(crashed), "once the lock is gone")
	}

	warmMinSize = int64(len(raw)) + 1
	assert.Zero(t, readAhead(crashed), "below the threshold")
	other := filepath.Join(dir, "other")
	require.NoError(t, os.WriteFile(other, make([]byte, 1<<20), 0o600))
	warmMinSize = 1
	assert.False(t, namesNoFreelist(other), "no magic: no hint")
	assert.Zero(t, readAhead(other))
	assert.False(t, namesNoFreelist(filepath.Join(dir, "absent")))
	assert.False(t, FreelistWritten(other), "not a bbolt file")
	assert.False(t, FreelistWritten(filepath.Join(dir, "absent")))
}
