package pca_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

// scaleEntries is how many revocation entries the scale test seeds: the
// bench builds CRLs of 100,000 (`make bench`).
const scaleEntries = 10000

// gateStore holds every listing of one CA's revocation entries after its
// first page while hold is set, so a test can look at the daemon while a
// CRL build is under way.
type gateStore struct {
	store.Store
	hold    atomic.Bool
	held    chan struct{} // receives once per listing held
	release chan struct{} // closed to let the held listings go on
	lists   atomic.Int64  // listings of revocation entries begun
}

func newGateStore(st store.Store) *gateStore {
	return &gateStore{Store: st, held: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *gateStore) List(ctx context.Context, q store.Query) (*store.Page, error) {
	if q.Kind == pca.RecordRevocation {
		if q.Cursor == "" {
			g.lists.Add(1)
		} else if g.hold.Load() {
			g.held <- struct{}{}
			<-g.release
		}
	}
	return g.Store.List(ctx, q)
}

// scaleReplica is the family over one core of a daemon replica.
func scaleReplica(t *testing.T, tok *testenv.Token, st store.Store, clk *testClock) (*pca.Service, *signer.Core) {
	t.Helper()
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	core := signer.New(signer.Options{Families: []signer.Family{pca.Family()}, Store: st, HSM: h, Now: clk.now})
	return pca.New(core), core
}

func crlOf(t *testing.T, e *pca.Service, ca string) *x509.RevocationList {
	t.Helper()
	der, err := e.PublicCRL(context.Background(), ca)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	return crl
}

// A CA with 10,000 revocation entries, seeded straight into the store:
// its CRL is built, signed and served (kept apart from the CRL record,
// served from memory while unchanged); while a build is held half way,
// issuance, another CA's revocation and the CRL route answer, and
// revocations of the same CA wait for the build after it and are all on
// the CRL that ends it.
func TestPCACRLAtScale(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			tok := testenv.NewToken(t)
			var raw store.Store
			var err error
			idx := signer.StoreIndexes(pca.Family())
			switch backend {
			case "bolt":
				raw, err = boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: idx})
			case "redis":
				r := testenv.StartRedis(t)
				raw, err = redisstore.Open(context.Background(), r.URL(), redisstore.Options{Indexes: idx,
					ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
			}
			require.NoError(t, err)
			t.Cleanup(func() { raw.Close() })
			gate := newGateStore(raw)
			e, core := scaleReplica(t, tok, gate, &testClock{})
			t.Cleanup(func() { core.Close() })
			ctx := pcaCtx()

			root := mkCRLRoot(t, e, "Scale Root", 7)
			other := mkCRLRoot(t, e, "Other Root", 7)
			leaves := make([]string, 6)
			for i := range leaves {
				leaves[i] = mkLeaf(t, e, root, "scale.example.com", pca.Validity{Type: "DAY", Value: 30})
			}
			otherLeaf := mkLeaf(t, e, other, "other.example.com", pca.Validity{Type: "DAY", Value: 30})

			bs := raw.(bulkStore)
			require.NoError(t, e.SeedRevocations(ctx, "t1", root, scaleEntries, 3000,
				func(ctx context.Context, recs []store.Record, q store.Quota) error {
					return bs.BulkCreate(ctx, recs, q)
				}))
			first := crlOf(t, e, root)
			require.Len(t, first.RevokedCertificateEntries, scaleEntries)
			rootCert := caCert(t, e, root)
			require.NoError(t, first.CheckSignatureFrom(rootCert))
			assert.Equal(t, int64(2), first.Number.Int64(), "the CA's first CRL, then the seeded one")
			head, err := raw.Get(context.Background(), pca.RecordCRL, "t1", root)
			require.NoError(t, err)
			assert.Less(t, len(head.Data), 1024, "the CRL record names the large CRL, which is kept apart")
			data, err := raw.Get(context.Background(), pca.RecordCRLData, "t1", root)
			require.NoError(t, err)
			assert.Greater(t, len(data.Data), len(first.Raw))
			assert.Equal(t, first.Raw, crlOf(t, e, root).Raw)

			// A revocation whose build is held after its first page.
			gate.hold.Store(true)
			done := make(chan error, 1)
			go func() { done <- e.RevokeCertificate(ctx, "t1", leaves[0], "KEY_COMPROMISE") }()
			<-gate.held
			// Meanwhile the daemon answers: an issuance, the current CRL,
			// another CA's revocation (its listing has one page).
			mkLeaf(t, e, root, "meanwhile.example.com", pca.Validity{Type: "DAY", Value: 30})
			assert.Equal(t, first.Raw, crlOf(t, e, root).Raw, "the CRL being replaced is served")
			require.NoError(t, e.RevokeCertificate(ctx, "t1", otherLeaf, "SUPERSEDED"))
			assert.Len(t, crlOf(t, e, other).RevokedCertificateEntries, 1)
			// More revocations of the same CA wait for the build after it.
			var wg sync.WaitGroup
			for _, id := range leaves[1:] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					assert.NoError(t, e.RevokeCertificate(ctx, "t1", id, "SUPERSEDED"))
				}()
			}
			listsBefore := gate.lists.Load()
			gate.hold.Store(false)
			close(gate.release)
			require.NoError(t, <-done)
			wg.Wait()
			final := crlOf(t, e, root)
			require.NoError(t, final.CheckSignatureFrom(rootCert))
			assert.Len(t, final.RevokedCertificateEntries, scaleEntries+len(leaves))
			for _, id := range leaves {
				assert.True(t, listed(final, serialOf(t, e, id)), "revoked %s is listed", id)
			}
			builds := gate.lists.Load() - listsBefore
			assert.LessOrEqual(t, builds, int64(len(leaves)-1), "revocations during a build share builds")
			t.Logf("%s: %d entries, %d bytes; %d more builds for %d revocations during one", backend,
				len(final.RevokedCertificateEntries), len(final.Raw), builds, len(leaves)-1)
		})
	}
}

func caCert(t *testing.T, e *pca.Service, id string) *x509.Certificate {
	t.Helper()
	c, _, err := e.IssuerKey(pcaCtx(), "t1", id)
	require.NoError(t, err)
	return c
}

func listed(crl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

// crlNumberStore notes the numbers of the PCA CRLs committed through it.
type crlNumberStore struct {
	store.Store
	mu   *sync.Mutex
	nums *[]int64
}

func (s crlNumberStore) note(rec *store.Record, err error) {
	if err != nil || rec.Kind != pca.RecordCRL {
		return
	}
	var v struct{ Number int64 }
	if json.Unmarshal(rec.Data, &v) == nil {
		s.mu.Lock()
		*s.nums = append(*s.nums, v.Number)
		s.mu.Unlock()
	}
}

func (s crlNumberStore) Create(ctx context.Context, rec *store.Record, o store.WriteOpts) error {
	err := s.Store.Create(ctx, rec, o)
	s.note(rec, err)
	return err
}

func (s crlNumberStore) Update(ctx context.Context, rec *store.Record, o store.WriteOpts) error {
	err := s.Store.Update(ctx, rec, o)
	s.note(rec, err)
	return err
}

// The CRL number and the re-signing schedule of a large CRL live in the
// store: on bolt a restarted daemon serves the same CRL, re-signs it
// when half its validity has passed with the next number, and goes on
// from there; on Redis two replicas serve the same CRL, each sees the
// other's new one at once, and their refresh rounds at the same moment
// never give two CRLs one number.
func TestPCACRLAtScaleSurvivesRestartsAndReplicas(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			tok := testenv.NewToken(t)
			idx := signer.StoreIndexes(pca.Family())
			clk := &testClock{}
			var (
				mu   sync.Mutex
				nums []int64
			)
			path := filepath.Join(t.TempDir(), "s.db")
			var redis *testenv.Redis
			if backend == "redis" {
				redis = testenv.StartRedis(t)
			}
			open := func() (*pca.Service, store.Store, func()) {
				var raw store.Store
				var err error
				if backend == "bolt" {
					raw, err = boltstore.Open(path, boltstore.Options{Indexes: idx})
				} else {
					raw, err = redisstore.Open(context.Background(), redis.URL(), redisstore.Options{Indexes: idx,
						ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
				}
				require.NoError(t, err)
				e, core := scaleReplica(t, tok, crlNumberStore{Store: raw, mu: &mu, nums: &nums}, clk)
				var once sync.Once
				stop := func() { once.Do(func() { core.Close(); raw.Close() }) }
				t.Cleanup(stop)
				return e, raw, stop
			}
			ctx := pcaCtx()
			a, rawA, stopA := open()
			root := mkCRLRoot(t, a, "Lasting Root", 7)
			leaf := mkLeaf(t, a, root, "lasting.example.com", pca.Validity{Type: "DAY", Value: 30})
			bs := rawA.(bulkStore)
			require.NoError(t, a.SeedRevocations(ctx, "t1", root, scaleEntries, 5000,
				func(ctx context.Context, recs []store.Record, q store.Quota) error {
					return bs.BulkCreate(ctx, recs, q)
				}))
			first := crlOf(t, a, root)
			require.Equal(t, int64(2), first.Number.Int64())

			var b *pca.Service
			if backend == "bolt" {
				stopA() // the daemon stops; another starts on the same file
				b, _, _ = open()
			} else {
				b, _, _ = open() // a second replica beside the first
			}
			assert.Equal(t, first.Raw, crlOf(t, b, root).Raw, "the same CRL, number and next update")
			n, err := b.RefreshDueCRLs(ctx)
			require.NoError(t, err)
			assert.Zero(t, n, "not due yet")

			if backend == "redis" {
				// A revocation on one replica shows on the other at once.
				require.NoError(t, a.RevokeCertificate(ctx, "t1", leaf, "KEY_COMPROMISE"))
				viaA, viaB := crlOf(t, a, root), crlOf(t, b, root)
				assert.Equal(t, viaA.Raw, viaB.Raw)
				assert.Equal(t, int64(3), viaB.Number.Int64())
				assert.Len(t, viaB.RevokedCertificateEntries, scaleEntries+1)
			}
			before := crlOf(t, b, root)

			// Half the validity passes: re-signed, once per number.
			clk.set(3*24*time.Hour + 12*time.Hour + time.Minute)
			replicas := []*pca.Service{b}
			if backend == "redis" {
				replicas = append(replicas, a)
			}
			var wg sync.WaitGroup
			for _, r := range replicas {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := r.RefreshDueCRLs(ctx)
					assert.NoError(t, err)
				}()
			}
			wg.Wait()
			after := crlOf(t, b, root)
			assert.Equal(t, before.Number.Int64()+1, after.Number.Int64(), "one refresh, the next number")
			assert.True(t, after.ThisUpdate.After(before.ThisUpdate))
			assert.Equal(t, after.ThisUpdate.Add(7*24*time.Hour), after.NextUpdate)
			assert.Len(t, after.RevokedCertificateEntries, len(before.RevokedCertificateEntries))
			if backend == "bolt" {
				require.NoError(t, b.RevokeCertificate(ctx, "t1", leaf, "KEY_COMPROMISE"))
				assert.Equal(t, after.Number.Int64()+1, crlOf(t, b, root).Number.Int64())
			} else {
				assert.Equal(t, after.Raw, crlOf(t, a, root).Raw)
			}
			mu.Lock()
			committed := append([]int64(nil), nums...)
			mu.Unlock()
			assertConsecutive(t, committed)
			t.Logf("%s: CRL numbers committed %v", backend, committed)
		})
	}
}
