package signer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer"
)

// OpenSSL decrypts what EncryptPKCS8 writes back to the same PKCS#8, for
// EC and RSA keys, and refuses a wrong password.
func TestEncryptPKCS8OpensWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is required for this test: %v", err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for name, key := range map[string]any{"EC": ec, "RSA": rk} {
		t.Run(name, func(t *testing.T) {
			der, err := x509.MarshalPKCS8PrivateKey(key)
			require.NoError(t, err)
			const pw = "s3cret pass phrase"
			enc, err := signer.EncryptPKCS8(der, pw)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(string(enc), "-----BEGIN ENCRYPTED PRIVATE KEY-----"))
			in := filepath.Join(t.TempDir(), "key.pem")
			require.NoError(t, os.WriteFile(in, enc, 0o600))

			out, err := exec.Command("openssl", "pkcs8", "-in", in, "-passin", "pass:"+pw).Output()
			require.NoError(t, err)
			b, _ := pem.Decode(out)
			require.NotNil(t, b, "openssl output: %s", out)
			assert.Equal(t, "PRIVATE KEY", b.Type)
			assert.Equal(t, der, b.Bytes, "decrypts to the same PKCS#8")

			info, err := exec.Command("openssl", "asn1parse", "-in", in).CombinedOutput()
			require.NoError(t, err)
			for _, want := range []string{"PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"} {
				assert.Contains(t, string(info), want)
			}
			outW, err := exec.Command("openssl", "pkcs8", "-in", in, "-passin", "pass:wrong").CombinedOutput()
			assert.Error(t, err, "wrong password accepted: %s", outW)
		})
	}
	_, err = signer.EncryptPKCS8([]byte{1}, "")
	assert.Error(t, err)
}
