package signer

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The parsers of untrusted bytes must never panic, must refuse with an
// invalid-kind error that carries no line breaks of the input, and what
// they accept must be what the engine relies on. `make fuzz` runs each
// target; the seeds below run with every `go test`. Here: the event
// cursor. The CSR and certificate-bundle readers of the PCA family have
// theirs in pca_fuzz_test.go, the APIG fields in signer/apig, the PEM and
// private-key readers in signer/encoding, the signing input in
// signer/keys.

// checkRefusal: a refusal is a typed invalid-input error on one line.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	e := AsError(err)
	assert.Equal(t, KindInvalid, e.Kind, "refusal kind: %v", err)
	assert.NotContains(t, e.Msg, "\n")
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
