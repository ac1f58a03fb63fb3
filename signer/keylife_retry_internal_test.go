package signer

import (
	"context"
	"crypto"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store/boltstore"
)

// flakyHSM fails the first n key generations the way SoftHSM2 does after
// a crash on the token.
type flakyHSM struct {
	*hsm.HSM
	fails atomic.Int32
}

func (f *flakyHSM) Generate(ctx context.Context, id, label string, alg hsm.Algorithm) (crypto.Signer, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)
	}
	return f.HSM.Generate(ctx, id, label, alg)
}

func TestKeyCreationRetriesGenericFailures(t *testing.T) {
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	f := &flakyHSM{HSM: h}
	e := New(Options{Store: st, HSM: f})
	t.Cleanup(func() { e.Close(); st.Close() })
	ctx := context.Background()

	f.fails.Store(maxCreateAttempts - 1)
	nk, err := e.GenerateKey(ctx, "acme", "thing", "r1", hsm.EC256)
	require.NoError(t, err, "succeeds on the last attempt")
	require.NotNil(t, nk.Signer)
	e.AbandonKey(nk)

	f.fails.Store(maxCreateAttempts)
	_, err = e.GenerateKey(ctx, "acme", "thing", "r2", hsm.EC256)
	require.Error(t, err, "gives up after maxCreateAttempts")
	assert.Equal(t, "CKR_GENERAL_ERROR", hsm.ErrorCode(err))
	in, err := st.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, in, "every failed attempt's intent is retired")
}
