package encoding

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCSRForms(t *testing.T) {
	der := csrDERFor(t, ecKey(t))
	p := EncodePEM("CERTIFICATE REQUEST", der)
	for name, in := range map[string]string{
		"pem":            p,
		"old label":      EncodePEM("NEW CERTIFICATE REQUEST", der),
		"escaped breaks": strings.ReplaceAll(p, "\n", `\n`),
		"base64 DER":     base64.StdEncoding.EncodeToString(der),
		"url base64":     base64.RawURLEncoding.EncodeToString(der),
		"escaped base64": wrapEscaped(base64.StdEncoding.EncodeToString(der)),
	} {
		t.Run(name, func(t *testing.T) {
			csr, err := ParseCSR(in)
			require.NoError(t, err)
			assert.Equal(t, der, csr.Raw)
		})
	}
}

// wrapEscaped folds s every 64 characters with a literal "\n", as a
// base64 value pasted from a JSON string often is.
func wrapEscaped(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + `\n`)
		s = s[64:]
	}
	b.WriteString(s)
	return b.String()
}

func TestParseCSRRefusals(t *testing.T) {
	cert, _ := certPEM(t, "a")
	for name, tc := range map[string]struct {
		in     string
		reason Reason
	}{
		"empty":          {"  ", Malformed},
		"neither":        {"!!!", Malformed},
		"not DER":        {base64.StdEncoding.EncodeToString([]byte("csr")), Malformed},
		"a certificate":  {cert, WrongBlock},
		"broken PEM":     {"-----BEGIN CERTIFICATE REQUEST-----\nAAAA", Malformed},
		"no block found": {"-----BEGINNING", Malformed},
	} {
		t.Run(name, func(t *testing.T) {
			csr, err := ParseCSR(tc.in)
			require.Error(t, err)
			assert.Nil(t, csr)
			assert.Equal(t, tc.reason, ReasonOf(err))
		})
	}
}

// FuzzParseCSR: a CSR reader never panics, and a refusal is one line
// with a reason.
func FuzzParseCSR(f *testing.F) {
	f.Add(EncodePEM("CERTIFICATE REQUEST", csrDERFor(f, ecKey(f))))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	f.Add("MIIB")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		csr, err := ParseCSR(s)
		if err != nil {
			assert.NotZero(t, ReasonOf(err))
			assert.NotContains(t, err.Error(), "\n")
			return
		}
		assert.NotNil(t, csr)
	})
}
