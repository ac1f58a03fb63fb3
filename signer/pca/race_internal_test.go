package pca

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// A CA purged by a concurrent sweep between another operation's read and
// its write: the CRL refresh of a revocation publishes nothing and
// succeeds, and a second purge of the same record reports the deletion
// that happened instead of "not found".
func TestPCAPurgedUnderfoot(t *testing.T) {
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	core := signer.New(signer.Options{Families: []signer.Family{Family()}, Store: st, HSM: h})
	t.Cleanup(func() { core.Close(); st.Close() })
	e := New(core)
	ctx := context.Background()

	id, err := e.CreateCA(ctx, "acme", CACreate{Type: CATypeRoot, KeyAlgorithm: "EC256", SignatureAlgorithm: "SHA256",
		DN: &DistinguishedName{CommonName: "Root", Country: "DE", State: "Berlin", Locality: "Berlin",
			Organization: "Example", OrganizationalUnit: "PKI"},
		Validity: &Validity{Type: "YEAR", Value: 5}, CRL: &CRLConfiguration{Enabled: true, ValidDays: 7}})
	require.NoError(t, err)
	rec, c, err := e.getCA(ctx, "acme", id)
	require.NoError(t, err)

	// The record goes while refreshCRL holds an old read: simulated by
	// deleting it under a stale copy that putCA then updates.
	stale := *rec
	require.NoError(t, st.Delete(ctx, RecordCA, "acme", id, store.WriteOpts{}))
	err = e.putCA(ctx, &stale, c)
	require.ErrorIs(t, err, store.ErrNotFound, "the store reports the purge")
	assert.NoError(t, e.refreshCRL(ctx, "acme", id), "a purged issuer publishes nothing and that is no failure")

	// Two purges of one DELETED record: the second finds it gone.
	id2, err := e.CreateCA(ctx, "acme", CACreate{Type: CATypeSubordinate, KeyAlgorithm: "EC256",
		DN: &DistinguishedName{CommonName: "Pending", Country: "DE", State: "Berlin", Locality: "Berlin",
			Organization: "Example", OrganizationalUnit: "PKI"}})
	require.NoError(t, err)
	rec2, c2, err := e.getCA(ctx, "acme", id2)
	require.NoError(t, err)
	c2.Status, c2.DeleteTime = CADeleted, e.now().UnixMilli()-1
	require.NoError(t, e.putCA(ctx, rec2, c2))
	first := *rec2
	require.NoError(t, e.purgeCA(ctx, &first))
	second := *rec2
	assert.NoError(t, e.purgeCA(ctx, &second), "the deletion happened; the loser of the race must not report not found")
	_, _, err = e.getCA(ctx, "acme", id2)
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
}
