package encoding

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The forms clients send, the public services' own examples among them,
// all read as the same block.
func TestReadPEMForms(t *testing.T) {
	text, der := pkcs8PEM(t, ecKey(t))
	body := strings.TrimSuffix(strings.TrimPrefix(text, "-----BEGIN PRIVATE KEY-----\n"), "-----END PRIVATE KEY-----\n")
	oneLine := "-----BEGIN PRIVATE KEY-----" + strings.ReplaceAll(body, "\n", "") + "-----END PRIVATE KEY-----"
	for name, in := range map[string]string{
		"standard":               text,
		"CRLF":                   strings.ReplaceAll(text, "\n", "\r\n"),
		"seed quoting":           "'" + strings.ReplaceAll(text, "\n", `\n`) + "'",
		"one line":               oneLine,
		"one line, seed quoting": "'" + oneLine + `\n'`,
		"folded into spaces":     strings.ReplaceAll(strings.TrimSpace(text), "\n", " "),
		"text around":            "Bag Attributes\n    localKeyID: 01\n" + text + "\ntrailer",
	} {
		t.Run(name, func(t *testing.T) {
			blocks, err := ReadPEM([]byte(in))
			require.NoError(t, err)
			require.Len(t, blocks, 1)
			assert.Equal(t, "PRIVATE KEY", blocks[0].Type)
			assert.Equal(t, der, blocks[0].Bytes)
		})
	}
}

func TestReadPEMRefusals(t *testing.T) {
	for name, in := range map[string]string{
		"unclosed BEGIN": "-----BEGIN PRIVATE KEY",
		"no END":         "-----BEGIN PRIVATE KEY-----\nAAAA\n",
		"not base64":     "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
		"empty label":    "-----BEGIN -----\n-----END -----",
		"long label":     "-----BEGIN " + strings.Repeat("A", 65) + "-----\n-----END " + strings.Repeat("A", 65) + "-----",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ReadPEM([]byte(in))
			require.Error(t, err)
			assert.Equal(t, Malformed, ReasonOf(err))
			assert.True(t, strings.HasPrefix(err.Error(), "is not PEM: "), err.Error())
		})
	}
}

// Legacy encrypted keys carry their state in RFC 1421 headers, on their
// own lines or folded into one.
func TestReadPEMEncryptedHeaders(t *testing.T) {
	for name, in := range map[string]string{
		"lines":     "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
		"one line":  "-----BEGIN RSA PRIVATE KEY-----Proc-Type: 4,ENCRYPTED DEK-Info: AES-256-CBC,00 AAAA-----END RSA PRIVATE KEY-----",
		"DEK alone": "-----BEGIN EC PRIVATE KEY-----\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----",
	} {
		t.Run(name, func(t *testing.T) {
			blocks, err := ReadPEM([]byte(in))
			require.NoError(t, err)
			require.Len(t, blocks, 1)
			assert.True(t, blocks[0].Encrypted)
			assert.Empty(t, blocks[0].Bytes)
		})
	}
	// A header that says nothing of encryption is read past.
	blocks, err := ReadPEM([]byte("-----BEGIN X-----\nProc-Type: 4,MIC-CLEAR\n\nAQID\n-----END X-----"))
	require.NoError(t, err)
	require.Len(t, blocks, 1)
	assert.False(t, blocks[0].Encrypted)
	assert.Equal(t, []byte{1, 2, 3}, blocks[0].Bytes)
}

func TestReadPEMLeavesItsInputAlone(t *testing.T) {
	text, _ := pkcs8PEM(t, ecKey(t))
	in := []byte("'" + strings.ReplaceAll(text, "\n", `\n`) + "'")
	orig := bytes.Clone(in)
	blocks, err := ReadPEM(in)
	require.NoError(t, err)
	assert.Equal(t, orig, in)
	ClearBlocks(blocks)
	assert.Equal(t, make([]byte, len(blocks[0].Bytes)), blocks[0].Bytes, "ClearBlocks zeroes what was decoded")
}

func TestEncodePEMRoundTrip(t *testing.T) {
	blocks, err := ReadPEM([]byte(EncodePEM("CERTIFICATE REQUEST", []byte{1, 2, 3})))
	require.NoError(t, err)
	require.Len(t, blocks, 1)
	assert.Equal(t, "CERTIFICATE REQUEST", blocks[0].Type)
	assert.Equal(t, []byte{1, 2, 3}, blocks[0].Bytes)
}

// FuzzReadPEM: the forgiving splitter every PEM field goes through.
func FuzzReadPEM(f *testing.F) {
	text, _ := pkcs8PEM(f, ecKey(f))
	for _, seed := range []string{text, text + text, "'" + strings.ReplaceAll(text, "\n", `\n`) + "'",
		"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END X-----",
		"-----BEGIN -----", "-----BEGIN A-----AAAA-----END A-----", ""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		in := bytes.Clone(text)
		blocks, err := ReadPEM(text)
		assert.Equal(t, in, text, "ReadPEM must not modify its input")
		for _, b := range blocks {
			assert.NotEmpty(t, b.Type)
			assert.LessOrEqual(t, len(b.Type), maxLabel)
			assert.LessOrEqual(t, len(b.Bytes), len(text))
		}
		if err != nil {
			assert.Equal(t, Malformed, ReasonOf(err))
			assert.NotContains(t, err.Error(), "\n")
		}
	})
}
