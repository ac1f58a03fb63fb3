package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer"
)

// The signing input is untrusted: parseSignInput and prepare must never
// panic, must refuse with an invalid-kind error that carries no line
// breaks of the input, and what they accept must be what the HSM signer
// relies on. `make fuzz` runs the target; the seeds run with every
// `go test`.

// checkRefusal: a refusal is a typed invalid-input error on one line.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	e := signer.AsError(err)
	assert.Equal(t, signer.KindInvalid, e.Kind, "refusal kind: %v", err)
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
			assert.NotEmpty(t, signer.AsError(err).Fields)
			return
		}
		_, tbs, err := r.prepare(&ec.PublicKey, nil)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		assert.Len(t, tbs, 32, "an ECDSA P-256 signer always gets a 32-byte digest")
	})
}
