package api

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
