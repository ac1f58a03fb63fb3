package pca_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/storetest"
)

// caCreateFault makes the next create of a CA record fail: refused
// (nothing written), or with an unknown outcome, before or after writing
// it (an answer lost on the way back).
type caCreateFault struct {
	store.Store
	mu        sync.Mutex
	mode      string
	keyID, id string
}

func (s *caCreateFault) Create(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	s.mu.Lock()
	mode := ""
	if rec.Kind == pca.RecordCA {
		mode, s.mode = s.mode, ""
		if mode != "" {
			s.keyID, s.id = rec.Fields[signer.KeyField], rec.ID
		}
	}
	s.mu.Unlock()
	return storetest.FailWrite(mode, store.ErrExists, func() error { return s.Store.Create(ctx, rec, opts) })
}

// A CA whose record write failed keeps its key unless the store surely
// refused the write: a write with an unknown outcome may have committed,
// and then its record names the key (the reconciler settles the key later
// either way). The CA's index stays with it.
func TestCACreateKeepsTheKeyOfAWriteThatMayHaveCommitted(t *testing.T) {
	for _, mode := range []string{storetest.Refuse, storetest.LoseBefore, storetest.LoseAfter} {
		t.Run(mode, func(t *testing.T) {
			fault := &caCreateFault{}
			core := newPCACoreOver(t, "bolt", func(st store.Store) store.Store { fault.Store = st; return fault })
			e := pca.New(core)
			ctx := pcaCtx()
			fault.mode = mode
			_, err := e.CreateCA(ctx, "t1", pca.CACreate{Type: "ROOT", DN: caDN("Fault Root"), KeyAlgorithm: "EC256",
				SignatureAlgorithm: "SHA256", Validity: &pca.Validity{Type: "YEAR", Value: 10}})
			require.Error(t, err)
			require.NotEmpty(t, fault.keyID)
			h, err := core.HSM()
			require.NoError(t, err)
			exists, err := h.Exists(context.Background(), fault.keyID)
			require.NoError(t, err)
			intents, err := fault.ListIntents(context.Background())
			require.NoError(t, err)
			intentNames := func() bool {
				for _, in := range intents {
					for _, k := range in.KeyIDs {
						if k == fault.keyID {
							return true
						}
					}
				}
				return false
			}()
			_, idxErr := fault.Get(context.Background(), pca.RecordIndex, store.PlatformTenant, fault.id)
			_, caErr := fault.Get(context.Background(), pca.RecordCA, "t1", fault.id)
			switch mode {
			case storetest.Refuse:
				assert.False(t, exists, "a refused write's key is destroyed")
				assert.False(t, intentNames, "and its intent retired")
				assert.ErrorIs(t, idxErr, store.ErrNotFound, "and its index dropped")
			case storetest.LoseBefore:
				assert.True(t, exists, "the key waits for the reconciler")
				assert.True(t, intentNames, "its intent stays for the reconciler")
				assert.NoError(t, idxErr, "the index stays")
				assert.ErrorIs(t, caErr, store.ErrNotFound)
			case storetest.LoseAfter:
				assert.True(t, exists, "the stored CA's key is kept")
				assert.False(t, intentNames, "the write retired the intent")
				assert.NoError(t, idxErr, "the stored CA keeps its index")
				require.NoError(t, caErr)
				got, err := e.GetCA(ctx, "t1", fault.id)
				require.NoError(t, err, "the stored CA is usable")
				assert.Equal(t, "Fault Root", got.DN.CommonName)
			}
		})
	}
}
