package encoding

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePrivateKeyFormats(t *testing.T) {
	ec := ecKey(t)
	sec1, err := x509.MarshalECPrivateKey(ec)
	require.NoError(t, err)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ecPKCS8, _ := pkcs8PEM(t, ec)
	edPKCS8, _ := pkcs8PEM(t, ed)
	cert, _ := certPEM(t, "beside")
	for name, tc := range map[string]struct {
		text string
		want any
	}{
		"PKCS#8 EC":           {ecPKCS8, &ecdsa.PrivateKey{}},
		"PKCS#8 Ed25519":      {edPKCS8, ed25519.PrivateKey{}},
		"SEC1":                {EncodePEM("EC PRIVATE KEY", sec1), &ecdsa.PrivateKey{}},
		"PKCS#1":              {EncodePEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), &rsa.PrivateKey{}},
		"SEC1 labelled PKCS8": {EncodePEM("PRIVATE KEY", sec1), &ecdsa.PrivateKey{}},
		"PKCS8 labelled RSA":  {strings.ReplaceAll(ecPKCS8, "PRIVATE KEY", "RSA PRIVATE KEY"), &ecdsa.PrivateKey{}},
		"with a certificate":  {cert + ecPKCS8, &ecdsa.PrivateKey{}},
	} {
		t.Run(name, func(t *testing.T) {
			k, err := ParsePrivateKey([]byte(tc.text))
			require.NoError(t, err)
			assert.IsType(t, tc.want, k)
		})
	}
}

func TestParsePrivateKeyRefusals(t *testing.T) {
	one, _ := pkcs8PEM(t, ecKey(t))
	two, _ := pkcs8PEM(t, ecKey(t))
	cert, _ := certPEM(t, "a")
	for name, tc := range map[string]struct {
		text   string
		reason Reason
	}{
		"two keys":       {one + two, Count},
		"PKCS#8 sealed":  {"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", Encrypted},
		"legacy sealed":  {"-----BEGIN RSA PRIVATE KEY-----Proc-Type: 4,ENCRYPTED DEK-Info: AES-256-CBC,00 AAAA-----END RSA PRIVATE KEY-----", Encrypted},
		"only a cert":    {cert, Malformed},
		"not a key":      {"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", Malformed},
		"not PEM at all": {"-----BEGIN PRIVATE KEY-----\nAAAA", Malformed},
	} {
		t.Run(name, func(t *testing.T) {
			k, err := ParsePrivateKey([]byte(tc.text))
			require.Error(t, err)
			assert.Nil(t, k)
			assert.Equal(t, tc.reason, ReasonOf(err))
		})
	}
}

func TestWipeKeyZeroesTheSecrets(t *testing.T) {
	ec := ecKey(t)
	WipeKey(ec)
	assert.Zero(t, ec.D.Sign())
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rk.Precompute()
	WipeKey(rk)
	assert.Zero(t, rk.D.Sign())
	for _, p := range rk.Primes {
		assert.Zero(t, p.Sign())
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	WipeKey(ed)
	assert.Equal(t, make(ed25519.PrivateKey, len(ed)), ed)
}

// FuzzParsePrivateKey: the private-key reader never panics, never changes
// its input, and refuses with a reason on one line.
func FuzzParsePrivateKey(f *testing.F) {
	text, _ := pkcs8PEM(f, ecKey(f))
	for _, seed := range []string{text, "'" + strings.ReplaceAll(text, "\n", `\n`) + "'",
		"'-----BEGIN PRIVATE KEY-----THIS IS YOUR PRIVATE KEY-----END PRIVATE KEY-----\\n'",
		"-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n-----END EC PRIVATE KEY-----",
		"-----BEGIN -----\n-----END -----", text + text, ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePrivateKey([]byte(s))
		if err != nil {
			assert.Nil(t, k)
			assert.NotZero(t, ReasonOf(err))
			assert.NotContains(t, err.Error(), "\n")
			return
		}
		require.NotNil(t, k)
		WipeKey(k)
	})
}
