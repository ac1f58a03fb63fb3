package storekit

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// MarshalEvent writes what json.Marshal writes, for events as the stores
// make them and for ones they never make.
func TestMarshalEventIsJSONMarshal(t *testing.T) {
	at := time.Date(2026, 12, 4, 7, 1, 2, 30405, time.UTC)
	for _, ev := range []store.Event{
		{Tenant: "t1", Seq: 1, Time: at, PrevHash: "", Hash: "ab12", Data: json.RawMessage(`{"n":"a"}`)},
		{Tenant: "_platform", Seq: 1 << 60, Time: at.Truncate(time.Second), PrevHash: "00ff", Hash: "ff00", Data: json.RawMessage(`[1,2.5,"\u003c"]`)},
		{Tenant: "t<&>\"\\\u2028é\x01\xff", Time: at.In(time.FixedZone("x", 3600)), Data: json.RawMessage(`{ "spaced" : true }`)},
		{Tenant: "t", Time: at, Data: json.RawMessage(`"<b>&amp;"`)},
		{Tenant: "t", Time: at, Data: nil},
		{Tenant: "t", Time: time.Time{}, Data: json.RawMessage(`null`)},
	} {
		want, werr := json.Marshal(&ev)
		got, err := MarshalEvent(&ev)
		if werr != nil {
			assert.Error(t, err, "%+v", ev)
			continue
		}
		require.NoError(t, err, "%+v", ev)
		assert.Equal(t, string(want), string(got))
	}
	_, err := MarshalEvent(&store.Event{Tenant: "t", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Data: json.RawMessage(`1`)})
	assert.Error(t, err, "a year json.Marshal refuses")
}

func BenchmarkMarshalEvent(b *testing.B) {
	ev := store.Event{Tenant: "t1", Seq: 123456, Time: time.Now().UTC(), PrevHash: "9f2c", Hash: "c0ffee",
		Data: json.RawMessage(`{"id":"0b9e3f0a-2d7c-4e55-9a57-3f1f6f1b2c3d","time":"2026-12-04T07:01:02.000030405Z","tenant":"t1","principal":"token:abc","operation":"KEY_SIGN","outcome":"SUCCESS","resource":"k1"}`)}
	b.Run("json.Marshal", func(b *testing.B) {
		for range b.N {
			_, _ = json.Marshal(&ev)
		}
	})
	b.Run("MarshalEvent", func(b *testing.B) {
		for range b.N {
			_, _ = MarshalEvent(&ev)
		}
	})
}
