package pca_test

import (
	"context"
	"path/filepath"
	"sync"
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
)

// admitted is how many heavy operations of kind the pool has let run.
func admitted(t *testing.T, m *metrics.Metrics, kind signer.HeavyKind) uint64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, m.HeavyWait.WithLabelValues(string(kind)).(prometheus.Metric).Write(&d))
	return d.GetHistogram().GetSampleCount()
}

func waiting(t *testing.T, m *metrics.Metrics, kind signer.HeavyKind) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, m.HeavyWaiting.WithLabelValues(string(kind)).Write(&d))
	return d.GetGauge().GetValue()
}

func heavyCaller(tenant string) context.Context {
	return signer.WithCaller(context.Background(), signer.Caller{Tenant: tenant, Principal: "token:" + tenant})
}

// The family's heavy operations, password exports and software RSA leaf
// keys, go through the core's pool; EC keys and signatures are light, and
// another tenant's light work never waits behind a full pool.
func TestHeavyOperationsOfTheFamily(t *testing.T) {
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	m := metrics.New("test")
	core := signer.New(signer.Options{Families: []signer.Family{pca.Family()}, Store: st, HSM: h, Metrics: m,
		HeavyWork: signer.HeavyWork{Concurrency: 1, MaxWait: time.Minute}})
	t.Cleanup(func() { core.Close(); st.Close() })
	s := pca.New(core)
	acme, other := heavyCaller("acme"), heavyCaller("other")
	count := func() map[signer.HeavyKind]uint64 {
		out := map[signer.HeavyKind]uint64{}
		for _, k := range signer.HeavyKinds {
			out[k] = admitted(t, m, k)
		}
		return out
	}
	none := count()

	root, err := s.CreateCA(acme, "acme", pca.CACreate{Type: "ROOT", KeyAlgorithm: "EC256", SignatureAlgorithm: "SHA256",
		DN: caDN("Heavy Root"), Validity: &pca.Validity{Type: "YEAR", Value: 5}})
	require.NoError(t, err)
	cert, err := s.IssueCertificate(acme, "acme", pca.CertIssue{IssuerID: root, DN: &pca.DistinguishedName{CommonName: "leaf"},
		Validity: &pca.Validity{Type: "DAY", Value: 1}})
	require.NoError(t, err)
	assert.Equal(t, none, count(), "EC keys and EC signatures are light")

	// Password exports take their turn, one after another.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			out, err := s.ExportCertificate(acme, "acme", cert, pca.CertExport{Password: "correct horse"})
			if assert.NoError(t, err) {
				assert.Contains(t, out.PrivateKey, "ENCRYPTED PRIVATE KEY")
			}
		})
	}
	wg.Wait()
	assert.Equal(t, uint64(3), admitted(t, m, signer.HeavyExportPassword))
	_, err = s.ExportCertificate(acme, "acme", cert, pca.CertExport{})
	require.NoError(t, err)
	assert.Equal(t, uint64(3), admitted(t, m, signer.HeavyExportPassword), "an export without a password is light")

	// An RSA leaf key made in software is heavy.
	_, err = s.IssueCertificate(acme, "acme", pca.CertIssue{IssuerID: root, KeyAlgorithm: "RSA2048",
		DN: &pca.DistinguishedName{CommonName: "rsa leaf"}, Validity: &pca.Validity{Type: "DAY", Value: 1}})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), admitted(t, m, signer.HeavySoftwareRSAKey))

	// While acme holds the only slot, and another of its heavy operations
	// waits, the other tenant's light work goes on.
	hold, err := core.Heavy(acme, "acme", signer.HeavyExportPassword)
	require.NoError(t, err)
	exported := make(chan error, 1)
	go func() {
		_, err := s.ExportCertificate(acme, "acme", cert, pca.CertExport{Password: "correct horse"})
		exported <- err
	}()
	require.Eventually(t, func() bool { return waiting(t, m, signer.HeavyExportPassword) == 1 }, time.Minute, time.Millisecond)
	otherRoot, err := s.CreateCA(other, "other", pca.CACreate{Type: "ROOT", KeyAlgorithm: "EC256", SignatureAlgorithm: "SHA256",
		DN: caDN("Other Root"), Validity: &pca.Validity{Type: "YEAR", Value: 5}})
	require.NoError(t, err, "a light operation of another tenant runs while the pool is full")
	_, err = s.IssueCertificate(other, "other", pca.CertIssue{IssuerID: otherRoot, DN: &pca.DistinguishedName{CommonName: "x"},
		Validity: &pca.Validity{Type: "DAY", Value: 1}})
	require.NoError(t, err)
	assert.Equal(t, 1.0, waiting(t, m, signer.HeavyExportPassword), "only the export waits")
	hold()
	require.NoError(t, <-exported)
	assert.Zero(t, waiting(t, m, signer.HeavyExportPassword))
}

// ACTIVED CAs, and only they, feed the CA-expiry gauges, roots and
// subordinates apart; one past its end still counts.
func TestCAExpirySources(t *testing.T) {
	srcs := pca.Family().CAExpiry
	require.Len(t, srcs, 2)
	by := map[string]signer.CAExpirySource{}
	for _, src := range srcs {
		assert.Equal(t, pca.RecordCA, src.RecordKind)
		by[src.Label] = src
	}
	rec := func(status, typ, notAfter string) *store.Record {
		return &store.Record{Kind: pca.RecordCA, Fields: map[string]string{"status": status, "type": typ, "not_after": notAfter}}
	}
	na, ok := by["pca_root"].Active(rec(pca.CAActived, pca.CATypeRoot, "0001700000000000"))
	assert.True(t, ok)
	assert.Equal(t, time.UnixMilli(1700000000000), na)
	_, ok = by["pca_root"].Active(rec(pca.CAActived, pca.CATypeSubordinate, "0001700000000000"))
	assert.False(t, ok, "a subordinate is not a root")
	_, ok = by["pca_subordinate"].Active(rec(pca.CAActived, pca.CATypeSubordinate, "0000000000000001"))
	assert.True(t, ok, "past its end, still counted")
	_, ok = by["pca_subordinate"].Active(rec(pca.CADisabled, pca.CATypeSubordinate, "0001700000000000"))
	assert.False(t, ok, "not active")
	_, ok = by["pca_root"].Active(rec(pca.CAPending, pca.CATypeRoot, "0000000000000000"))
	assert.False(t, ok, "no certificate yet")
}
