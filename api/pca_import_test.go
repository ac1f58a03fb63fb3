package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

type softCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newSoftCA(t *testing.T) *softCA {
	key := ecKey(t, elliptic.P256())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "Outside Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(3 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, _ := x509.ParseCertificate(der)
	return &softCA{key: key, cert: cert}
}

func (s *softCA) sign(t *testing.T, csrPEM string, isCA bool) string {
	b, _ := pem.Decode([]byte(csrPEM))
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature}
	if isCA {
		tmpl.MaxPathLen = 2
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, csr.PublicKey, s.key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func (s *softCA) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw}))
}

// A PENDING CA takes a certificate signed outside hsmca only if it
// certifies the CA's own key as a CA and chains to the given chain.
func TestPCAImportExternallySignedCertificate(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			ext := newSoftCA(t)
			ca := p.createPending("Imported Issuing CA")
			other := p.createPending("Another")
			csr := p.ok(p.do("GET", pcaCAs+"/"+ca+"/csr", nil), http.StatusOK)["csr"].(string)
			otherCSR := p.ok(p.do("GET", pcaCAs+"/"+other+"/csr", nil), http.StatusOK)["csr"].(string)
			good := ext.sign(t, csr, true)
			stranger := newSoftCA(t)

			for _, tc := range []struct {
				name string
				body map[string]any
				code string
			}{
				{"another CA's key", map[string]any{"certificate": ext.sign(t, otherCSR, true)}, "PCA.00020307"},
				{"not a CA certificate", map[string]any{"certificate": ext.sign(t, csr, false)}, "PCA.00020307"},
				{"chain does not verify", map[string]any{"certificate": good, "certificate_chain": stranger.pem()}, "PCA.00020307"},
				{"garbage", map[string]any{"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "PCA.00020307"},
				{"missing", map[string]any{}, "PCA.00020307"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					pcaFail(t, p.do("POST", pcaCAs+"/"+ca+"/import", tc.body), http.StatusBadRequest, tc.code)
				})
			}
			assert.Equal(t, "PENDING", p.showCA(ca)["status"])

			p.ok(p.do("POST", pcaCAs+"/"+ca+"/import", map[string]any{"certificate": good, "certificate_chain": ext.pem()}), http.StatusNoContent)
			pcaFail(t, p.do("POST", pcaCAs+"/"+ca+"/import", map[string]any{"certificate": good}), http.StatusBadRequest, "PCA.00020301")
			s := p.showCA(ca)
			assert.Equal(t, "ACTIVED", s["status"])
			assert.Equal(t, "IMPORT", s["gen_mode"])
			assert.Equal(t, float64(2), s["path_length"])
			assert.Equal(t, "Outside Root", s["issuer_name"])
			assert.Nil(t, s["issuer_id"])
			cert, chain := p.exportCA(ca)
			assert.Equal(t, good, cert)
			assert.Equal(t, ext.pem(), chain)

			// It issues, and the leaf chains to the outside root.
			leaf := p.issueLeaf(ca, "imported.example.com")
			ex := p.ok(p.do("POST", pcaCerts+"/"+leaf+"/export", nil), http.StatusOK)
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(ext.cert)
			inter.AddCert(pcaParseCert(t, good))
			_, err := pcaParseCert(t, ex["certificate"].(string)).Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			require.NoError(t, err)
			assert.Equal(t, good+ext.pem(), ex["certificate_chain"])
		})
	}
}

// Revoking a subordinate puts it on its issuer's CRL at once; a revoked
// CA issues nothing and can be deleted at once.
func TestPCARevokeSubordinate(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("Revoking Root", map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 30}})
			sub := p.createSub("Doomed", root, 0)
			before := pcaFetchCRL(t, p, root)
			assert.Empty(t, before.RevokedCertificateEntries)
			p.ok(p.do("POST", pcaCAs+"/"+sub+"/revoke", map[string]any{"reason": "CERTIFICATE_AUTHORITY_COMPROMISE"}), http.StatusNoContent)
			after := pcaFetchCRL(t, p, root)
			assert.Equal(t, 1, after.Number.Cmp(before.Number))
			subPEM, _ := p.exportCA(sub)
			require.Len(t, after.RevokedCertificateEntries, 1)
			assert.Equal(t, 0, after.RevokedCertificateEntries[0].SerialNumber.Cmp(pcaParseCert(t, subPEM).SerialNumber))
			assert.Equal(t, 2, after.RevokedCertificateEntries[0].ReasonCode)
			assert.Equal(t, "REVOKED", p.showCA(sub)["status"])
			pcaFail(t, p.do("POST", pcaCerts, map[string]any{"issuer_id": sub, "distinguished_name": map[string]any{"common_name": "x"},
				"validity": map[string]any{"type": "DAY", "value": 1}}), http.StatusBadRequest, "PCA.00020301")
			p.ok(p.do("DELETE", pcaCAs+"/"+sub, nil), http.StatusNoContent)
			pcaFail(t, p.do("GET", pcaCAs+"/"+sub, nil), http.StatusBadRequest, "PCA.10010002")
			// Its serial stays on the root's CRL.
			p.ok(p.do("POST", pcaCAs+"/"+root+"/crl/enable", map[string]any{"valid_days": 8}), http.StatusNoContent)
			assert.Len(t, pcaFetchCRL(t, p, root).RevokedCertificateEntries, 1)
		})
	}
}
