package pca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

// writeCountingStore counts every write to the store and keeps the
// numbers of the PCA CRLs it stored, by CA, in the order the writes
// returned.
type writeCountingStore struct {
	store.Store
	writes atomic.Int64
	mu     sync.Mutex
	crls   map[string][]int64
}

func (s *writeCountingStore) noteCRL(rec *store.Record, err error) {
	if err != nil || rec.Kind != "pca_crl" {
		return
	}
	var v struct{ Number int64 }
	if json.Unmarshal(rec.Data, &v) == nil {
		s.mu.Lock()
		if s.crls == nil {
			s.crls = map[string][]int64{}
		}
		s.crls[rec.ID] = append(s.crls[rec.ID], v.Number)
		s.mu.Unlock()
	}
}

func (s *writeCountingStore) crlNumbers(ca string) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.crls[ca])
}

func (s *writeCountingStore) Create(ctx context.Context, rec *store.Record, o store.WriteOpts) error {
	s.writes.Add(1)
	err := s.Store.Create(ctx, rec, o)
	s.noteCRL(rec, err)
	return err
}

func (s *writeCountingStore) Update(ctx context.Context, rec *store.Record, o store.WriteOpts) error {
	s.writes.Add(1)
	err := s.Store.Update(ctx, rec, o)
	s.noteCRL(rec, err)
	return err
}

func (s *writeCountingStore) Delete(ctx context.Context, kind, tenant, id string, o store.WriteOpts) error {
	s.writes.Add(1)
	return s.Store.Delete(ctx, kind, tenant, id, o)
}

func (s *writeCountingStore) AppendEvents(ctx context.Context, tenant string, data []json.RawMessage) ([]store.Event, error) {
	s.writes.Add(1)
	return s.Store.AppendEvents(ctx, tenant, data)
}

func (s *writeCountingStore) ReserveQuota(ctx context.Context, tenant, resource string, n, limit int64) error {
	s.writes.Add(1)
	return s.Store.ReserveQuota(ctx, tenant, resource, n, limit)
}

func (s *writeCountingStore) ReleaseQuota(ctx context.Context, tenant, resource string, n int64) error {
	s.writes.Add(1)
	return s.Store.ReleaseQuota(ctx, tenant, resource, n)
}

func (s *writeCountingStore) PutIntent(ctx context.Context, in *store.Intent) error {
	s.writes.Add(1)
	return s.Store.PutIntent(ctx, in)
}

func (s *writeCountingStore) DeleteIntent(ctx context.Context, id string) error {
	s.writes.Add(1)
	return s.Store.DeleteIntent(ctx, id)
}

// signFaultHSM makes every signature fail while failSign is set.
type signFaultHSM struct {
	*hsm.HSM
	failSign atomic.Bool
}

func (h *signFaultHSM) Signer(ctx context.Context, id string) (crypto.Signer, error) {
	s, err := h.HSM.Signer(ctx, id)
	if err != nil {
		return nil, err
	}
	return faultySigner{Signer: s, fail: &h.failSign}, nil
}

type faultySigner struct {
	crypto.Signer
	fail *atomic.Bool
}

func (s faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.fail.Load() {
		return nil, errors.New("injected: the signature failed")
	}
	return s.Signer.Sign(r, digest, opts)
}

// lockedBuffer is a log output tests read while the engine writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// crlEnv is the family over an indexed store that counts writes and an
// HSM whose signatures can be made to fail, with a clock the test moves.
type crlEnv struct {
	e     *pca.Service
	raw   store.Store
	st    *writeCountingStore
	hsm   *signFaultHSM
	logs  *lockedBuffer
	m     *metrics.Metrics
	clk   *testClock
	clock func(time.Duration)
}

func newCRLEnv(t *testing.T, backend string) *crlEnv {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	var raw store.Store
	switch backend {
	case "bolt":
		raw, err = boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: signer.StoreIndexes(pca.Family())})
	case "redis":
		r := testenv.StartRedis(t)
		raw, err = redisstore.Open(context.Background(), r.URL(), redisstore.Options{Indexes: signer.StoreIndexes(pca.Family())})
	}
	require.NoError(t, err)
	env := &crlEnv{raw: raw, st: &writeCountingStore{Store: raw}, hsm: &signFaultHSM{HSM: h},
		logs: &lockedBuffer{}, m: metrics.New("test"), clk: &testClock{}}
	env.clock = env.clk.set
	t.Cleanup(func() { raw.Close() }) // after the replicas' cores, which flush into it
	env.e = env.replica(t)
	return env
}

// replica is the family over another core with the same store, HSM and
// clock, as a second daemon replica.
func (env *crlEnv) replica(t *testing.T) *pca.Service {
	log := slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	core := signer.New(signer.Options{Families: []signer.Family{pca.Family()}, Store: env.st, HSM: env.hsm,
		Logger: log, Metrics: env.m, Now: env.clk.now})
	t.Cleanup(func() { core.Close() })
	return pca.New(core)
}

func (env *crlEnv) events(t *testing.T) int {
	t.Helper()
	evs, err := env.raw.ListEvents(context.Background(), "t1", 0, 0)
	require.NoError(t, err)
	return len(evs)
}

func (env *crlEnv) crl(t *testing.T, ca string) *x509.RevocationList {
	t.Helper()
	der, err := env.e.PublicCRL(context.Background(), ca)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	return crl
}

func mkCRLRoot(t *testing.T, e *pca.Service, cn string, days int) string {
	t.Helper()
	id, err := e.CreateCA(pcaCtx(), "t1", pca.CACreate{Type: "ROOT", DN: caDN(cn), KeyAlgorithm: "EC256",
		SignatureAlgorithm: "SHA256", Validity: &pca.Validity{Type: "YEAR", Value: 10},
		CRL: &pca.CRLConfiguration{Enabled: true, ValidDays: days}})
	require.NoError(t, err)
	return id
}

func mkLeaf(t *testing.T, e *pca.Service, issuer, cn string, v pca.Validity) string {
	t.Helper()
	id, err := e.IssueCertificate(pcaCtx(), "t1", pca.CertIssue{IssuerID: issuer,
		DN: &pca.DistinguishedName{CommonName: cn}, Validity: &v,
		SANs: []pca.SAN{{Type: "DNS", Value: cn}}})
	require.NoError(t, err)
	return id
}

func serialOf(t *testing.T, e *pca.Service, id string) *big.Int {
	t.Helper()
	c, err := e.GetCertificate(pcaCtx(), "t1", id)
	require.NoError(t, err)
	n, ok := new(big.Int).SetString(c.SerialNumber, 16)
	require.True(t, ok)
	return n
}

// externalCertUsage signs a PENDING CA's CSR outside hsmca with the given
// key usage (0: no keyUsage extension).
func externalCertUsage(t *testing.T, e *pca.Service, caID string, ku x509.KeyUsage) string {
	return signExternally(t, e, caID, ku, false)
}

func mkPendingCRL(t *testing.T, e *pca.Service, cn string, crlOn bool) string {
	t.Helper()
	id, err := e.CreateCA(pcaCtx(), "t1", pca.CACreate{Type: "SUBORDINATE", DN: caDN(cn), KeyAlgorithm: "EC256",
		CRL: &pca.CRLConfiguration{Enabled: crlOn, ValidDays: 7}})
	require.NoError(t, err)
	return id
}

// A CA certificate whose keyUsage lacks cRLSign cannot get a CRL: its
// import is refused while the CA's CRL is on, and enabling the CRL is
// refused once it is imported. One imported before these checks, with its
// CRL on, answers every anonymous CRL fetch with "no CRL" and nothing
// else: no signature, no event record, no store write, no log line.
func TestPCACRLOfACertificateWithoutCRLSign(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			env := newCRLEnv(t, backend)
			e, ctx := env.e, pcaCtx()

			on := mkPendingCRL(t, e, "CRL On", true)
			err := e.ImportCACertificate(ctx, "t1", on, externalCertUsage(t, e, on, x509.KeyUsageCertSign), "")
			require.Error(t, err)
			assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
			assert.Equal(t, pca.ReasonBadCert, signer.ReasonOf(err))
			assert.Contains(t, err.Error(), "cRLSign")
			ca, err := e.GetCA(ctx, "t1", on)
			require.NoError(t, err)
			assert.Equal(t, "PENDING", ca.Status)

			legacy := mkPendingCRL(t, e, "CRL Off", false)
			require.NoError(t, e.ImportCACertificate(ctx, "t1", legacy, externalCertUsage(t, e, legacy, x509.KeyUsageCertSign), ""))
			err = e.SetCRL(ctx, "t1", legacy, true, 7)
			require.Error(t, err)
			assert.Equal(t, signer.KindInvalid, signer.KindOf(err))
			assert.Equal(t, pca.ReasonNoCRLSign, signer.ReasonOf(err))
			ca, err = e.GetCA(ctx, "t1", legacy)
			require.NoError(t, err)
			assert.False(t, ca.CRL.Enabled, "a refused enable changes nothing")

			// As a CA imported by an earlier version stands: CRL on, and an
			// index entry without a refresh time.
			rec, err := env.raw.Get(context.Background(), "pca_ca", "t1", legacy)
			require.NoError(t, err)
			var doc map[string]any
			require.NoError(t, json.Unmarshal(rec.Data, &doc))
			doc["crl_configuration"] = map[string]any{"enabled": true, "valid_days": 7}
			rec.Data, _ = json.Marshal(doc)
			require.NoError(t, env.raw.Update(context.Background(), rec, store.WriteOpts{}))
			idx, err := env.raw.Get(context.Background(), "pca_ca_index", store.PlatformTenant, legacy)
			require.NoError(t, err)
			delete(idx.Fields, "crl_due")
			require.NoError(t, env.raw.Update(context.Background(), idx, store.WriteOpts{}))
			caRec, err := env.raw.Get(context.Background(), "pca_ca", "t1", legacy)
			require.NoError(t, err)

			writes, events, logged := env.st.writes.Load(), env.events(t), len(env.logs.String())
			for i := 0; i < 200; i++ {
				_, err := e.PublicCRL(context.Background(), legacy)
				require.Error(t, err)
				require.Equal(t, signer.KindNotFound, signer.KindOf(err), "fetch %d: %v", i, err)
				require.Equal(t, pca.ReasonCRLDisabled, signer.ReasonOf(err))
			}
			assert.Equal(t, writes, env.st.writes.Load(), "anonymous fetches write nothing")
			assert.Equal(t, events, env.events(t), "anonymous fetches add no event record")
			after, err := env.raw.Get(context.Background(), "pca_ca", "t1", legacy)
			require.NoError(t, err)
			assert.Equal(t, caRec.Version, after.Version, "the CA record (and its CRL number) is untouched")
			_, err = env.raw.Get(context.Background(), "pca_crl", "t1", legacy)
			assert.ErrorIs(t, err, store.ErrNotFound)
			assert.Empty(t, env.logs.String()[logged:], "anonymous fetches log nothing")

			// The refresher finds it (the entry had no refresh time), says
			// once that it cannot sign, and leaves it alone from then on.
			n, err := e.RefreshDueCRLs(ctx)
			require.NoError(t, err)
			assert.Zero(t, n)
			n, err = e.RefreshDueCRLs(ctx)
			require.NoError(t, err)
			assert.Zero(t, n)
			assert.Equal(t, 1, strings.Count(env.logs.String()[logged:], "its CRL is not refreshed"))
			assert.NotContains(t, env.logs.String()[logged:], "level=ERROR")
			assert.Equal(t, events, env.events(t), "nothing was attempted, so nothing failed")
		})
	}
}

// A CA certificate without a keyUsage extension may sign CRLs (RFC 5280:
// every usage is allowed), and its CRL verifies.
func TestPCACRLOfACertificateWithoutKeyUsage(t *testing.T) {
	env := newCRLEnv(t, "bolt")
	e, ctx := env.e, pcaCtx()
	ca := mkPendingCRL(t, e, "No Key Usage", true)
	certPEM := externalCertUsage(t, e, ca, 0)
	require.NoError(t, e.ImportCACertificate(ctx, "t1", ca, certPEM, ""))
	b, _ := pem.Decode([]byte(certPEM))
	cert, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	require.Zero(t, cert.KeyUsage)
	crl := env.crl(t, ca)
	require.NoError(t, crl.CheckSignatureFrom(cert))
	assert.Equal(t, int64(1), crl.Number.Int64())
}

// A CRL past its nextUpdate is served as it is: the read path never
// signs. The operator hears of it once, not once per fetch.
func TestPCACRLReadOfAnExpiredCRLDoesNotSign(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			env := newCRLEnv(t, backend)
			root := mkCRLRoot(t, env.e, "Overdue Root", 7)
			first := env.crl(t, root)
			assert.Equal(t, int64(1), first.Number.Int64())

			env.clock(8 * 24 * time.Hour)
			writes, events := env.st.writes.Load(), env.events(t)
			for i := 0; i < 20; i++ {
				assert.Equal(t, first.Raw, env.crl(t, root).Raw)
			}
			assert.Equal(t, writes, env.st.writes.Load())
			assert.Equal(t, events, env.events(t))
			assert.Equal(t, 1.0, counterValue(t, env.m.CRLOverdue.WithLabelValues("pca")))
			assert.Equal(t, 1, strings.Count(env.logs.String(), "CRL served past its next update"))
			assert.Equal(t, []int64{1}, env.st.crlNumbers(root))
		})
	}
}

// A failed signature takes no CRL number: the number is committed with
// the signed CRL, so the next CRL signed carries the next number, and the
// revocation whose CRL failed is left for the refresher.
func TestPCACRLFailedSignatureTakesNoNumber(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			env := newCRLEnv(t, backend)
			e, ctx := env.e, pcaCtx()
			root := mkCRLRoot(t, e, "Faulty Root", 7)
			leaf := mkLeaf(t, e, root, "faulty.example.com", pca.Validity{Type: "DAY", Value: 30})

			env.hsm.failSign.Store(true)
			require.Error(t, e.RevokeCertificate(ctx, "t1", leaf, "KEY_COMPROMISE"))
			require.Error(t, e.SetCRL(ctx, "t1", root, true, 7))
			env.hsm.failSign.Store(false)

			crl := env.crl(t, root)
			assert.Equal(t, int64(1), crl.Number.Int64(), "the failed CRLs stored nothing")
			assert.Empty(t, crl.RevokedCertificateEntries)
			caRec, err := env.raw.Get(ctx, "pca_ca", "t1", root)
			require.NoError(t, err)
			var doc struct {
				CRLNumber int64 `json:"crl_number"`
			}
			require.NoError(t, json.Unmarshal(caRec.Data, &doc))
			assert.Zero(t, doc.CRLNumber, "no number was taken in the CA record")

			// The revocation marked the CRL due: the next round signs it,
			// with the next number.
			n, err := e.RefreshDueCRLs(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			crl = env.crl(t, root)
			assert.Equal(t, int64(2), crl.Number.Int64())
			require.Len(t, crl.RevokedCertificateEntries, 1)
			assert.Equal(t, 0, crl.RevokedCertificateEntries[0].SerialNumber.Cmp(serialOf(t, e, leaf)))
			assert.Equal(t, []int64{1, 2}, env.st.crlNumbers(root))
		})
	}
}

// The background refresh re-signs a CRL once half its validity has
// passed, well before its nextUpdate, and not before.
func TestPCACRLBackgroundRefresh(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			env := newCRLEnv(t, backend)
			e, ctx := env.e, pcaCtx()
			root := mkCRLRoot(t, e, "Refreshed Root", 7)
			disabled := mkCRLRoot(t, e, "Disabled Root", 10)
			require.NoError(t, e.SetCRL(ctx, "t1", disabled, false, 0))
			first := env.crl(t, root)

			n, err := e.RefreshDueCRLs(ctx)
			require.NoError(t, err)
			assert.Zero(t, n, "fresh CRLs are left alone")
			env.clock(3*24*time.Hour + 11*time.Hour)
			n, err = e.RefreshDueCRLs(ctx)
			require.NoError(t, err)
			assert.Zero(t, n, "not yet half way")

			env.clock(3*24*time.Hour + 12*time.Hour + time.Minute)
			n, err = e.RefreshDueCRLs(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, n, "half way: re-signed (the disabled CRL is not)")
			second := env.crl(t, root)
			assert.Equal(t, int64(2), second.Number.Int64())
			assert.True(t, second.ThisUpdate.After(first.ThisUpdate))
			assert.True(t, second.NextUpdate.After(first.NextUpdate))
			assert.Equal(t, second.ThisUpdate.Add(7*24*time.Hour), second.NextUpdate)
			n, err = e.RefreshDueCRLs(ctx)
			require.NoError(t, err)
			assert.Zero(t, n)

			// Two replicas whose rounds run at once sign one CRL between
			// them, or two with consecutive numbers: never one number twice.
			other := env.replica(t)
			env.clock(7*24*time.Hour + 2*time.Minute)
			var wg sync.WaitGroup
			for _, eng := range []*pca.Service{e, other} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := eng.RefreshDueCRLs(ctx)
					assert.NoError(t, err)
				}()
			}
			wg.Wait()
			assertConsecutive(t, env.st.crlNumbers(root))
			assert.GreaterOrEqual(t, env.crl(t, root).Number.Int64(), int64(3))
		})
	}
}

// Revocations through two replicas at once: every committed CRL has its
// own number, the numbers run without a gap, and the last CRL lists every
// revocation.
func TestPCACRLConcurrentRevocationsAcrossReplicas(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			env := newCRLEnv(t, backend)
			e, ctx := env.e, pcaCtx()
			other := env.replica(t)
			root := mkCRLRoot(t, e, "Busy Root", 7)
			var leaves []string
			for i := 0; i < 6; i++ {
				leaves = append(leaves, mkLeaf(t, e, root, "busy.example.com", pca.Validity{Type: "DAY", Value: 30}))
			}
			var wg sync.WaitGroup
			for i, id := range leaves {
				eng := []*pca.Service{e, other}[i%2]
				wg.Add(1)
				go func() {
					defer wg.Done()
					assert.NoError(t, eng.RevokeCertificate(ctx, "t1", id, "SUPERSEDED"))
				}()
			}
			wg.Wait()
			nums := env.st.crlNumbers(root)
			assertConsecutive(t, nums)
			crl := env.crl(t, root)
			assert.Equal(t, slices.Max(nums), crl.Number.Int64())
			assert.Len(t, crl.RevokedCertificateEntries, len(leaves))
		})
	}
}

func assertConsecutive(t *testing.T, nums []int64) {
	t.Helper()
	sorted := slices.Clone(nums)
	slices.Sort(sorted)
	for i := range sorted {
		require.Equal(t, sorted[0]+int64(i), sorted[i], "CRL numbers committed: %v", nums)
	}
	require.Equal(t, int64(1), sorted[0])
}

// Deleting a certificate that is still valid and was never revoked
// revokes it (CESSATION_OF_OPERATION) on its issuer's CRL before the
// record goes; a revoked one stays listed with its own reason; an
// expired one is just deleted. Each gives its quota unit back.
func TestPCADeleteOfAnIssuedCertificateRevokesIt(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			env := newCRLEnv(t, backend)
			e, ctx := env.e, pcaCtx()
			root := mkCRLRoot(t, e, "Deleting Root", 7)
			issued := mkLeaf(t, e, root, "issued.example.com", pca.Validity{Type: "DAY", Value: 30})
			revoked := mkLeaf(t, e, root, "revoked.example.com", pca.Validity{Type: "DAY", Value: 30})
			expired := mkLeaf(t, e, root, "expired.example.com", pca.Validity{Type: "HOUR", Value: 1})
			serials := map[string]*big.Int{}
			for _, id := range []string{issued, revoked, expired} {
				serials[id] = serialOf(t, e, id)
			}
			require.NoError(t, e.RevokeCertificate(ctx, "t1", revoked, "KEY_COMPROMISE"))
			env.clock(2 * time.Hour)
			used := func() int64 {
				n, err := env.raw.QuotaUsage(ctx, "t1", pca.QuotaCertificates)
				require.NoError(t, err)
				return n
			}
			require.Equal(t, int64(3), used())

			for _, id := range []string{issued, revoked, expired} {
				require.NoError(t, e.DeleteCertificate(ctx, "t1", id))
				_, err := e.GetCertificate(ctx, "t1", id)
				assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
			}
			assert.Zero(t, used())

			crl := env.crl(t, root)
			reasons := map[string]int{}
			for _, r := range crl.RevokedCertificateEntries {
				reasons[r.SerialNumber.Text(16)] = r.ReasonCode
			}
			assert.Equal(t, map[string]int{
				serials[issued].Text(16):  5, // cessationOfOperation
				serials[revoked].Text(16): 1, // keyCompromise, as revoked
			}, reasons)
		})
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
