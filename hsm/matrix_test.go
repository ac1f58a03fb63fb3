package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(testLog{t}, nil)) }

// specConfig is the HSM configuration of a matrix token.
func specConfig(t *testing.T, tok testenv.TokenSpec) Config {
	cfg := Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Logger: testLogger(t)}
	return cfg
}

// matrixExpect is what each token of the matrix offers: the algorithms
// hsmca can use on it and the blob version its secrets are wrapped in.
var matrixExpect = map[string]struct {
	algorithms []Algorithm
	wrap       byte // 0: secrets cannot be wrapped
	pss        bool
	imports    bool
}{
	// SoftHSM2 in-process: everything.
	testenv.TokenSoftHSM2: {algorithms, wrapVersion, true, true},
	// SoftHSM2 behind p11-kit: the RPC passes no EdDSA and no AES-GCM.
	testenv.TokenP11Kit: {[]Algorithm{EC256, EC384, EC521, RSA2048, RSA3072, RSA4096}, wrapVersionCTR, true, true},
	// opencryptoki's soft token: RSA only, no AES-GCM.
	testenv.TokenOpenCryptoki: {[]Algorithm{RSA2048, RSA3072, RSA4096}, wrapVersionCTR, true, true},
	// tpm2-pkcs11 on swtpm: RSA up to 3072, P-256 and P-384 (its P-521 is
	// broken), no PSS through CKM_RSA_PKCS_PSS, no secret keys, no import.
	testenv.TokenTPM2: {[]Algorithm{EC256, EC384, RSA2048, RSA3072}, 0, false, false},
}

// TestTokenMatrix runs the HSM layer against every token of the matrix:
// each algorithm the token offers is generated, signs (PKCS#1 v1.5, PSS,
// ECDSA, EdDSA) and verifies, is found again by a second handle, imported
// keys sign, secrets wrap and unwrap, and what the token lacks is refused
// with ErrUnsupported naming the mechanism.
func TestTokenMatrix(t *testing.T) {
	testenv.ForEachToken(t, func(t *testing.T, tok testenv.TokenSpec) {
		want := matrixExpect[tok.Name]
		h := openConfig(t, specConfig(t, tok))
		ctx := context.Background()
		caps := h.Capabilities()
		for _, m := range caps.Mechanisms {
			if strings.HasPrefix(m.Name, "CKM_0x") {
				continue
			}
			t.Logf("%-28s %5d-%-5d %s", m.Name, m.MinKeySize, m.MaxKeySize, strings.Join(m.Uses(), ","))
		}
		assert.Equal(t, want.algorithms, caps.Algorithms())
		scheme, err := caps.wrapScheme()
		if want.wrap == 0 {
			require.ErrorIs(t, err, ErrUnsupported)
		} else {
			require.NoError(t, err)
		}
		assert.Equal(t, want.wrap, scheme)
		assert.Equal(t, want.pss, h.SupportsFeature(FeaturePSS) == nil)

		// Object ids unique per run: opencryptoki's token is shared.
		prefix := fmt.Sprintf("mx-%d-", time.Now().UnixNano())
		pubs := map[Algorithm]crypto.PublicKey{}
		for _, alg := range algorithms {
			id := prefix + string(alg)
			s, err := h.Generate(ctx, id, "hsmca/test/"+id, alg)
			if !contains(want.algorithms, alg) {
				require.ErrorIs(t, err, ErrUnsupported, alg)
				assert.Contains(t, err.Error(), "does not support "+string(alg))
				continue
			}
			require.NoError(t, err, alg)
			wantAlgorithm(t, alg, s.Public())
			signAndVerify(t, s)
			// SoftHSM2, directly or behind p11-kit's remote protocol,
			// signs through session copies (copies.go); the others not.
			softHSM := tok.Name == testenv.TokenSoftHSM2 || tok.Name == testenv.TokenP11Kit
			assert.Equal(t, softHSM, copyOf(t, h, s.(*keySigner)) != 0, "%s: session copy", alg)
			pubs[alg] = s.Public()
		}

		// Imports: an EC key where the token has EC, an RSA key everywhere
		// it imports at all.
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		imported, err := h.Import(ctx, prefix+"imp-rsa", "hsmca/test/imp-rsa", rk)
		if want.imports {
			require.NoError(t, err)
			signAndVerify(t, imported)
			ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			impEC, err := h.Import(ctx, prefix+"imp-ec", "hsmca/test/imp-ec", ek)
			if contains(want.algorithms, EC256) {
				require.NoError(t, err)
				signAndVerify(t, impEC)
			} else {
				require.ErrorIs(t, err, ErrUnsupported)
			}
		} else {
			require.ErrorIs(t, err, ErrUnsupported)
			assert.Contains(t, err.Error(), "key import")
		}

		// Secrets.
		err = h.EnsureWrappingKey(ctx, prefix+"wrap", "hsmca/test/wrap")
		if want.wrap != 0 {
			require.NoError(t, err)
			blob, err := h.Wrap(ctx, prefix+"wrap", []byte("leaf key"), []byte("aad"))
			require.NoError(t, err)
			assert.Equal(t, want.wrap, blob[0])
			pt, err := h.Unwrap(ctx, prefix+"wrap", blob, []byte("aad"))
			require.NoError(t, err)
			assert.Equal(t, "leaf key", string(pt))
			_, err = h.Unwrap(ctx, prefix+"wrap", blob, []byte("other"))
			assert.Error(t, err)
			require.NoError(t, h.Delete(ctx, prefix+"wrap"))
		} else {
			require.ErrorIs(t, err, ErrUnsupported)
		}

		// A second handle finds every key by CKA_ID and signs with it.
		h2 := openConfig(t, specConfig(t, tok))
		for alg, pub := range pubs {
			s, err := h2.Signer(ctx, prefix+string(alg))
			require.NoError(t, err, alg)
			assert.True(t, s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub), alg)
			signAndVerify(t, s)
		}
		for alg := range pubs {
			require.NoError(t, h.Delete(ctx, prefix+string(alg)))
		}
		if want.imports {
			require.NoError(t, h.Delete(ctx, prefix+"imp-rsa"))
		}
		require.NoError(t, h.Health(ctx))
	})
}

func contains(list []Algorithm, a Algorithm) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// p11kitHSM opens a token behind a fresh p11-kit server with short
// deadlines.
func p11kitHSM(t *testing.T, pool int) (*testenv.P11KitServer, *HSM) {
	tok := testenv.NewTokenSpec(t, testenv.TokenP11Kit)
	tok.Setenv(t)
	cfg := specConfig(t, tok)
	cfg.PoolSize = pool
	cfg.CallTimeout = 500 * time.Millisecond
	cfg.PoolWaitTimeout = 500 * time.Millisecond
	return tok.P11Kit, openConfig(t, cfg)
}

// TestP11KitStalledServer stops the p11-kit server (SIGSTOP) under load:
// every call returns past its deadline with ErrUnavailable instead of
// hanging, the circuit opens so that later calls fail at once, Health
// says why, and after SIGCONT the same signers work again with no
// goroutine or session left behind.
func TestP11KitStalledServer(t *testing.T) {
	srv, h := p11kitHSM(t, 4)
	ctx := context.Background()
	s, err := h.Generate(ctx, "stall", "hsmca/test/stall", EC256)
	require.NoError(t, err)
	require.NoError(t, trySign(s))
	goroutines := runtime.NumGoroutine()

	srv.Pause()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		kinds   = map[string]int{}
		slowest time.Duration
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				start := time.Now()
				err := trySign(s)
				d := time.Since(start)
				assert.ErrorIs(t, err, ErrUnavailable)
				mu.Lock()
				slowest = max(slowest, d)
				switch {
				case err == nil:
					kinds["ok"]++
				case strings.Contains(err.Error(), "circuit open"):
					kinds["circuit open"]++
				case strings.Contains(err.Error(), "within"):
					kinds["deadline"]++
				default:
					kinds[err.Error()]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("answers while the server was stopped: %v; slowest %s", kinds, slowest)
	assert.Positive(t, kinds["deadline"], "calls past their deadline")
	assert.Positive(t, kinds["circuit open"], "calls refused at once once the circuit opened")
	assert.Equal(t, 64, kinds["deadline"]+kinds["circuit open"])
	assert.True(t, h.BreakerOpen())
	herr := h.Health(ctx)
	require.ErrorIs(t, herr, ErrUnavailable)
	assert.Contains(t, herr.Error(), "circuit open")
	assert.Equal(t, "unavailable", ErrorCode(herr))

	srv.Resume()
	require.Eventually(t, func() bool { return h.Health(ctx) == nil }, 20*time.Second, 50*time.Millisecond)
	assert.False(t, h.BreakerOpen())
	for range 8 {
		require.NoError(t, trySign(s))
	}
	require.Eventually(t, func() bool {
		_, inUse := h.Sessions()
		return inUse == 0 && runtime.NumGoroutine() <= goroutines+2
	}, 10*time.Second, 50*time.Millisecond, "goroutines or sessions left behind: %d goroutines (was %d)", runtime.NumGoroutine(), goroutines)
	ti, err := h.TokenInfo(ctx)
	require.NoError(t, err)
	if ti.Sessions >= 0 {
		assert.LessOrEqual(t, ti.Sessions, 4+1, "the pool and the login session, no more")
	}
}

// TestP11KitServerDrops kills the p11-kit server (and every connection
// it forked) under load and starts it again: calls fail with
// ErrUnavailable meanwhile, and the same signers work again without a new
// handle, after one new login.
func TestP11KitServerDrops(t *testing.T) {
	srv, h := p11kitHSM(t, 4)
	var c calls
	h.cfg.Observer = c.observe
	ctx := context.Background()
	s, err := h.Generate(ctx, "drop", "hsmca/test/drop", EC384)
	require.NoError(t, err)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	r, err := h.Import(ctx, "drop-rsa", "hsmca/test/drop-rsa", rk)
	require.NoError(t, err)
	require.NoError(t, h.EnsureWrappingKey(ctx, "drop-wrap", "hsmca/test/drop-wrap"))
	blob, err := h.Wrap(ctx, "drop-wrap", []byte("kept"), nil)
	require.NoError(t, err)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed, succeeded sync.Map
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				err := trySign(s)
				if err != nil {
					assert.ErrorIs(t, err, ErrUnavailable)
					failed.Store(fmt.Sprint(i, n), true)
					time.Sleep(10 * time.Millisecond)
				} else {
					succeeded.Store(fmt.Sprint(i, n), true)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	srv.Kill()
	require.Eventually(t, func() bool { return h.Health(ctx) != nil }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(time.Second)
	srv.Start()
	require.Eventually(t, func() bool { return h.Health(ctx) == nil }, 20*time.Second, 50*time.Millisecond)
	close(stop)
	wg.Wait()
	n := 0
	failed.Range(func(any, any) bool { n++; return true })
	assert.Positive(t, n, "no call met the dropped server")

	require.NoError(t, trySign(s))
	signAndVerify(t, r)
	got, err := h.Unwrap(ctx, "drop-wrap", blob, nil)
	require.NoError(t, err)
	assert.Equal(t, "kept", string(got))
	again, err := h.Signer(ctx, "drop")
	require.NoError(t, err)
	assert.Same(t, s, again)
	assert.Equal(t, 1, c.count("C_Login"), "one new login after the drop (the first was before the observer)")
}

// TestCloseDoesNotHangOnAStalledToken closes the handle while a call is
// stuck on a stopped p11-kit server: Close returns after drainWait,
// leaving that call's session and the module alone, and the call ends
// when the server continues.
func TestCloseDoesNotHangOnAStalledToken(t *testing.T) {
	srv, h := p11kitHSM(t, 2)
	s, err := h.Generate(context.Background(), "close", "hsmca/test/close", EC256)
	require.NoError(t, err)
	old := drainWait
	drainWait = 200 * time.Millisecond
	t.Cleanup(func() { drainWait = old })

	srv.Pause()
	t.Cleanup(srv.Resume)
	require.ErrorIs(t, trySign(s), ErrUnavailable)
	closed := make(chan error, 1)
	go func() { closed <- h.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Close waits for a call the stopped token never answers")
	}
	assert.ErrorIs(t, trySign(s), ErrUnavailable, "a closed handle refuses work")
}

// BenchmarkP11KitSignOverlap signs with a P-256 key behind a p11-kit
// server from 4 goroutines, with calls into p11-kit's client one at a time
// (what the daemon does, see oneCallAtATime) and overlapping, side by
// side on one server: `go test -run '^$' -bench P11KitSignOverlap ./hsm/`.
func BenchmarkP11KitSignOverlap(b *testing.B) {
	tok := testenv.NewTokenSpec(b, testenv.TokenP11Kit)
	tok.Setenv(b)
	h, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, PoolSize: 4})
	require.NoError(b, err)
	b.Cleanup(func() { _ = h.Close() })
	s, err := h.Generate(context.Background(), "bench", "hsmca/test/bench", EC256)
	require.NoError(b, err)
	d := sha256.Sum256([]byte("bench"))
	h.mu.Lock()
	m := h.b.m
	h.mu.Unlock()
	require.True(b, m.serial, "calls into p11-kit's client go one at a time")
	for _, serial := range []bool{true, false} {
		name := "one-at-a-time"
		if !serial {
			name = "overlapping"
		}
		b.Run(name, func(b *testing.B) {
			m.serial = serial   // no call runs between the sub-benchmarks
			b.SetParallelism(2) // 4 goroutines on 2 cores, as many as sessions
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	m.serial = true
}

// TestOneCallAtATime: p11-kit's client module, under its own name or a
// link to it, takes calls one at a time; other modules do not.
func TestOneCallAtATime(t *testing.T) {
	tok := testenv.NewTokenSpec(t, testenv.TokenP11Kit)
	assert.True(t, oneCallAtATime(tok.Module))
	link := filepath.Join(t.TempDir(), "hsm.so")
	require.NoError(t, os.Symlink(tok.Module, link))
	assert.True(t, oneCallAtATime(link))
	assert.False(t, oneCallAtATime(testenv.NewTokenSpec(t, testenv.TokenSoftHSM2).Module))

	_, h := p11kitHSM(t, 2)
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.True(t, h.b.m.serial)
}
