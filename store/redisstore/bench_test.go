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
// the time per create the server's own time per create (server-µs/op,
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
	admin := adminClient(b, r.URL())
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
			reportServerTime(b, admin, b.N)
		})
	}
}

// BenchmarkCredentialCheck looks up a token by its unique key and counts
// it against its rate limit (GetByUniqueThrottled), as a token's full
// check does, or checks a guard on its record at a version with the same
// count (CheckGuard), as the check of a token known lately does; it
// reports the server's time per call beside each.
func BenchmarkCredentialCheck(b *testing.B) {
	r := testenv.StartRedis(b)
	s, err := redisstore.Open(context.Background(), r.URL(), redisstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	admin := adminClient(b, r.URL())
	ctx := context.Background()
	doc := `{"id":"t1","tenant":"acme","roles":["signer"],"hash":"` + strings.Repeat("a", 64) + `"}`
	if err := s.Create(ctx, &store.Record{Kind: "apitoken", Tenant: store.PlatformTenant, ID: "t1",
		Unique: []string{"hash:aa"}, Data: []byte(doc)}, store.WriteOpts{}); err != nil {
		b.Fatal(err)
	}
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	lim := store.ThrottleRequest{Key: "credential:aa", Rate: 1e6, Burst: 1e6}
	b.Run("lookup", func(b *testing.B) {
		if err := admin.ConfigResetStat(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, _, err := s.GetByUniqueThrottled(ctx, "apitoken", store.PlatformTenant, "hash:aa", lim); err != nil {
				b.Fatal(err)
			}
		}
		reportServerTime(b, admin, b.N)
	})
	// The check of a token known at a version: a guard alone.
	g := &store.Guard{Tenant: store.PlatformTenant, Kind: "apitoken", ID: "t1", Version: 1, Throttle: &lim}
	b.Run("guard", func(b *testing.B) {
		if err := admin.ConfigResetStat(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if held, err := s.CheckGuard(ctx, store.PlatformTenant, g); err != nil || !held {
				b.Fatal(held, err)
			}
		}
		reportServerTime(b, admin, b.N)
	})
}

func adminClient(b *testing.B, url string) *redis.Client {
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(opt)
	b.Cleanup(func() { c.Close() })
	return c
}

// reportServerTime reports the server's time spent in scripts since its
// statistics were reset, per operation of the benchmark (server-µs/op).
func reportServerTime(b *testing.B, admin *redis.Client, ops int) {
	info, err := admin.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var usec float64
	for _, l := range strings.Split(info, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "cmdstat_evalsha:") && !strings.HasPrefix(l, "cmdstat_eval:") {
			continue
		}
		for _, kv := range strings.Split(l[strings.Index(l, ":")+1:], ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				f, _ := strconv.ParseFloat(v, 64)
				usec += f
			}
		}
	}
	b.ReportMetric(usec/float64(ops), "server-µs/op")
}
