package signer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The parsers of untrusted bytes (PEM text, private keys, cursors) must
// never panic, must refuse with an invalid-kind error that carries no
// line breaks of the input, and what they accept must be what the engine
// relies on. `make fuzz` runs each target; the seeds below run with every
// `go test`. The CSR and certificate-bundle readers of the PCA family have
// theirs in pca_fuzz_test.go, the APIG readers in apig_pem_test.go, the
// signing input of the keys API in signer/keys.

// fuzzSeeds builds a few well-formed inputs of each kind once.
type fuzzSeeds struct {
	certPEM, certPEM2, csrPEM, csrP224, rsaPKCS1, ecSEC1, edPKCS8, p224PKCS8 string
}

func newFuzzSeeds(tb testing.TB) fuzzSeeds {
	tb.Helper()
	var s fuzzSeeds
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "fuzz seed"},
		DNSNames: []string{"seed.example"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ec.PublicKey, ec)
	require.NoError(tb, err)
	s.certPEM = pemEncode("CERTIFICATE", der)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ec.PublicKey, ec)
	require.NoError(tb, err)
	s.certPEM2 = pemEncode("CERTIFICATE", der)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "fuzz"},
		DNSNames: []string{"a.example"}}, ec)
	require.NoError(tb, err)
	s.csrPEM = pemEncode("CERTIFICATE REQUEST", csr)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(tb, err)
	csr, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "p224"}}, p224)
	require.NoError(tb, err)
	s.csrP224 = pemEncode("CERTIFICATE REQUEST", csr)
	k8, err := x509.MarshalPKCS8PrivateKey(p224)
	require.NoError(tb, err)
	s.p224PKCS8 = pemEncode("PRIVATE KEY", k8)
	rk, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // a seed the parser must refuse
	if err == nil {
		s.rsaPKCS1 = pemEncode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	require.NoError(tb, err)
	s.ecSEC1 = pemEncode("EC PRIVATE KEY", sec1)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	k8, err = x509.MarshalPKCS8PrivateKey(ed)
	require.NoError(tb, err)
	s.edPKCS8 = pemEncode("PRIVATE KEY", k8)
	return s
}

// checkRefusal: a refusal is a typed invalid-input error on one line.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	e := AsError(err)
	assert.Equal(t, KindInvalid, e.Kind, "refusal kind: %v", err)
	assert.NotContains(t, e.Msg, "\n")
}

// FuzzReadPEM: the forgiving PEM splitter of the APIG family.
func FuzzReadPEM(f *testing.F) {
	s := newFuzzSeeds(f)
	for _, seed := range []string{s.certPEM, s.certPEM + s.certPEM2, s.ecSEC1, "'" + strings.ReplaceAll(s.certPEM, "\n", `\n`) + "'",
		"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END X-----",
		"-----BEGIN -----", "-----BEGIN A-----AAAA-----END A-----", ""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		in := append([]byte{}, text...)
		blocks, err := readPEM(text)
		assert.True(t, bytes.Equal(in, text), "readPEM must not modify its input")
		for _, b := range blocks {
			assert.NotEmpty(t, b.Type)
			assert.LessOrEqual(t, len(b.Type), 64)
			assert.LessOrEqual(t, len(b.Bytes), len(text))
		}
		if err != nil {
			assert.NotContains(t, err.Error(), "\n")
		}
	})
}

// FuzzParsePrivateKey: the private_key field of an APIG import. Accepted
// keys are of a type and size the HSM import path takes.
func FuzzParsePrivateKey(f *testing.F) {
	s := newFuzzSeeds(f)
	for _, seed := range []string{s.ecSEC1, s.edPKCS8, s.rsaPKCS1, s.p224PKCS8, s.certPEM,
		strings.Replace(s.ecSEC1, "EC PRIVATE KEY", "PRIVATE KEY", 2), s.ecSEC1 + s.edPKCS8,
		"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", ""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		key, err := parsePrivateKey(append([]byte(nil), text...))
		if err != nil {
			assert.Nil(t, key)
			checkRefusal(t, err)
			return
		}
		require.NotNil(t, key)
		pub := publicOf(t, key)
		alg, err := importedKeyAlgorithm(pub)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		assert.NotEmpty(t, alg)
		if k, ok := pub.(*rsa.PublicKey); ok {
			assert.GreaterOrEqual(t, k.N.BitLen(), minRSABits)
			assert.LessOrEqual(t, k.N.BitLen(), maxRSABits)
		}
	})
}

func publicOf(t *testing.T, key any) any {
	t.Helper()
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	// x509 also parses X25519 and ECDH keys; importedKeyAlgorithm refuses them.
	return key
}

// FuzzParseEventCursor: the cursor query parameter of /v1/events.
func FuzzParseEventCursor(f *testing.F) {
	for _, seed := range []string{"", "0", "1", "18446744073709551615", "18446744073709551616", "-1", "1e3", " 1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := ParseEventCursor(s); err != nil {
			checkRefusal(t, err)
		}
	})
}
