package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/redisstore"
)

// BenchmarkCreateCertificateLike creates certificate-like records (a 2 KB
// document, a unique serial, four field indexes and a quota) one at a
// time, with and without the event of their issuance, and reports beside
// the time per create the server's own time per script (server-µs/op,
// from INFO commandstats).
func BenchmarkCreateCertificateLike(b *testing.B) {
	r := testenv.StartRedis(b)
	idx := []store.Index{}
	for _, f := range []string{"common_name", "expiry", "not_after", "status"} {
		idx = append(idx, store.Index{Kind: "cert", Field: f})
	}
	s, err := redisstore.Open(context.Background(), r.URL(), redisstore.Options{Indexes: idx})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	opt, err := redis.ParseURL(r.URL())
	if err != nil {
		b.Fatal(err)
	}
	admin := redis.NewClient(opt)
	b.Cleanup(func() { admin.Close() })
	doc := `{"pem":"` + strings.Repeat("A", 2100) + `"}`
	for _, withEvent := range []bool{false, true} {
		b.Run(fmt.Sprintf("event=%v", withEvent), func(b *testing.B) {
			ctx := context.Background()
			if err := admin.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				id := uuid.Must(uuid.NewV7()).String()
				rec := &store.Record{Kind: "cert", Tenant: "bench", ID: id, Unique: []string{"serial:" + id},
					Fields: map[string]string{"common_name": "bench.example", "expiry": "ISSUED/0001798913610000",
						"not_after": "0001798913610000", "status": "ISSUED"},
					Data: []byte(doc)}
				opts := store.WriteOpts{Quota: &store.Quota{Resource: "certs", Limit: -1}}
				if withEvent {
					opts.Event = []byte(`{"operation":"ISSUE","outcome":"SUCCESS","resource":"` + id + `"}`)
				}
				if err := s.Create(ctx, rec, opts); err != nil {
					b.Fatal(err)
				}
			}
			info, err := admin.Info(ctx, "commandstats").Result()
			if err != nil {
				b.Fatal(err)
			}
			for _, l := range strings.Split(info, "\n") {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "cmdstat_evalsha:"); ok {
					for _, kv := range strings.Split(rest, ",") {
						if v, ok := strings.CutPrefix(kv, "usec_per_call="); ok {
							f, _ := strconv.ParseFloat(v, 64)
							b.ReportMetric(f, "server-µs/op")
						}
					}
				}
			}
		})
	}
}
