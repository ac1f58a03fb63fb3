package signer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"math/big"
	"time"
)

// randomSerial is a positive serial number of at most 20 octets (RFC 5280
// 4.1.2.2) with 159 random bits: the top bit of the first octet is cleared
// so the DER integer needs no sign octet.
func randomSerial() (*big.Int, error) {
	var b [20]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		b[0] &= 0x7f
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID is RFC 5280's method 1: the SHA-1 of the subjectPublicKey
// bits. It is an identifier, not a security property, and keeps the value
// the one every other tool computes.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	bits, err := subjectPublicKeyBits(pub)
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum(bits)
	return sum[:], nil
}

// subjectPublicKeyBits is the content of the subjectPublicKey BIT STRING,
// what key identifiers hash.
func subjectPublicKeyBits(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	return spki.PublicKey.Bytes, nil
}

// observedSigner times every signature of an HSM key for the latency
// histogram.
type observedSigner struct {
	crypto.Signer
	e      *Engine
	op     string
	keyAlg string
}

func (s observedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := s.Signer.Sign(r, digest, opts)
	if err == nil {
		s.e.metrics.ObserveSigning(s.op, s.keyAlg, time.Since(start))
	}
	return sig, err
}

// observed returns the signer of an HSM key wrapped for metrics.
func (e *Engine) observed(ctx context.Context, keyID, keyAlg, op string) (crypto.Signer, error) {
	s, err := e.Signer(ctx, keyID)
	if err != nil {
		return nil, err
	}
	return observedSigner{Signer: s, e: e, op: op, keyAlg: keyAlg}, nil
}

// signCertificate completes tmpl (serial, key identifier) and signs it
// with parent's key. Go verifies the new signature against the parent's
// public key before returning it, so an HSM fault cannot yield a bad
// certificate.
func signCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, s crypto.Signer) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	if tmpl.SubjectKeyId, err = subjectKeyID(pub); err != nil {
		return nil, err
	}
	if parent == nil {
		parent = tmpl
	}
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, s)
}

func pcaPEM(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}
