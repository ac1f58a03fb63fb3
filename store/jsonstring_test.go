package store

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// AppendJSONString writes what json.Marshal writes for any string.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "abc", "a\"b", "<script>", "\u2028\u2029", "\xff\xfe", "é", "\x00\x1f", "a\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(AppendJSONString(nil, s)))
	})
}
