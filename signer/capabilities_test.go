package signer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// noECHSM is a SoftHSM2 token that says it lacks EC (as opencryptoki's
// soft token does), RSA-PSS and any way to wrap secrets: its Generate,
// Import and Wrap would still work, so a refusal proves the core asked
// first.
type noECHSM struct {
	*countingHSM
}

func (noECHSM) Supports(alg hsm.Algorithm) error {
	if alg == hsm.EC256 || alg == hsm.EC384 || alg == hsm.EC521 {
		return &hsm.UnsupportedError{Feature: string(alg), Reason: "no CKM_EC_KEY_PAIR_GEN"}
	}
	return nil
}

func (h noECHSM) SupportsKey(pub crypto.PublicKey) error { return h.Supports(hsm.AlgorithmOf(pub)) }

func (noECHSM) SupportsFeature(f string) error {
	return &hsm.UnsupportedError{Feature: f, Reason: "no CKM_AES_GCM, and no CKM_AES_ECB for AES-CTR with HMAC-SHA256"}
}

func TestTokenLimitsRefusedBeforeAnyWrite(t *testing.T) {
	c, h, _, st := newHSMCore(t)
	ctx := context.Background()
	// A record with a key, for the rotation and the replacement below.
	nk, err := c.GenerateKey(ctx, "t1", "thing", "r1", hsm.RSA2048)
	require.NoError(t, err)
	r := &store.Record{Kind: "thing", Tenant: "t1", ID: "r1", Data: json.RawMessage(`{}`)}
	require.NoError(t, c.CommitKey(ctx, r, nk, store.WriteOpts{}))
	c.SetHSM(noECHSM{h})

	refused := func(err error, feature string) {
		t.Helper()
		require.Error(t, err)
		e := signer.AsError(err)
		assert.Equal(t, signer.KindInvalid, e.Kind, "a token limit is the caller's to work around: 400")
		assert.Contains(t, e.Msg, "the HSM token does not support "+feature)
		assert.ErrorIs(t, err, hsm.ErrUnsupported)
		left, err := st.ListIntents(ctx)
		require.NoError(t, err)
		assert.Empty(t, left, "no intent written")
	}
	_, err = c.GenerateKey(ctx, "t1", "thing", "r2", hsm.EC256)
	refused(err, "EC256 (no CKM_EC_KEY_PAIR_GEN)")
	assert.Equal(t, "the HSM token does not support EC256 (no CKM_EC_KEY_PAIR_GEN)", signer.AsError(err).Msg)

	ek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	_, err = c.ImportKey(ctx, "t1", "thing", "r3", ek)
	refused(err, "EC384")
	stored, err := st.Get(ctx, "thing", "t1", "r1")
	require.NoError(t, err)
	refused(c.ReplaceKey(ctx, stored, ek, func(*store.Record) {}), "EC384")
	applied := false
	refused(c.RotateKey(ctx, stored, hsm.EC521, func(*store.Record, crypto.Signer) error { applied = true; return nil }), "EC521")
	assert.False(t, applied)
	got, err := st.Get(ctx, "thing", "t1", "r1")
	require.NoError(t, err)
	assert.Equal(t, nk.ID, got.Fields[signer.KeyField], "the record keeps its key")

	_, err = c.Seal(ctx, "w", "hsmca/test/w", []byte("secret"), nil)
	refused(err, "secret wrapping (no CKM_AES_GCM, and no CKM_AES_ECB for AES-CTR with HMAC-SHA256)")
	assert.Zero(t, h.ensured.Load(), "no wrapping key asked for")
	_, _, err = c.CreateAccessKey(signer.WithCaller(ctx, signer.Caller{Principal: "ops:test"}), "acme", []string{"admin"}, nil)
	refused(err, "secret wrapping")
	assert.Contains(t, signer.AsError(err).Msg, "use an API token or an OAuth client instead")
	keys, err := c.ListAccessKeys(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, keys)

	// What the token has still works.
	assert.Equal(t, []hsm.Algorithm{hsm.RSA2048, hsm.ED25519}, c.Algorithms([]hsm.Algorithm{hsm.EC256, hsm.RSA2048, hsm.ED25519}))
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	nk2, err := c.ImportKey(ctx, "t1", "thing", "r4", rk)
	require.NoError(t, err)
	c.AbandonKey(nk2)
	require.NoError(t, c.RotateKey(ctx, stored, hsm.RSA2048, func(*store.Record, crypto.Signer) error { return nil }))

	c.SetHSM(h)

	// Without an HSM the question is left to the call that needs it.
	bare := signer.New(signer.Options{Store: st})
	defer bare.Close()
	assert.NoError(t, bare.Supports(hsm.EC256))
	assert.Equal(t, hsm.AllAlgorithms(), bare.Algorithms(hsm.AllAlgorithms()))
	_, err = bare.GenerateKey(ctx, "t1", "thing", "r5", hsm.EC256)
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
}

func TestUnsupportedNamesTheField(t *testing.T) {
	err := signer.HSMError(&hsm.UnsupportedError{Feature: "EC256", Reason: "no CKM_EC_KEY_PAIR_GEN"}, "key")
	e := signer.AsError(signer.Unsupported(err, "r.x", "key_algorithm", "EC256", "it offers RSA2048"))
	assert.Equal(t, signer.KindInvalid, e.Kind)
	assert.Equal(t, signer.Reason("r.x"), e.Reason)
	assert.Equal(t, "key_algorithm: the HSM token does not support EC256 (no CKM_EC_KEY_PAIR_GEN); it offers RSA2048", e.Msg)
	require.Len(t, e.Fields, 1)
	assert.Equal(t, "key_algorithm", e.Fields[0].Field)

	other := signer.E(signer.KindUnavailable, "down")
	assert.Same(t, other, signer.Unsupported(other, "", "f", nil, "").(*signer.Error), "other errors pass through")
}
