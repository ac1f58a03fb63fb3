//go:build linux

package hsm

import (
	"context"
	"crypto"
	"crypto/sha256"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// BenchmarkSignHandOff prices the goroutine each PKCS#11 call runs on (so
// that a caller can give up on a stalled token at its deadline, see
// backend.run) against the same C_SignInit + C_Sign made on the caller's
// own goroutine, which could not give up. Each runs back to back and after
// a 300 µs pause (nanosleep: a Go timer under a millisecond sleeps about a
// millisecond here), the gap a one-connection request leaves between its
// HSM calls; only the call itself is timed. Side by side in one process:
// `go test -run '^$' -bench SignHandOff -cpu 1,2 ./hsm/`.
func BenchmarkSignHandOff(b *testing.B) {
	tok := testenv.NewToken(b)
	h, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(b, err)
	b.Cleanup(func() { _ = h.Close() })
	ctx := context.Background()
	s, err := h.Generate(ctx, "bench", LabelPrefix+"test/bench", EC256)
	require.NoError(b, err)
	k := s.(*keySigner)
	be, err := h.acquire(ctx)
	require.NoError(b, err)
	r := k.res.Load()
	d := sha256.Sum256([]byte("bench"))
	mech, input, err := signMechanism(k.pub, d[:], crypto.SHA256)
	require.NoError(b, err)
	call := func(p *pkcs11.Ctx, ss pkcs11.SessionHandle) error {
		if err := p.SignInit(ss, []*pkcs11.Mechanism{mech}, r.priv); err != nil {
			return err
		}
		_, err := p.Sign(ss, input)
		return err
	}
	ways := []struct {
		name string
		sign func() error
	}{
		{"own-goroutine", func() error { return be.run(ctx, h.cfg.CallTimeout, "", call) }},
		{"inline", func() error {
			ss, err := be.pool.take()
			if err != nil {
				return err
			}
			err = call(be.p, ss)
			be.pool.put(ss, err, false)
			return err
		}},
	}
	for _, idle := range []time.Duration{0, 300 * time.Microsecond} {
		for _, w := range ways {
			name := w.name + "/back-to-back"
			if idle > 0 {
				name = w.name + "/after-idle"
			}
			b.Run(name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if idle > 0 {
						b.StopTimer()
						ts := syscall.NsecToTimespec(int64(idle))
						_ = syscall.Nanosleep(&ts, nil)
						b.StartTimer()
					}
					if err := w.sign(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
