package boltstore

import (
	"encoding/json"
	"testing"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// BenchmarkRecordVersion: a CA-sized record's version, decoded through
// the decode cache as before (decode) and read alone (version).
func BenchmarkRecordVersion(b *testing.B) {
	data := make([]byte, 2000)
	for i := range data {
		data[i] = 'a'
	}
	raw, _ := encodeRecord(&store.Record{Kind: "pca_ca", Tenant: "t1", ID: "01J9ZK3W8Q5V7XG2M4N6P8R0TA", Version: 7,
		Unique: []string{"name:root"}, Fields: map[string]string{"status": "ACTIVE", "type": "ROOT"},
		Data: json.RawMessage(`"` + string(data) + `"`)})
	dec := storekit.NewDecodeCache()
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := dec.Decode("pca_ca\x00t1\x0001J9ZK3W8Q5V7XG2M4N6P8R0TA", raw, decodeRecord)
			if err != nil || r.Version != 7 {
				b.Fatal(err)
			}
		}
	})
	b.Run("version", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if v, err := recordVersion(raw); err != nil || v != 7 {
				b.Fatal(err)
			}
		}
	})
}
