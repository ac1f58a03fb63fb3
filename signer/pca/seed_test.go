package pca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
)

type bulkStore interface {
	BulkCreate(ctx context.Context, recs []store.Record, quota store.Quota) error
}

func leafCSR(t *testing.T, cn string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn}}, k)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func listIDs(t *testing.T, e *pca.Service, q pca.CertQuery) ([]string, int) {
	t.Helper()
	certs, total, err := e.ListCertificates(pcaCtx(), "t1", q)
	require.NoError(t, err)
	var out []string
	for _, c := range certs {
		out = append(out, c.ID)
	}
	return out, total
}

// Seeded certificates are what issuance from a CSR stores: the API shows,
// lists, exports and counts them like issued ones, with real signatures of
// the CA's HSM key and serials unique under the issuer.
func TestPCASeedCertificatesReadLikeIssuedOnes(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, st, _ := newPCAEngine(t, backend)
			bs, ok := st.(bulkStore)
			require.True(t, ok)
			ca := mkRoot(t, e, "Seed Root")
			in := pca.CertFromCSR{IssuerID: ca, CSR: leafCSR(t, "seed.example.com"),
				Validity: &pca.Validity{Type: "DAY", Value: 30}}
			issued, err := e.IssueFromCSR(pcaCtx(), "t1", in)
			require.NoError(t, err)

			var batches int
			err = e.SeedCertificates(pcaCtx(), "t1", in, 25, pca.SeedOptions{Workers: 3, Batch: 10},
				func(ctx context.Context, recs []store.Record, q store.Quota) error {
					batches++
					return bs.BulkCreate(ctx, recs, q)
				})
			require.NoError(t, err)
			assert.Equal(t, 3, batches)
			last, err := e.IssueFromCSR(pcaCtx(), "t1", in)
			require.NoError(t, err)

			q, err := e.Quota(pcaCtx(), "t1", pca.QuotaTypeCertificate)
			require.NoError(t, err)
			assert.EqualValues(t, 27, q.Used)
			ids, total := listIDs(t, e, pca.CertQuery{Limit: 100})
			require.Len(t, ids, 27)
			assert.Equal(t, 27, total)
			assert.Equal(t, last, ids[0], "newest first")
			assert.Equal(t, issued, ids[26])

			want, err := e.GetCertificate(pcaCtx(), "t1", issued)
			require.NoError(t, err)
			caPEM, _, err := e.ExportCA(pcaCtx(), "t1", ca)
			require.NoError(t, err)
			b, _ := pem.Decode([]byte(caPEM))
			caCert, err := x509.ParseCertificate(b.Bytes)
			require.NoError(t, err)
			serials := map[string]bool{}
			for _, id := range ids[1:26] {
				got, err := e.GetCertificate(pcaCtx(), "t1", id)
				require.NoError(t, err)
				assert.NotEqual(t, want.SerialNumber, got.SerialNumber)
				assert.False(t, serials[got.SerialNumber], "serial %s twice", got.SerialNumber)
				serials[got.SerialNumber] = true
				cp := *got
				cp.ID, cp.SerialNumber = want.ID, want.SerialNumber
				cp.CreateTime, cp.NotBefore, cp.NotAfter = want.CreateTime, want.NotBefore, want.NotAfter
				assert.Equal(t, *want, cp, "seeded %s differs from an issued certificate", id)

				ex, err := e.ExportCertificate(pcaCtx(), "t1", id, pca.CertExport{})
				require.NoError(t, err)
				b, _ := pem.Decode([]byte(ex.Certificate))
				c, err := x509.ParseCertificate(b.Bytes)
				require.NoError(t, err)
				require.NoError(t, c.CheckSignatureFrom(caCert))
			}
			// A seeded certificate revokes and deletes like any other.
			require.NoError(t, e.RevokeCertificate(pcaCtx(), "t1", ids[5], "SUPERSEDED"))
			require.NoError(t, e.DeleteCertificate(pcaCtx(), "t1", ids[6]))
			_, total = listIDs(t, e, pca.CertQuery{})
			assert.Equal(t, 26, total)

			// With a stand-in key the records are the same but their
			// signatures are the stand-in's.
			standIn, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			require.NoError(t, e.SeedCertificates(pcaCtx(), "t1", in, 4, pca.SeedOptions{StandIn: standIn},
				func(ctx context.Context, recs []store.Record, q store.Quota) error {
					return bs.BulkCreate(ctx, recs, q)
				}))
			ids, total = listIDs(t, e, pca.CertQuery{Limit: 4})
			assert.Equal(t, 30, total)
			for _, id := range ids {
				got, err := e.GetCertificate(pcaCtx(), "t1", id)
				require.NoError(t, err)
				cp := *got
				cp.ID, cp.SerialNumber = want.ID, want.SerialNumber
				cp.CreateTime, cp.NotBefore, cp.NotAfter = want.CreateTime, want.NotBefore, want.NotAfter
				assert.Equal(t, *want, cp)
				ex, err := e.ExportCertificate(pcaCtx(), "t1", id, pca.CertExport{})
				require.NoError(t, err)
				b, _ := pem.Decode([]byte(ex.Certificate))
				c, err := x509.ParseCertificate(b.Bytes)
				require.NoError(t, err)
				assert.Equal(t, caCert.RawSubject, c.RawIssuer)
				assert.Equal(t, caCert.SubjectKeyId, c.AuthorityKeyId)
				assert.Error(t, c.CheckSignatureFrom(caCert))
				standInCA := *caCert
				standInCA.PublicKey = standIn.Public()
				assert.NoError(t, c.CheckSignatureFrom(&standInCA))
			}
		})
	}
}

// The default order of the certificate list (create_time, newest first)
// is paged from the store's creation index; it gives the pages that the
// general sort gives (the name filter takes the general path).
func TestPCACertificateListOrderPagedFromIndex(t *testing.T) {
	for _, backend := range pcaBackends {
		t.Run(backend, func(t *testing.T) {
			e, _, _ := newPCAEngine(t, backend)
			ca := mkRoot(t, e, "List Root")
			in := pca.CertFromCSR{IssuerID: ca, CSR: leafCSR(t, "list.example.com"),
				Validity: &pca.Validity{Type: "DAY", Value: 30}}
			for range 12 {
				_, err := e.IssueFromCSR(pcaCtx(), "t1", in)
				require.NoError(t, err)
			}
			for _, dir := range []string{"", "DESC", "ASC"} {
				for _, off := range []int{0, 1, 5, 11, 12, 20} {
					for _, lim := range []int{0, 1, 4, 100} {
						q := pca.CertQuery{SortKey: "create_time", SortDir: dir, Offset: off, Limit: lim}
						fast, ft := listIDs(t, e, q)
						q.Name = "list.example"
						general, gt := listIDs(t, e, q)
						assert.Equal(t, general, fast, "dir %q offset %d limit %d", dir, off, lim)
						assert.Equal(t, gt, ft)
						assert.Equal(t, 12, ft)
					}
				}
			}
		})
	}
}

// Certificate IDs are version-7 UUIDs: in the order of issuance, so that
// the stores' ID-ordered trees take new certificates side by side.
func TestCertificateIDsFollowIssuanceOrder(t *testing.T) {
	e, _, _ := newPCAEngine(t, "bolt")
	ca := mkRoot(t, e, "Order Root")
	in := pca.CertFromCSR{IssuerID: ca, CSR: leafCSR(t, "order.example.com"),
		Validity: &pca.Validity{Type: "DAY", Value: 30}}
	var ids []string
	for range 5 {
		id, err := e.IssueFromCSR(pcaCtx(), "t1", in)
		require.NoError(t, err)
		u, err := uuid.Parse(id)
		require.NoError(t, err)
		assert.Equal(t, uuid.Version(7), u.Version())
		assert.Len(t, id, 36)
		ids = append(ids, id)
	}
	assert.True(t, slices.IsSorted(ids), "%v", ids)
	c, err := e.GetCertificate(pcaCtx(), "t1", ids[0])
	require.NoError(t, err)
	assert.Equal(t, ids[0], c.ID)
}
