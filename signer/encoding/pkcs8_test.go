package encoding

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// OpenSSL decrypts what EncryptPKCS8 writes back to the same PKCS#8, for
// EC and RSA keys, and refuses a wrong password.
func TestEncryptPKCS8OpensWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is required for this test: %v", err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for name, key := range map[string]any{"EC": ecKey(t), "RSA": rk} {
		t.Run(name, func(t *testing.T) {
			der, err := x509.MarshalPKCS8PrivateKey(key)
			require.NoError(t, err)
			const pw = "s3cret pass phrase"
			enc, err := EncryptPKCS8(der, pw)
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
	_, err = EncryptPKCS8([]byte{1}, "")
	assert.Error(t, err)
}

// The structure names its parameters so that any reader can open it: this
// test opens it with nothing but what the DER says.
func TestEncryptPKCS8DecryptsFromItsParameters(t *testing.T) {
	der, err := x509.MarshalPKCS8PrivateKey(ecKey(t))
	require.NoError(t, err)
	enc, err := EncryptPKCS8(der, "pw")
	require.NoError(t, err)
	b, _ := pem.Decode(enc)
	require.NotNil(t, b)

	var info encryptedPrivateKeyInfo
	_, err = asn1.Unmarshal(b.Bytes, &info)
	require.NoError(t, err)
	require.True(t, info.Algorithm.Algorithm.Equal(oidPBES2))
	var params pbes2Params
	_, err = asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params)
	require.NoError(t, err)
	var kdf pbkdf2Params
	_, err = asn1.Unmarshal(params.KeyDerivationFunc.Parameters.FullBytes, &kdf)
	require.NoError(t, err)
	var iv []byte
	_, err = asn1.Unmarshal(params.EncryptionScheme.Parameters.FullBytes, &iv)
	require.NoError(t, err)
	assert.Equal(t, pbkdf2Iterations, kdf.IterationCount)
	assert.Len(t, kdf.Salt, 16)

	key, err := pbkdf2.Key(sha256.New, "pw", kdf.Salt, kdf.IterationCount, 32)
	require.NoError(t, err)
	block, err := aes.NewCipher(key)
	require.NoError(t, err)
	pt := make([]byte, len(info.EncryptedData))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, info.EncryptedData)
	n := int(pt[len(pt)-1])
	require.True(t, n >= 1 && n <= aes.BlockSize)
	assert.Equal(t, der, pt[:len(pt)-n])
	k, err := x509.ParsePKCS8PrivateKey(pt[:len(pt)-n])
	require.NoError(t, err)
	assert.IsType(t, &ecdsa.PrivateKey{}, k)
}

func TestPadFillsAWholeBlock(t *testing.T) {
	for n := 0; n <= 2*aes.BlockSize; n++ {
		p := pad(make([]byte, n))
		require.Zero(t, len(p)%aes.BlockSize)
		k := int(p[len(p)-1])
		assert.Equal(t, len(p)-n, k, "length %d", n)
	}
}
