package boltstore_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// BenchmarkCreateByIDOrder creates certificate-like records (2 KB of
// data, a serial as unique key, six field indexes, an event each) from 64
// goroutines, with random IDs (UUID v4), with time-ordered ones (UUID v7),
// and with time-ordered IDs and serials that start with the time (as
// issuance.NewSerial makes them), side by side:
// `go test -run '^$' -bench CreateByIDOrder ./store/boltstore/`.
func BenchmarkCreateByIDOrder(b *testing.B) {
	fields := []string{"status", "issuer_id", "common_name", "create_time", "not_after", "expiry"}
	var ix []store.Index
	for _, f := range fields {
		ix = append(ix, store.Index{Kind: "cert", Field: f})
	}
	data, _ := json.Marshal(map[string]string{"certificate": strings.Repeat("MIIC", 500)})
	v7 := func() string { return uuid.Must(uuid.NewV7()).String() }
	for _, order := range []struct {
		name         string
		id           func() string
		serialByTime bool
	}{{"random-v4", uuid.NewString, false}, {"time-ordered-v7", v7, false}, {"time-ordered-v7-serials", v7, true}} {
		b.Run(order.name, func(b *testing.B) {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "hsmca.db"), boltstore.Options{Indexes: ix})
			require.NoError(b, err)
			defer s.Close()
			ctx := context.Background()
			var n atomic.Int64
			b.SetParallelism(32)
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				serial := make([]byte, 16)
				for pb.Next() {
					i := n.Add(1)
					_, _ = rand.Read(serial)
					if order.serialByTime {
						binary.BigEndian.PutUint64(serial, uint64(time.Now().UnixMilli())<<16)
					}
					ms := fmt.Sprint(time.Now().UnixMilli())
					rec := &store.Record{Kind: "cert", Tenant: "t", ID: order.id(), Unique: []string{"serial/" + hex.EncodeToString(serial)},
						Fields: map[string]string{"status": "ISSUED", "issuer_id": "ca", "common_name": fmt.Sprint("cn", i%7),
							"create_time": ms, "not_after": ms, "expiry": "ISSUED/" + ms}, Data: data}
					if err := s.Create(ctx, rec, store.WriteOpts{Event: json.RawMessage(`{"op":"issue","id":"` + rec.ID + `"}`)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
