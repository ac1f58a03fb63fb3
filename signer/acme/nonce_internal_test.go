package acme

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

// Nonces live in the store: each is good once, not after its hour, and
// the janitor deletes the expired ones, on both stores.
func TestNonces(t *testing.T) {
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			idx := signer.StoreIndexes(Family())
			var st store.Store
			var err error
			if backend == "bolt" {
				st, err = boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: idx})
			} else {
				st, err = redisstore.Open(ctx, testenv.StartRedis(t).URL(), redisstore.Options{Indexes: idx})
			}
			require.NoError(t, err)
			t.Cleanup(func() { st.Close() })
			var off atomic.Int64
			core := signer.New(signer.Options{Families: []signer.Family{Family()}, Store: st,
				Now: func() time.Time { return time.Now().Add(time.Duration(off.Load())) }})
			t.Cleanup(func() { core.Close() })
			s := New(core, nil, Config{})

			n, err := s.NewNonce(ctx)
			require.NoError(t, err)
			require.NoError(t, s.useNonce(ctx, n))
			assert.Equal(t, ReasonBadNonce, signer.ReasonOf(s.useNonce(ctx, n)), "used twice")
			assert.Equal(t, ReasonBadNonce, signer.ReasonOf(s.useNonce(ctx, "made-up")))

			stale, err := s.NewNonce(ctx)
			require.NoError(t, err)
			fresh, err := s.NewNonce(ctx)
			require.NoError(t, err)
			off.Store(int64(2 * time.Hour))
			kept, err := s.NewNonce(ctx)
			require.NoError(t, err)
			assert.Equal(t, ReasonBadNonce, signer.ReasonOf(s.useNonce(ctx, stale)), "expired")
			purged, err := purgeNonces(ctx, core)
			require.NoError(t, err)
			assert.Equal(t, 1, purged, "the other expired nonce")
			_, err = st.Get(ctx, RecordNonce, store.PlatformTenant, fresh)
			assert.ErrorIs(t, err, store.ErrNotFound)
			require.NoError(t, s.useNonce(ctx, kept))
		})
	}
}
