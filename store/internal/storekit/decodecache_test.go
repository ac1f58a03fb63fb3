package storekit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// A cached record answers only the bytes it was decoded from, and every
// caller gets a copy of its own.
func TestDecodeCacheAnswersOnlyIdenticalBytes(t *testing.T) {
	c := NewDecodeCache()
	decodes := 0
	decode := func(b []byte) (*store.Record, error) {
		decodes++
		var r store.Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		return &r, nil
	}
	v1 := []byte(`{"kind":"k","tenant":"t","id":"a","unique":["u:1"],"fields":{"state":"enabled"},"data":{"x":1},"version":1}`)
	buf := append([]byte(nil), v1...)
	r1, err := c.Decode("k/t/a", buf, decode)
	require.NoError(t, err)
	clear(buf) // the caller's memory goes back to its owner
	r2, err := c.Decode("k/t/a", v1, decode)
	require.NoError(t, err)
	assert.Equal(t, 1, decodes, "identical bytes decode once")
	assert.Equal(t, r1, r2)
	assert.Equal(t, "enabled", r2.Fields["state"])

	r2.Fields["state"] = "disabled"
	r2.Unique[0] = "changed"
	r2.Data[1] = 'y'
	r3, err := c.Decode("k/t/a", v1, decode)
	require.NoError(t, err)
	assert.Equal(t, "enabled", r3.Fields["state"], "a caller's change does not reach the cache")
	assert.Equal(t, []string{"u:1"}, r3.Unique)
	assert.JSONEq(t, `{"x":1}`, string(r3.Data))

	v2 := []byte(`{"kind":"k","tenant":"t","id":"a","fields":{"state":"disabled"},"data":{"x":1},"version":2}`)
	r4, err := c.Decode("k/t/a", v2, decode)
	require.NoError(t, err)
	assert.Equal(t, 2, decodes, "changed bytes decode again")
	assert.Equal(t, "disabled", r4.Fields["state"])
	assert.EqualValues(t, 2, r4.Version)

	_, err = c.Decode("k/t/b", []byte(`{`), decode)
	assert.Error(t, err)
	_, err = c.Decode("k/t/b", []byte(`{`), func([]byte) (*store.Record, error) { return nil, errors.New("corrupt") })
	assert.EqualError(t, err, "corrupt", "a failed decode is not cached")
}

// A large record is decoded every time and never kept.
func TestDecodeCacheKeepsNoLargeRecord(t *testing.T) {
	c := NewDecodeCache()
	decodes := 0
	big := []byte(`{"kind":"k","tenant":"t","id":"c","data":"` + strings.Repeat("A", decodeCacheMaxRecord) + `","version":1}`)
	for range 2 {
		_, err := c.Decode("k/t/c", big, func(b []byte) (*store.Record, error) {
			decodes++
			return &store.Record{ID: "c"}, nil
		})
		require.NoError(t, err)
	}
	assert.Equal(t, 2, decodes)
	assert.Empty(t, c.m)
}
