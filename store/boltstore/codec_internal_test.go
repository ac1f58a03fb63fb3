package boltstore

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hsmca/hsmca/store"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func enc(r *store.Record) []byte {
	b, _ := encodeRecord(r)
	return b
}

// jsonRoundTrip is what the store answered when records were JSON.
func jsonRoundTrip(t *testing.T, r *store.Record) *store.Record {
	t.Helper()
	b, err := json.Marshal(r)
	require.NoError(t, err)
	out, err := decodeRecord(b)
	require.NoError(t, err)
	return out
}

func randomRecord(rng *rand.Rand) *store.Record {
	str := func(n int) string {
		alphabet := []rune("abcXYZ019 :_-/.\"\\é€😀\t")
		b := make([]rune, rng.IntN(n+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	r := &store.Record{Kind: "k" + str(4), Tenant: "t" + str(4), ID: "i" + str(40),
		Seq: rng.Uint64N(1 << 40), Version: rng.Uint64N(100) + 1,
		Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"s":"%x"}`, rng.IntN(1000), str(30)))}
	for range rng.IntN(4) {
		r.Unique = append(r.Unique, "u:"+str(10))
	}
	if n := rng.IntN(5); n > 0 {
		r.Fields = map[string]string{}
		for range n {
			r.Fields[str(8)] = str(20)
		}
	}
	if rng.IntN(4) > 0 {
		r.Created = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC()
		r.Updated = r.Created.Add(time.Duration(rng.Int64N(1e12)))
	}
	return r
}

// The binary form answers exactly what the JSON form answered, and JSON
// records written before it are still read.
func TestRecordCodecMatchesTheJSONForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 2000 {
		r := randomRecord(rng)
		require.True(t, utf8Valid(r))
		got, err := decodeRecord(enc(r))
		require.NoError(t, err, "record %d", i)
		assert.Equal(t, jsonRoundTrip(t, r), got, "record %d", i)
	}
	// Arbitrary bytes survive the binary form.
	r := &store.Record{Kind: "k", Tenant: "t", ID: "\xff\x00id", Unique: []string{"\xfe"},
		Fields: map[string]string{"f": "\x00\xff"}, Data: json.RawMessage(`{}`)}
	got, err := decodeRecord(enc(r))
	require.NoError(t, err)
	assert.Equal(t, r, got)
}

// utf8Valid reports whether JSON carries r's strings unchanged.
func utf8Valid(r *store.Record) bool {
	b, _ := json.Marshal(r)
	var back store.Record
	if json.Unmarshal(b, &back) != nil {
		return false
	}
	if back.ID != r.ID || back.Kind != r.Kind || back.Tenant != r.Tenant {
		return false
	}
	for i := range r.Unique {
		if back.Unique[i] != r.Unique[i] {
			return false
		}
	}
	for k, v := range r.Fields {
		if back.Fields[k] != v {
			return false
		}
	}
	return true
}

// Damaged bytes give an error, never a panic or a half-read record.
func TestRecordCodecRefusesDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for range 300 {
		b := enc(randomRecord(rng))
		for _, cut := range []int{1, len(b) / 3, len(b) / 2, len(b) - 1} {
			_, err := decodeRecord(b[:cut])
			require.ErrorIs(t, err, errCorrupt)
		}
		_, err := decodeRecord(append(b, 0))
		require.ErrorIs(t, err, errCorrupt, "trailing bytes")
	}
	for _, b := range [][]byte{nil, {}, {0x02}, []byte(`{"kind":`), {0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		_, err := decodeRecord(b)
		require.ErrorIs(t, err, errCorrupt, "%q", b)
	}
}

// A record's version read alone is the decoded record's, and damage is
// an error exactly when decoding the record gives one.
func TestRecordVersionIsTheDecodedRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 300 {
		r := randomRecord(rng)
		r.Version = rng.Uint64()
		b := enc(r)
		v, err := recordVersion(b)
		require.NoError(t, err)
		require.Equal(t, r.Version, v)
		for _, c := range [][]byte{b[:1], b[:len(b)/3], b[:len(b)/2], b[:len(b)-1], append(b, 0)} {
			_, err := recordVersion(c)
			require.ErrorIs(t, err, errCorrupt)
		}
		j, err := json.Marshal(r)
		require.NoError(t, err)
		v, err = recordVersion(j)
		require.NoError(t, err, "the JSON form of earlier versions")
		require.Equal(t, r.Version, v)
	}
}

func FuzzRecordVersion(f *testing.F) {
	f.Add(enc(&store.Record{Kind: "k", Tenant: "t", ID: "i", Version: 3, Unique: []string{"u"},
		Fields: map[string]string{"f": "v"}, Data: json.RawMessage(`{}`)}))
	f.Add([]byte(`{"kind":"k","tenant":"t","id":"i","version":2,"data":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := recordVersion(b)
		r, rerr := decodeRecord(b)
		if rerr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, r.Version, v)
	})
}

func FuzzRecordCodec(f *testing.F) {
	f.Add(enc(&store.Record{Kind: "k", Tenant: "t", ID: "i", Data: json.RawMessage(`{}`)}))
	f.Add([]byte(`{"kind":"k","tenant":"t","id":"i","data":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil || b[0] != recordFormat1 {
			return
		}
		again, err := decodeRecord(enc(r))
		require.NoError(t, err)
		require.Equal(t, r, again)
	})
}
