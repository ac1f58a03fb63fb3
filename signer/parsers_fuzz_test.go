package signer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The parsers of untrusted bytes (PEM text, private keys, signing input,
// cursors) must never panic, must refuse with an invalid-
// kind error that carries no line breaks of the input, and what they
// accept must be what the engine relies on. `make fuzz` runs each target;
// the seeds below run with every `go test`. The CSR and certificate-bundle
// readers of the PCA family have theirs in pca_fuzz_test.go, the APIG
// fields in signer/apig, the PEM and private-key readers in
// signer/encoding.

// checkRefusal: a refusal is a typed invalid-input error on one line.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	e := AsError(err)
	assert.Equal(t, KindInvalid, e.Kind, "refusal kind: %v", err)
	assert.NotContains(t, e.Msg, "\n")
}

// FuzzParseSignInput: the body of /v1/keys/{id}/sign and /verify, after
// JSON decoding, and the preparation of what goes to the HSM.
func FuzzParseSignInput(f *testing.F) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(f, err)
	digest := base64.StdEncoding.EncodeToString(make([]byte, 32))
	f.Add(digest, "", "ES256", "", "", true, false)
	f.Add("", "aGVsbG8", "ES256", "raw", "", false, false)
	f.Add("", "aGVsbG8=", "EdDSA", "der", "AAAA", false, true)
	f.Add("%%%", "", "RS256", "pem", "", true, true)
	f.Fuzz(func(t *testing.T, digest, message, algorithm, format, signature string, hasDigest, verify bool) {
		in := SignInput{Algorithm: algorithm, Format: format}
		if hasDigest {
			in.Digest = &digest
		}
		if message != "" {
			in.Message = &message
		}
		if signature != "" {
			in.Signature = &signature
		}
		r, err := parseSignInput(in, verify)
		if err != nil {
			checkRefusal(t, err)
			assert.NotEmpty(t, AsError(err).Fields)
			return
		}
		_, tbs, err := r.prepare(&ec.PublicKey)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		assert.Len(t, tbs, 32, "an ECDSA P-256 signer always gets a 32-byte digest")
	})
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
