package api_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
)

// storeWrites is how many record writes and event appends the daemon has
// made, from its store operation histogram.
func storeWrites(t *testing.T, env *apitest.Env) uint64 {
	t.Helper()
	fams, err := env.Metrics.Registry.Gather()
	require.NoError(t, err)
	var n uint64
	for _, f := range fams {
		if f.GetName() != "hsmca_store_operation_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch {
				case l.GetName() != "operation":
				case l.GetValue() == "create", l.GetValue() == "update", l.GetValue() == "delete", l.GetValue() == "append_events":
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return n
}

func tenantEvents(t *testing.T, env *apitest.Env) int {
	t.Helper()
	evs, err := env.Store.ListEvents(context.Background(), "t1", 0, 0)
	require.NoError(t, err)
	return len(evs)
}

// signCAUsage signs a CA CSR with the outside CA, with exactly ku.
func (s *softCA) signCAUsage(t *testing.T, csrPEM string, ku x509.KeyUsage) string {
	b, _ := pem.Decode([]byte(csrPEM))
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1, KeyUsage: ku}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, csr.PublicKey, s.key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// A CA certificate with keyCertSign but without cRLSign gets no CRL: its
// import is refused while the CA's CRL is on, enabling the CRL of one
// imported with the CRL off is refused, and one imported by an earlier
// version with its CRL on answers 200 anonymous CRL fetches with the
// family's "no CRL" answer, without a 500, an event record, a store write
// or an ERROR line.
func TestPCAAnonymousCRLFetchesOfACAThatCannotSignCRLs(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			ext := newSoftCA(t)
			on := p.createPending("CRL On", map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}})
			csr := p.ok(p.do("GET", pcaCAs+"/"+on+"/csr", nil), http.StatusOK)["csr"].(string)
			msg := pcaFail(t, p.do("POST", pcaCAs+"/"+on+"/import",
				map[string]any{"certificate": ext.signCAUsage(t, csr, x509.KeyUsageCertSign)}), http.StatusBadRequest, "PCA.00020307")
			assert.Contains(t, msg, "cRLSign")
			assert.Equal(t, "PENDING", p.showCA(on)["status"])

			ca := p.createPending("CRL Off")
			csr = p.ok(p.do("GET", pcaCAs+"/"+ca+"/csr", nil), http.StatusOK)["csr"].(string)
			p.ok(p.do("POST", pcaCAs+"/"+ca+"/import",
				map[string]any{"certificate": ext.signCAUsage(t, csr, x509.KeyUsageCertSign)}), http.StatusNoContent)
			msg = pcaFail(t, p.do("POST", pcaCAs+"/"+ca+"/crl/enable", map[string]any{"valid_days": 7}),
				http.StatusBadRequest, "PCA.00020312")
			assert.Contains(t, msg, "cRLSign")
			assert.Equal(t, false, p.showCA(ca)["crl_configuration"].(map[string]any)["enabled"])

			// As an earlier version left such a CA: CRL on.
			ctx := context.Background()
			rec, err := p.Store.Get(ctx, "pca_ca", "t1", ca)
			require.NoError(t, err)
			var doc map[string]any
			require.NoError(t, json.Unmarshal(rec.Data, &doc))
			doc["crl_configuration"] = map[string]any{"enabled": true, "valid_days": 7}
			rec.Data, _ = json.Marshal(doc)
			require.NoError(t, p.Store.Update(ctx, rec, store.WriteOpts{}))
			version := rec.Version

			writes, events, logged := storeWrites(t, p.Env), tenantEvents(t, p.Env), len(p.Logs.String())
			for i := 0; i < 200; i++ {
				r := p.Do("GET", pcaCAs+"/"+ca+"/crl", "", nil)
				require.Equal(t, http.StatusBadRequest, r.Status, "fetch %d: %s", i, r.Body)
				require.Equal(t, "PCA.00020308", r.Map(t)["error_code"])
			}
			assert.Equal(t, writes, storeWrites(t, p.Env), "anonymous fetches write nothing")
			assert.Equal(t, events, tenantEvents(t, p.Env), "anonymous fetches add no event record")
			rec, err = p.Store.Get(ctx, "pca_ca", "t1", ca)
			require.NoError(t, err)
			assert.Equal(t, version, rec.Version, "the CA record (and its CRL number) is untouched")
			assert.NotContains(t, p.Logs.String()[logged:], `"level":"ERROR"`)
		})
	}
}

// Deleting a certificate that is still valid revokes it first: it is on
// its issuer's CRL with reason cessationOfOperation, and its quota unit is
// back. The answer stays 204.
func TestPCADeleteOfAnIssuedCertificateRevokesIt(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("Deleting Root", map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}})
			leaf := p.issueLeaf(root, "deleted.example.com")
			serial, ok := new(big.Int).SetString(p.ok(p.do("GET", pcaCerts+"/"+leaf, nil), http.StatusOK)["serial_number"].(string), 16)
			require.True(t, ok)
			before := pcaFetchCRL(t, p, root)
			assert.Empty(t, before.RevokedCertificateEntries)

			p.ok(p.do("DELETE", pcaCerts+"/"+leaf, nil), http.StatusNoContent)
			pcaFail(t, p.do("GET", pcaCerts+"/"+leaf, nil), http.StatusBadRequest, "PCA.10010002")
			n, err := p.Store.QuotaUsage(context.Background(), "t1", pcasvc.QuotaCertificates)
			require.NoError(t, err)
			assert.Zero(t, n)

			after := pcaFetchCRL(t, p, root)
			assert.Equal(t, 1, after.Number.Cmp(before.Number))
			require.Len(t, after.RevokedCertificateEntries, 1)
			assert.Equal(t, 0, after.RevokedCertificateEntries[0].SerialNumber.Cmp(serial))
			assert.Equal(t, 5, after.RevokedCertificateEntries[0].ReasonCode)
		})
	}
}

// A managed DTS root's CRL is signed when the root is created; fetching
// it, 200 times and without a credential, serves those bytes and writes
// nothing.
func TestDTSRootCRLFetchesWriteNothing(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			root := f.root(map[string]any{"organisationName": "Read Only"})
			b, _ := pem.Decode([]byte(root["certificatePem"].(string)))
			rootCert, err := x509.ParseCertificate(b.Bytes)
			require.NoError(t, err)

			writes, events := storeWrites(t, f.env), tenantEvents(t, f.env)
			first := fetchCRL(t, f.env, root["id"].(string), rootCert)
			assert.Equal(t, int64(1), first.Number.Int64())
			for i := 0; i < 199; i++ {
				r := f.env.Do("GET", caPath+"/"+root["id"].(string)+"/revocation-list", "", nil)
				require.Equal(t, http.StatusOK, r.Status)
				require.Equal(t, first.Raw, r.Body)
			}
			assert.Equal(t, writes, storeWrites(t, f.env), "anonymous fetches write nothing")
			assert.Equal(t, events, tenantEvents(t, f.env))
		})
	}
}
