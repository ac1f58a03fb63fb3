package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

// TestPCADisableReachesEveryReplica: two daemons share Redis and the HSM
// token; a CA disabled through one stops issuing through the other on the
// next request, although the other has the CA's certificate and signer
// cached from an earlier issuance.
func TestPCADisableReachesEveryReplica(t *testing.T) {
	a := newPCA(t, "redis")
	b := &pcaEnv{Env: apitest.New(t, "redis", apitest.Options{Token: a.Token, Redis: a.Redis}), t: t, tok: a.tok}
	root := a.createRoot("Replica Root")
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "r.example.com"}}, k)
	require.NoError(t, err)
	body := map[string]any{"issuer_id": root, "validity": map[string]any{"type": "DAY", "value": 30},
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
	b.ok(b.do("POST", pcaCerts+"/csr", body), http.StatusOK)

	a.ok(a.do("POST", pcaCAs+"/"+root+"/disable", nil), http.StatusNoContent)
	pcaFail(t, b.do("POST", pcaCerts+"/csr", body), http.StatusBadRequest, "PCA.00020301")
	a.ok(a.do("POST", pcaCAs+"/"+root+"/enable", nil), http.StatusNoContent)
	b.ok(b.do("POST", pcaCerts+"/csr", body), http.StatusOK)

	// b issues through a CA it knows without reading the CA first; the
	// certificate is stored only while the CA record is unchanged. The CA
	// disabled through a: b's next issuance signs, finds the CA changed
	// at the store, drops that certificate, reads the CA and refuses.
	a.ok(a.do("POST", pcaCAs+"/"+root+"/disable", nil), http.StatusNoContent)
	pcaFail(t, b.do("POST", pcaCerts+"/csr", body), http.StatusBadRequest, "PCA.00020301")
	requireStoredCerts(t, a.Env, 2)
	require.Equal(t, []string{"SUCCESS", "FAIL", "SUCCESS", "FAIL"}, outcomes(t, a.Env, "t1", "PCA_CERTIFICATE_ISSUE_CSR"),
		"one record per answer")
}
