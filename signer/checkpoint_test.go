package signer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

// openStore opens an empty store of the backend.
func openStore(t *testing.T, backend string) store.Store {
	t.Helper()
	if backend == "redis" {
		rs := testenv.StartRedis(t)
		st, err := redisstore.Open(context.Background(), rs.URL(), redisstore.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		return st
	}
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

func TestCheckpoints(t *testing.T) {
	tok := testenv.NewToken(t)
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
			require.NoError(t, err)
			st := openStore(t, backend)
			e := signer.New(signer.Options{Store: st, HSM: h})
			defer e.Close()
			ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})

			_, err = e.LatestCheckpoint(ctx, "acme")
			assert.Equal(t, signer.KindNotFound, signer.AsError(err).Kind)

			for range 3 {
				_, _, err := e.CreateToken(ctx, "acme", []string{signer.RoleAuditor}, nil)
				require.NoError(t, err)
			}
			cp, err := e.CheckpointEvents(ctx, "acme")
			require.NoError(t, err)
			// Three token creations, then the checkpoint's own record.
			assert.Equal(t, uint64(4), cp.Seq)
			evs, err := e.ListEvents(ctx, "acme", 0, 0)
			require.NoError(t, err)
			require.Len(t, evs, 4)
			assert.Equal(t, signer.EventCheckpoint, evs[3].Operation)
			assert.Equal(t, evs[3].Hash, cp.Hash, "the checkpoint covers its own record")

			key, err := e.CheckpointKeyInfo(ctx)
			require.NoError(t, err)
			assert.Equal(t, key.KeyID, cp.KeyID)
			cert, err := signer.VerifyCheckpoint(cp, key.KeyID)
			require.NoError(t, err)
			b, _ := pem.Decode([]byte(key.PublicKey))
			pub, err := x509.ParsePKIXPublicKey(b.Bytes)
			require.NoError(t, err)
			assert.True(t, cert.PublicKey.(*ecdsa.PublicKey).Equal(pub))
			require.NoError(t, cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature), "self-signed")

			// A changed field breaks the signature; another pinned key is refused.
			bad := *cp
			bad.Seq--
			_, err = signer.VerifyCheckpoint(&bad, "")
			assert.ErrorContains(t, err, "does not verify")
			_, err = signer.VerifyCheckpoint(cp, "00")
			assert.ErrorContains(t, err, "not the pinned key")

			got, err := e.GetCheckpoint(ctx, "acme", 4)
			require.NoError(t, err)
			assert.Equal(t, cp.Signature, got.Signature)

			// Due: acme's chain ends with its checkpoint, so nothing; a new
			// record makes it due again.
			n, err := e.CheckpointDue(ctx)
			require.NoError(t, err)
			assert.Equal(t, 0, n, "an idle chain is not checkpointed again")
			_, _, err = e.CreateToken(ctx, "acme", []string{signer.RoleAuditor}, nil)
			require.NoError(t, err)
			n, err = e.CheckpointDue(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			latest, err := e.LatestCheckpoint(ctx, "acme")
			require.NoError(t, err)
			assert.Equal(t, uint64(6), latest.Seq)
			list, next, err := e.ListCheckpoints(ctx, "acme", 10, "")
			require.NoError(t, err)
			assert.Empty(t, next)
			require.Len(t, list, 2)
			assert.Equal(t, []uint64{6, 4}, []uint64{list[0].Seq, list[1].Seq}, "newest first")
		})
	}
}
