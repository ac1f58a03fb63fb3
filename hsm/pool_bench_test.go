package hsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// BenchmarkCallOverhead puts what run adds to a PKCS#11 call (the
// deadline, the session pool, the goroutine the call runs in) beside the
// same call made directly on a session: a cheap call (C_GetSessionInfo)
// and a signature. The difference is run's cost per call.
func BenchmarkCallOverhead(b *testing.B) {
	tok := testenv.NewToken(b)
	h, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(b, err)
	b.Cleanup(func() { _ = h.Close() })
	ctx := context.Background()
	signer, err := h.Generate(ctx, "bench", "hsmca/bench/overhead", EC256)
	require.NoError(b, err)
	digest := sha256.Sum256([]byte("hsmca"))
	_, err = signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	require.NoError(b, err)
	be, err := h.acquire(ctx)
	require.NoError(b, err)
	info := func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		_, err := p.GetSessionInfo(s)
		return err
	}

	b.Run("info/direct", func(b *testing.B) {
		s, err := be.pool.take()
		require.NoError(b, err)
		defer be.pool.put(s, nil, false)
		for b.Loop() {
			if err := info(be.p, s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("info/run", func(b *testing.B) {
		for b.Loop() {
			if err := be.run(ctx, time.Minute, "", info); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("info/run-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := be.run(ctx, time.Minute, "", info); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("sign/run", func(b *testing.B) {
		for b.Loop() {
			if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
}
