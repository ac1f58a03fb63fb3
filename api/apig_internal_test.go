package api

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer"
	apigsvc "github.com/hsmca/hsmca/signer/apig"
)

// unquoteJSONBytes must read a JSON string exactly as encoding/json does.
func FuzzUnquoteJSONBytes(f *testing.F) {
	for _, s := range []string{`""`, `"abc"`, `"-----BEGIN PRIVATE KEY-----\nMIIB\/+==\n-----END PRIVATE KEY-----\n"`,
		`"\u00e9\ud83d\ude00\"\\\b\f\r\t"`, `"\ud800x"`, `"\ud800\u0041"`, `null`, `"'quoted\\n'"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) || !utf8.Valid(raw) || len(raw) == 0 || (raw[0] != '"' && !bytes.Equal(raw, []byte("null"))) {
			return
		}
		var want *string
		require.NoError(t, json.Unmarshal(raw, &want))
		got, err := unquoteJSONBytes(raw)
		require.NoError(t, err)
		if want == nil {
			assert.Nil(t, got)
			return
		}
		assert.Equal(t, *want, string(got))
	})
}

func TestUnquoteJSONBytesRefusesNonStrings(t *testing.T) {
	for _, raw := range []string{`12`, `{}`, `[]`, `true`, `"a`} {
		_, err := unquoteJSONBytes([]byte(raw))
		assert.Error(t, err, raw)
	}
}

// Every refusal of the APIG family answers the status and code API.md
// gives it; the kinds without a reason keep theirs.
func TestAPIGAnswers(t *testing.T) {
	for _, tc := range []struct {
		kind   signer.Kind
		reason signer.Reason
		status int
		code   string
	}{
		{signer.KindInvalid, apigsvc.ReasonMissing, 400, "APIG.2001"},
		{signer.KindInvalid, apigsvc.ReasonBadValue, 400, "APIG.2012"},
		{signer.KindInvalid, apigsvc.ReasonKeyMismatch, 400, "APIG.2101"},
		{signer.KindInvalid, apigsvc.ReasonExpired, 400, "APIG.2102"},
		{signer.KindInvalid, apigsvc.ReasonChain, 400, "APIG.2104"},
		{signer.KindInvalid, apigsvc.ReasonEncryptedKey, 400, "APIG.2105"},
		{signer.KindInvalid, apigsvc.ReasonUnparseable, 400, "APIG.2106"},
		{signer.KindInvalid, apigsvc.ReasonNoSAN, 400, "APIG.2109"},
		{signer.KindNotFound, apigsvc.ReasonNotFound, 404, "APIG.3021"},
		{signer.KindConflict, apigsvc.ReasonNameTaken, 400, "APIG.3325"},
		{signer.KindConflict, apigsvc.ReasonConcurrent, 400, "APIG.3000"},
		{signer.KindInvalid, "", 400, "APIG.2012"},
		{signer.KindNotFound, "", 404, "APIG.3021"},
		{signer.KindConflict, "", 400, "APIG.3325"},
		{signer.KindWrongState, "", 400, "APIG.3000"},
		{signer.KindQuotaExceeded, "", 400, "APIG.3000"},
		{signer.KindQuotaExceeded, signer.ReasonQuota, 400, "APIG.3000"},
		{signer.KindUnavailable, "", 503, "APIG.9000"},
		{signer.KindUnauthenticated, "", 401, "APIG.1002"},
		{signer.KindForbidden, "", 403, "APIG.1005"},
		{signer.KindInternal, "", 500, "APIG.9999"},
		{signer.KindInternal, apigsvc.ReasonBadValue, 500, "APIG.9999"},
	} {
		status, code := apigAnswerOf(&signer.Error{Kind: tc.kind, Reason: tc.reason})
		assert.Equal(t, tc.status, status, "%v %q", tc.kind, tc.reason)
		assert.Equal(t, tc.code, code, "%v %q", tc.kind, tc.reason)
	}
}
