package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/hsmca/hsmca/store"
)

// BenchmarkCreateCertificateLike creates certificate-sized records with
// the daemon's four certificate indexes, a unique serial, a quota and an
// event, one at a time, through bbolt alone (journal=off) and through
// the journal (journal=on, checkpoints included), and reports the pages
// bbolt wrote per create and, through the journal, the checkpoints.
func BenchmarkCreateCertificateLike(b *testing.B) {
	var idx []store.Index
	for _, f := range []string{"common_name", "expiry", "not_after", "status"} {
		idx = append(idx, store.Index{Kind: "cert", Field: f})
	}
	doc := `{"pem":"` + strings.Repeat("A", 2100) + `"}`
	for _, journal := range []bool{false, true} {
		b.Run(fmt.Sprintf("journal=%v", map[bool]string{false: "off", true: "on"}[journal]), func(b *testing.B) {
			opts := Options{Indexes: idx, JournalSize: -1}
			if journal {
				opts.JournalSize = 0
			}
			s, err := Open(filepath.Join(b.TempDir(), "hsmca.db"), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			create := func() {
				id := uuid.Must(uuid.NewV7()).String()
				rec := &store.Record{Kind: "cert", Tenant: "bench", ID: id, Unique: []string{"serial:" + id},
					Fields: map[string]string{"common_name": "bench.example", "expiry": "ISSUED/0001798913610000",
						"not_after": "0001798913610000", "status": "ISSUED"},
					Data: []byte(doc)}
				err := s.Create(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: "certs", Limit: -1},
					Event: []byte(`{"operation":"ISSUE","outcome":"SUCCESS","resource":"` + id + `"}`)})
				if err != nil {
					b.Fatal(err)
				}
			}
			for range 2000 {
				create()
			}
			st0 := s.db.Stats()
			_, _, ck0 := s.JournalStats()
			for b.Loop() {
				create()
			}
			st1 := s.db.Stats()
			d := st1.Sub(&st0)
			b.ReportMetric(float64(d.TxStats.GetWrite())/float64(b.N), "pages/op")
			if journal {
				_, _, ck1 := s.JournalStats()
				b.ReportMetric(float64(ck1-ck0)/float64(b.N), "checkpoints/op")
			}
		})
	}
}
