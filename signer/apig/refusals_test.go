package apig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
)

// seeds are well-formed inputs of the APIG fields, made once.
type seeds struct {
	keyPEM, certPEM, rsaPKCS1, ecSEC1, edPKCS8, p224PKCS8 string
}

func newSeeds(tb testing.TB) seeds {
	tb.Helper()
	enc := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	var s seeds
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	require.NoError(tb, err)
	s.keyPEM = enc("PRIVATE KEY", der)
	sec1, err := x509.MarshalECPrivateKey(ec)
	require.NoError(tb, err)
	s.ecSEC1 = enc("EC PRIVATE KEY", sec1)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "fuzz seed"},
		DNSNames: []string{"seed.example"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ec.PublicKey, ec)
	require.NoError(tb, err)
	s.certPEM = enc("CERTIFICATE", der)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(tb, err)
	der, err = x509.MarshalPKCS8PrivateKey(p224)
	require.NoError(tb, err)
	s.p224PKCS8 = enc("PRIVATE KEY", der)
	if rk, err := rsa.GenerateKey(rand.Reader, 1024); err == nil { //nolint:gosec // a seed the import must refuse
		s.rsaPKCS1 = enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	der, err = x509.MarshalPKCS8PrivateKey(ed)
	require.NoError(tb, err)
	s.edPKCS8 = enc("PRIVATE KEY", der)
	return s
}

// parseKey reads the private_key field as an import does: the key,
// then its algorithm.
func parseKey(text string) (alg string, bits int, err error) {
	k, err := encoding.ParsePrivateKey([]byte(text))
	if err != nil {
		return "", 0, refusal("private_key", err)
	}
	defer encoding.WipeKey(k)
	var pub crypto.PublicKey = k // x509 also reads X25519 and ECDH keys: KeyAlgorithm refuses them
	if s, ok := k.(crypto.Signer); ok {
		pub = s.Public()
	}
	a, bits, err := encoding.KeyAlgorithm(pub)
	if err != nil {
		return "", 0, refusal("private_key", err)
	}
	return string(a), bits, nil
}

// Each refusal of the readers carries the APIG reason of its code.
func TestRefusalReasons(t *testing.T) {
	s := newSeeds(t)
	for name, tc := range map[string]struct {
		key, cert string
		reason    signer.Reason
	}{
		"legacy encrypted key":  {key: "-----BEGIN RSA PRIVATE KEY-----Proc-Type: 4,ENCRYPTED DEK-Info: AES-256-CBC,00 AAAA-----END RSA PRIVATE KEY-----", reason: ReasonEncryptedKey},
		"PKCS#8 encrypted key":  {key: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", reason: ReasonEncryptedKey},
		"two keys":              {key: s.keyPEM + s.ecSEC1, reason: ReasonBadValue},
		"P-224 key":             {key: s.p224PKCS8, reason: ReasonBadValue},
		"no key":                {key: s.certPEM, reason: ReasonUnparseable},
		"key not PEM":           {key: "-----BEGIN PRIVATE KEY-----\nAAAA", reason: ReasonUnparseable},
		"key in the cert field": {cert: s.keyPEM, reason: ReasonUnparseable},
		"cert not X.509":        {cert: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", reason: ReasonUnparseable},
		"cert field empty PEM":  {cert: "no PEM here", reason: ReasonUnparseable},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			if tc.key != "" {
				_, _, err = parseKey(tc.key)
			} else {
				_, err = encoding.ParseCertificates([]byte(tc.cert), encoding.RefuseOthers)
				err = refusal("cert_content", err)
			}
			require.Error(t, err)
			assert.Equal(t, tc.reason, signer.ReasonOf(err))
			assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
		})
	}
}

// The private_key and cert_content readers take untrusted text: no input
// makes them panic, every refusal is an invalid field with an APIG reason on
// one line, and the keys accepted are of a type and size the HSM import
// takes.
func FuzzAPIGParsers(f *testing.F) {
	s := newSeeds(f)
	for _, seed := range []string{s.keyPEM, "'" + strings.ReplaceAll(s.keyPEM, "\n", `\n`) + "'",
		"'-----BEGIN PRIVATE KEY-----THIS IS YOUR PRIVATE KEY-----END PRIVATE KEY-----\\n'",
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		"-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n-----END EC PRIVATE KEY-----",
		"-----BEGIN -----\n-----END -----",
		s.ecSEC1, s.edPKCS8, s.rsaPKCS1, s.p224PKCS8, s.certPEM, s.certPEM + s.keyPEM,
		strings.Replace(s.ecSEC1, "EC PRIVATE KEY", "PRIVATE KEY", 2), s.ecSEC1 + s.edPKCS8, ""} {
		f.Add(seed)
	}
	refused := func(t *testing.T, err error) {
		e := signer.AsError(err)
		assert.Equal(t, signer.KindInvalid, e.Kind, "refusal kind: %v", err)
		assert.NotEmpty(t, e.Reason)
		assert.NotContains(t, e.Msg, "\n")
	}
	f.Fuzz(func(t *testing.T, in string) {
		alg, bits, err := parseKey(in)
		if err != nil {
			refused(t, err)
		} else {
			assert.NotEmpty(t, alg)
			if strings.HasPrefix(alg, "RSA") {
				assert.GreaterOrEqual(t, bits, encoding.MinRSABits)
				assert.LessOrEqual(t, bits, encoding.MaxRSABits)
			}
		}
		if _, err := encoding.ParseCertificates([]byte(in), encoding.RefuseOthers); err != nil {
			refused(t, refusal("cert_content", err))
		}
	})
}
