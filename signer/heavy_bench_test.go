package signer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
)

// The costs docs/SECURITY.md tabulates for the operations the heavy-work
// pool runs (heavy.go), next to light ones for scale. Run with
//
//	go test -run '^$' -bench Heavy -benchtime 5x ./signer/
//
// They measure; they assert nothing.

func BenchmarkHeavyExportPassword(b *testing.B) {
	key, err := issuance.GenerateLeafKey(hsm.EC256)
	if err != nil {
		b.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := encoding.EncryptPKCS8(pkcs8, "correct horse"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHeavySoftwareKeygen(b *testing.B) {
	for _, alg := range []hsm.Algorithm{hsm.EC256, hsm.EC384, hsm.RSA2048, hsm.RSA3072, hsm.RSA4096} {
		b.Run(string(alg), func(b *testing.B) {
			for b.Loop() {
				if _, err := issuance.GenerateLeafKey(alg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchHSM(b *testing.B) *hsm.HSM {
	tok := testenv.NewToken(b)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

func BenchmarkHeavyHSMKeygen(b *testing.B) {
	h := benchHSM(b)
	ctx := context.Background()
	for _, alg := range []hsm.Algorithm{hsm.EC256, hsm.RSA2048, hsm.RSA3072, hsm.RSA4096} {
		b.Run(string(alg), func(b *testing.B) {
			for b.Loop() {
				id := NewKeyID()
				if _, err := h.Generate(ctx, id, "bench", alg); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = h.Delete(ctx, id)
				b.StartTimer()
			}
		})
	}
}

// rsaTestKey makes an RSA key of bits.
func rsaTestKey(b *testing.B, bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func BenchmarkHeavyHSMSign(b *testing.B) {
	h := benchHSM(b)
	ctx := context.Background()
	digest := sha256.Sum256([]byte("bench"))
	signers := map[string]crypto.Signer{}
	ec, err := h.Generate(ctx, NewKeyID(), "bench", hsm.EC256)
	if err != nil {
		b.Fatal(err)
	}
	signers["EC256"] = ec
	for _, bits := range []int{2048, 4096, 6144, 8192} {
		s, err := h.Import(ctx, NewKeyID(), "bench", rsaTestKey(b, bits))
		if err != nil {
			b.Fatal(err)
		}
		signers[fmt.Sprintf("RSA%d", bits)] = s
	}
	for _, name := range []string{"EC256", "RSA2048", "RSA4096", "RSA6144", "RSA8192"} {
		s := signers[name]
		b.Run(name, func(b *testing.B) {
			var opts crypto.SignerOpts = crypto.SHA256
			for b.Loop() {
				if _, err := s.Sign(rand.Reader, digest[:], opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHeavyImportRSA(b *testing.B) {
	h := benchHSM(b)
	ctx := context.Background()
	for _, bits := range []int{2048, 4096, 8192} {
		key := rsaTestKey(b, bits)
		der := x509.MarshalPKCS1PrivateKey(key)
		b.Run(fmt.Sprintf("parse/RSA%d", bits), func(b *testing.B) {
			for b.Loop() {
				if _, err := x509.ParsePKCS1PrivateKey(der); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("hsm/RSA%d", bits), func(b *testing.B) {
			for b.Loop() {
				id := NewKeyID()
				if _, err := h.Import(ctx, id, "bench", key); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = h.Delete(ctx, id)
				b.StartTimer()
			}
		})
	}
}
