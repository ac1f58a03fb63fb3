package signer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testKeyPEM(t testing.TB) (string, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), der
}

// The forms clients send, the public service's own example among them,
// all read as the same key.
func TestReadPEMForms(t *testing.T) {
	text, der := testKeyPEM(t)
	body := strings.TrimSuffix(strings.TrimPrefix(text, "-----BEGIN PRIVATE KEY-----\n"), "-----END PRIVATE KEY-----\n")
	oneLine := "-----BEGIN PRIVATE KEY-----" + strings.ReplaceAll(body, "\n", "") + "-----END PRIVATE KEY-----"
	for name, in := range map[string]string{
		"standard":               text,
		"CRLF":                   strings.ReplaceAll(text, "\n", "\r\n"),
		"seed quoting":           "'" + strings.ReplaceAll(text, "\n", `\n`) + "'",
		"one line":               oneLine,
		"one line, seed quoting": "'" + oneLine + `\n'`,
		"text around":            "Bag Attributes\n    localKeyID: 01\n" + text + "\ntrailer",
	} {
		blocks, err := readPEM([]byte(in))
		require.NoError(t, err, name)
		require.Len(t, blocks, 1, name)
		assert.Equal(t, "PRIVATE KEY", blocks[0].Type, name)
		assert.Equal(t, der, blocks[0].Bytes, name)
		k, err := parsePrivateKey([]byte(in))
		require.NoError(t, err, name)
		assert.IsType(t, &ecdsa.PrivateKey{}, k, name)
	}
}

func TestReadPEMRefusals(t *testing.T) {
	for name, in := range map[string]string{
		"unclosed BEGIN": "-----BEGIN PRIVATE KEY",
		"no END":         "-----BEGIN PRIVATE KEY-----\nAAAA\n",
		"not base64":     "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
	} {
		_, err := readPEM([]byte(in))
		assert.Error(t, err, name)
	}
	blocks, err := readPEM([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	require.NoError(t, err)
	require.Len(t, blocks, 1)
	assert.True(t, blocks[0].Encrypted)
	_, err = parsePrivateKey([]byte("-----BEGIN RSA PRIVATE KEY-----Proc-Type: 4,ENCRYPTED DEK-Info: AES-256-CBC,00 AAAA-----END RSA PRIVATE KEY-----"))
	assert.Equal(t, APIGCodeEncryptedKey, AsError(err).Code)
}

// parsePrivateKey and parseCertificates take untrusted text: no input
// makes them panic, and every refusal carries an APIG code.
func FuzzAPIGParsers(f *testing.F) {
	text, _ := testKeyPEM(f)
	f.Add(text)
	f.Add("'" + strings.ReplaceAll(text, "\n", `\n`) + "'")
	f.Add("'-----BEGIN PRIVATE KEY-----THIS IS YOUR PRIVATE KEY-----END PRIVATE KEY-----\\n'")
	f.Add("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	f.Add("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n-----END EC PRIVATE KEY-----")
	f.Add("-----BEGIN -----\n-----END -----")
	f.Fuzz(func(t *testing.T, in string) {
		if k, err := parsePrivateKey([]byte(in)); err != nil {
			assert.NotEmpty(t, AsError(err).Code)
		} else {
			wipeKey(k)
		}
		if _, err := parseCertificates("cert_content", in); err != nil {
			assert.NotEmpty(t, AsError(err).Code)
		}
	})
}
