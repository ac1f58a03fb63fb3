package signer_test

import (
	"path/filepath"
	"testing"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

// lookupOnly is a store without its guard checks: a token's every check
// is its lookup.
type lookupOnly struct{ store.Store }

// BenchmarkTokenCheck: the engine's check of an API token (rate-limited)
// that it checked in full lately, by its lookup (a store without guard
// checks) and by its guard alone, on bolt and on Redis.
func BenchmarkTokenCheck(b *testing.B) {
	for _, backend := range []string{"bolt", "redis"} {
		for _, guard := range []bool{false, true} {
			name := backend + "/lookup"
			if guard {
				name = backend + "/guard"
			}
			b.Run(name, func(b *testing.B) {
				var st store.Store
				if backend == "bolt" {
					s, err := boltstore.Open(filepath.Join(b.TempDir(), "s.db"), boltstore.Options{Indexes: signer.StoreIndexes()})
					if err != nil {
						b.Fatal(err)
					}
					st = s
				} else {
					s, err := redisstore.Open(b.Context(), testenv.StartRedis(b).URL(), redisstore.Options{Indexes: signer.StoreIndexes()})
					if err != nil {
						b.Fatal(err)
					}
					st = s
				}
				under := st
				if !guard {
					st = lookupOnly{st}
				}
				c := signer.New(signer.Options{Store: st})
				b.Cleanup(func() { c.Close(); under.Close() })
				secret, _, err := c.CreateToken(opsCtx, "acme", []string{signer.RoleSigner}, nil)
				if err != nil {
					b.Fatal(err)
				}
				for range 2 { // the first use recorded: a record that stays
					if _, _, err := c.AuthenticateTokenThrottled(b.Context(), secret, 1e6, 1e6); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, _, err := c.AuthenticateTokenThrottled(b.Context(), secret, 1e6, 1e6); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
