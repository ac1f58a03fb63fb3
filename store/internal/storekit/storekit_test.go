package storekit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, desc := range []bool{false, true} {
		for _, seq := range []uint64{1, 42, 1<<53 + 1, ^uint64(0)} {
			q := store.Query{Kind: "k", Tenant: "t", Desc: desc, Cursor: EncodeCursor(seq, desc)}
			p, err := CheckQuery(q)
			require.NoError(t, err)
			assert.Equal(t, Plan{Mode: CursorMode, Resume: true, Cursor: seq}, p)
		}
	}
}

func TestCheckQueryRejects(t *testing.T) {
	good := EncodeCursor(5, false)
	for name, q := range map[string]store.Query{
		"empty kind":        {Tenant: "t"},
		"tag in tenant":     {Kind: "k", Tenant: "a}b"},
		"negative offset":   {Kind: "k", Tenant: "t", Offset: -1},
		"cursor and sort":   {Kind: "k", Tenant: "t", SortBy: "name", Cursor: good},
		"cursor and offset": {Kind: "k", Tenant: "t", Offset: 3, Cursor: good},
		"other direction":   {Kind: "k", Tenant: "t", Desc: true, Cursor: good},
		"not base64":        {Kind: "k", Tenant: "t", Cursor: "!!"},
		"zero seq":          {Kind: "k", Tenant: "t", Cursor: EncodeCursor(0, false)},
	} {
		_, err := CheckQuery(q)
		assert.ErrorIs(t, err, store.ErrInvalid, name)
	}
}

// Cursors come from API clients: any string either decodes or is refused
// as invalid, and a decoded cursor re-encodes to itself.
func FuzzCursor(f *testing.F) {
	for _, c := range []string{"", EncodeCursor(1, false), EncodeCursor(99, true), "YzFhMQ", "c1a1", "YzF4MQ"} {
		f.Add(c, false)
		f.Add(c, true)
	}
	f.Fuzz(func(t *testing.T, cursor string, desc bool) {
		p, err := CheckQuery(store.Query{Kind: "k", Tenant: "t", Cursor: cursor, Desc: desc})
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("cursor %q: %v does not wrap ErrInvalid", cursor, err)
			}
			return
		}
		if cursor == "" {
			if p.Resume {
				t.Fatal("empty cursor resumes")
			}
			return
		}
		if p.Cursor == 0 {
			t.Fatalf("cursor %q decodes to seq 0", cursor)
		}
		if _, err := CheckQuery(store.Query{Kind: "k", Tenant: "t", Cursor: EncodeCursor(p.Cursor, desc), Desc: desc}); err != nil {
			t.Fatalf("re-encoded cursor refused: %v", err)
		}
	})
}

// Event data is hashed in normalised form; the hash must survive the JSON
// round trips of storage and of the API, so normalising is idempotent and
// equal to what encoding/json makes of the stored event.
func FuzzNormalizeJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, "{ \"a\" : [1, 2 ] }", `"<&>"`, `null`, `{"u":"\u00e9\u2028"}`, `[{"x":{}}]`, `1e400`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := NormalizeJSON(raw)
		if len(raw) > 0 {
			// The one-pass check only ever agrees with encoding/json.
			want, werr := json.Marshal(json.RawMessage(raw))
			if werr != nil {
				require.Error(t, err, "%q is not JSON", raw)
				require.False(t, normalForm(raw))
			} else {
				require.NoError(t, err)
				require.Equal(t, string(want), string(n), "normal form of %q", raw)
				if normalForm(raw) {
					require.Equal(t, string(want), string(raw), "%q taken as normal", raw)
				}
			}
		}
		if err != nil {
			if json.Valid(raw) && len(raw) > 0 {
				t.Fatalf("valid JSON %q refused: %v", raw, err)
			}
			return
		}
		again, err := NormalizeJSON(n)
		require.NoError(t, err)
		require.Equal(t, string(n), string(again), "idempotent")

		now := time.Unix(0, 1700000000123456789).UTC()
		evs := ChainEvents("t", 0, "", []json.RawMessage{n}, now)
		b, err := json.Marshal(evs)
		require.NoError(t, err)
		var back []store.Event
		require.NoError(t, json.Unmarshal(b, &back))
		bad, err := store.VerifyChain(back, "", 0)
		require.NoError(t, err, "chain breaks at %d after a round trip of %q", bad, raw)
	})
}

// What encoding/json emits is recognised as normal without a second
// encoding; what it would change, or refuse, is not.
func TestNormalForm(t *testing.T) {
	type rec struct {
		Name  string            `json:"name"`
		DER   []byte            `json:"der"`
		N     int               `json:"n"`
		F     float64           `json:"f"`
		Tags  map[string]string `json:"tags"`
		List  []any             `json:"list"`
		Empty struct{}          `json:"empty"`
		Esc   string            `json:"esc"`
		On    bool              `json:"on"`
		Nil   *int              `json:"nil"`
	}
	own, err := json.Marshal(rec{Name: "CN=é \"x\"", DER: bytes.Repeat([]byte{0xfe, 1}, 600), N: -12, F: 1.5e-300,
		Tags: map[string]string{"a": "b\n\t"}, List: []any{1, "x", nil, []any{}, map[string]any{}}, Esc: "<a&b>\u2028"})
	require.NoError(t, err)
	for _, s := range []string{string(own), `0`, `-0.5e+10`, `"\u00E9\/"`, `[[[]]]`, `{"a":{"b":[true,false,null]}}`} {
		assert.True(t, normalForm([]byte(s)), "%s", s)
		n, err := NormalizeJSON([]byte(s))
		require.NoError(t, err)
		assert.Equal(t, s, string(n))
	}
	for _, s := range []string{`{ "a":1}`, "[1,\n2]", `"<"`, `"&"`, "\"\u2028\"", "\"\xe2\x80\xa9\"", "\"\t\"", `01`, `1.`, `.5`,
		`1e`, `-`, `tru`, `nul`, `"\x"`, `"\u12"`, `{"a"}`, `{"a":}`, `[1,]`, `{,}`, `"abc`, `1 `, ` 1`, `{}}`, strings.Repeat("[", normalDepth+1) + strings.Repeat("]", normalDepth+1)} {
		assert.False(t, normalForm([]byte(s)), "%q", s)
	}
}

func BenchmarkNormalizeJSON(b *testing.B) {
	doc, _ := json.Marshal(map[string]any{"id": "0123456789abcdef", "certificate": bytes.Repeat([]byte("MIIC"), 400),
		"subject": map[string]string{"common_name": "www.example.com", "organization": "Example"}, "serial": 1234567890})
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := NormalizeJSON(doc); err != nil {
			b.Fatal(err)
		}
	}
}

func TestOffsetPageOrder(t *testing.T) {
	recs := []store.Record{
		{ID: "a", Seq: 1, Fields: map[string]string{"n": "2"}},
		{ID: "b", Seq: 2, Fields: map[string]string{"n": "1"}},
		{ID: "c", Seq: 3, Fields: map[string]string{"n": "2"}},
	}
	p := OffsetPage(recs, store.Query{SortBy: "n"})
	assert.Equal(t, []string{"b", "a", "c"}, []string{p.Records[0].ID, p.Records[1].ID, p.Records[2].ID})
	p = OffsetPage(recs, store.Query{SortBy: "n", Desc: true, Limit: 2})
	assert.Equal(t, []string{"c", "a"}, []string{p.Records[0].ID, p.Records[1].ID})
	assert.Equal(t, 3, p.Total)
	assert.Equal(t, "b", recs[1].ID, "input order untouched")
}
