package pca

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store/boltstore"
)

// A large CRL's data record only moves forward, whichever of two
// services stores it and whatever each remembers of the record's version.
func TestPublishCRLMovesForward(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	newService := func() *Service {
		core := signer.New(signer.Options{Families: []signer.Family{Family()}, Store: st})
		t.Cleanup(func() { core.Close() })
		return New(core)
	}
	a, b := newService(), newService()
	ctx := context.Background()
	stored := func() (string, []byte) {
		rec, err := st.Get(ctx, RecordCRLData, "t1", "ca")
		require.NoError(t, err)
		der, err := unmarshalCRLData(rec.Data)
		require.NoError(t, err)
		return rec.Fields[crlDataNumberField], der
	}
	publish := func(s *Service, n int64, der string) {
		require.NoError(t, s.publishCRL(ctx, "t1", "ca", n, crlDigest([]byte(der)), []byte(der)))
	}
	publish(a, 1, "one")
	publish(b, 2, "two") // a's remembered version is now stale
	publish(a, 3, "three")
	n, der := stored()
	assert.Equal(t, "0000000000000000003", n)
	assert.Equal(t, "three", string(der))
	publish(b, 2, "late two") // a late writer of an older number changes nothing
	publish(a, 2, "late two")
	n, der = stored()
	assert.Equal(t, "0000000000000000003", n)
	assert.Equal(t, "three", string(der))
	publish(a, 4, "four")
	_, der = stored()
	assert.Equal(t, "four", string(der))
}
