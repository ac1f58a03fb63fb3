package api_test

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

// The whole hierarchy through the API: a root, a PENDING subordinate
// activated with the public page's example body, a leaf with a daemon
// key, its export under a password, its revocation and the CRL.
func TestPCAChainActivationRevocationCRL(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("Test Root")
			sub := p.createPending("Test Issuing CA", map[string]any{
				"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}})

			s := p.showCA(sub)
			assert.Equal(t, "PENDING", s["status"])
			assert.Equal(t, "SUBORDINATE", s["type"])
			assert.Nil(t, s["not_after"])
			csr := p.ok(p.do("GET", pcaCAs+"/"+sub+"/csr", nil), http.StatusOK)["csr"].(string)
			b, _ := pem.Decode([]byte(csr))
			require.NotNil(t, b)
			req, err := x509.ParseCertificateRequest(b.Bytes)
			require.NoError(t, err)
			require.NoError(t, req.CheckSignature())
			assert.Equal(t, "Test Issuing CA", req.Subject.CommonName)

			// The seed's example body, with our ids.
			activate := map[string]any{"signature_algorithm": "SHA256",
				"validity": map[string]any{"type": "YEAR", "value": 1}, "path_length": 3, "issuer_id": root}
			p.ok(p.do("POST", pcaCAs+"/"+sub+"/activate", activate), http.StatusNoContent)
			msg := pcaFail(t, p.do("POST", pcaCAs+"/"+sub+"/activate", activate), http.StatusBadRequest, "PCA.00020301")
			assert.Contains(t, msg, "ACTIVED")
			pcaFail(t, p.do("GET", pcaCAs+"/"+sub+"/csr", nil), http.StatusBadRequest, "PCA.00020301")

			s = p.showCA(sub)
			assert.Equal(t, "ACTIVED", s["status"])
			assert.Equal(t, float64(3), s["path_length"])
			assert.Equal(t, root, s["issuer_id"])
			assert.Equal(t, "Test Root", s["issuer_name"])
			assert.Equal(t, "GENERATE", s["gen_mode"])
			assert.Equal(t, float64(0), s["freeze_flag"])
			nb, na := int64(s["not_before"].(float64)), int64(s["not_after"].(float64))
			assert.Equal(t, int64(372*24*3600*1000), na-nb, "YEAR = 12 months of 31 days")
			r := p.showCA(root)
			assert.Nil(t, r["path_length"], "a root's certificate sets no pathLenConstraint, and it reports none")
			assert.Equal(t, "ACTIVED", r["status"])
			assert.Equal(t, pcaFullDN("Test Root"), r["distinguished_name"])

			rootPEM, rootChain := p.exportCA(root)
			subPEM, subChain := p.exportCA(sub)
			assert.Equal(t, rootPEM, rootChain, "a root's chain is the root")
			assert.Equal(t, rootPEM, subChain)
			rootCert, subCert := pcaParseCert(t, rootPEM), pcaParseCert(t, subPEM)
			assert.True(t, rootCert.IsCA)
			assert.Equal(t, -1, rootCert.MaxPathLen, "root: no pathLen constraint")
			assert.Equal(t, 3, subCert.MaxPathLen)
			assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature, subCert.KeyUsage)
			assert.Equal(t, rootCert.SubjectKeyId, subCert.AuthorityKeyId)
			assert.NotEmpty(t, subCert.SubjectKeyId)
			assert.Equal(t, s["serial_number"], subCert.SerialNumber.Text(16))
			assert.LessOrEqual(t, len(subCert.SerialNumber.Bytes()), 20)
			assert.Positive(t, subCert.SerialNumber.Sign())

			leaf := p.issueLeaf(sub, "www.example.com", map[string]any{
				"subject_alternative_names": []map[string]any{{"type": "DNS", "value": "www.example.com"},
					{"type": "IP", "value": "192.0.2.7"}, {"type": "EMAIL", "value": "ops@example.com"},
					{"type": "URI", "value": "spiffe://example.com/web"}},
				"key_usages":         []string{"digitalSignature"},
				"extended_key_usage": map[string]any{"server_auth": true}})
			const password = "correct horse battery"
			ex := p.ok(p.do("POST", pcaCerts+"/"+leaf+"/export", map[string]any{"type": "NGINX", "is_compressed": "false", "password": password}), http.StatusOK)
			assert.Contains(t, ex["private_key"], "-----BEGIN ENCRYPTED PRIVATE KEY-----")
			ex = p.ok(p.do("POST", pcaCerts+"/"+leaf+"/export", map[string]any{"type": "OTHER", "is_compressed": "false", "password": password}), http.StatusOK)
			leafPEM, leafChain, keyPEM := ex["certificate"].(string), ex["certificate_chain"].(string), ex["private_key"].(string)
			assert.Equal(t, subPEM+rootPEM, leafChain)
			leafCert := pcaParseCert(t, leafPEM)
			assert.Equal(t, []string{"www.example.com"}, leafCert.DNSNames)
			assert.Equal(t, "192.0.2.7", leafCert.IPAddresses[0].String())
			assert.Equal(t, []string{"ops@example.com"}, leafCert.EmailAddresses)
			assert.Equal(t, "spiffe://example.com/web", leafCert.URIs[0].String())
			assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leafCert.ExtKeyUsage)
			assert.Equal(t, x509.KeyUsageDigitalSignature, leafCert.KeyUsage)
			assert.False(t, leafCert.IsCA)

			// Go's verifier and OpenSSL's agree the chain holds.
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(rootCert)
			inter.AddCert(subCert)
			_, err = leafCert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "www.example.com"})
			require.NoError(t, err)
			dir := t.TempDir()
			rootF := pcaWriteFile(t, dir, "root.pem", []byte(rootPEM))
			subF := pcaWriteFile(t, dir, "sub.pem", []byte(subPEM))
			leafF := pcaWriteFile(t, dir, "leaf.pem", []byte(leafPEM))
			out, err := pcaOpenSSL(t, "verify", "-CAfile", rootF, "-untrusted", subF, leafF)
			require.NoError(t, err, out)
			assert.Contains(t, out, "OK")

			// The password-protected key opens with OpenSSL and is the
			// certificate's key.
			keyF := pcaWriteFile(t, dir, "key.pem", []byte(keyPEM))
			out, err = pcaOpenSSL(t, "pkey", "-in", keyF, "-passin", "pass:"+password, "-pubout")
			require.NoError(t, err, out)
			spki, err := x509.MarshalPKIXPublicKey(leafCert.PublicKey)
			require.NoError(t, err)
			assert.Equal(t, strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))), out)
			out, err = pcaOpenSSL(t, "pkey", "-in", keyF, "-passin", "pass:wrong password", "-noout")
			assert.Error(t, err, "a wrong password must not open the key: %s", out)
			// Without a password: plain PKCS#8 that Go reads.
			ex = p.ok(p.do("POST", pcaCerts+"/"+leaf+"/export", map[string]any{"type": "APACHE"}), http.StatusOK)
			kb, _ := pem.Decode([]byte(ex["private_key"].(string)))
			require.NotNil(t, kb)
			assert.Equal(t, "PRIVATE KEY", kb.Type)
			k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
			require.NoError(t, err)
			assert.True(t, k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leafCert.PublicKey))

			// Revocation: the serial is on the next CRL, with its reason,
			// and the CRL number grows.
			crl1 := pcaFetchCRL(t, p, sub)
			p.ok(p.do("POST", pcaCerts+"/"+leaf+"/revoke", map[string]any{"reason": "KEY_COMPROMISE"}), http.StatusNoContent)
			pcaFail(t, p.do("POST", pcaCerts+"/"+leaf+"/revoke", map[string]any{"reason": "KEY_COMPROMISE"}), http.StatusBadRequest, "PCA.00020302")
			crl2 := pcaFetchCRL(t, p, sub)
			require.NoError(t, crl2.CheckSignatureFrom(subCert))
			assert.Equal(t, 1, crl2.Number.Cmp(crl1.Number), "CRL number grows: %v -> %v", crl1.Number, crl2.Number)
			require.Len(t, crl2.RevokedCertificateEntries, 1)
			assert.Equal(t, 0, crl2.RevokedCertificateEntries[0].SerialNumber.Cmp(leafCert.SerialNumber))
			assert.Equal(t, 1, crl2.RevokedCertificateEntries[0].ReasonCode)
			assert.WithinDuration(t, crl2.ThisUpdate.Add(7*24*time.Hour), crl2.NextUpdate, time.Second)
			crlF := pcaWriteFile(t, dir, "sub.crl", crl2.Raw)
			out, err = pcaOpenSSL(t, "crl", "-inform", "DER", "-in", crlF, "-CAfile", subF, "-noout")
			require.NoError(t, err, out)
			assert.Contains(t, out, "verify OK")
			out, err = pcaOpenSSL(t, "crl", "-inform", "DER", "-in", crlF, "-noout", "-text")
			require.NoError(t, err, out)
			assert.Contains(t, strings.ToUpper(out), strings.ToUpper(leafCert.SerialNumber.Text(16)))
			assert.Contains(t, out, "Key Compromise")
			// OpenSSL refuses the leaf once the CRL is checked.
			out, err = pcaOpenSSL(t, "verify", "-crl_check", "-CAfile", rootF, "-untrusted", subF, "-CRLfile", crlF, leafF)
			assert.Error(t, err, out)
			assert.Contains(t, out, "revoked")

			c := p.ok(p.do("GET", pcaCerts+"/"+leaf, nil), http.StatusOK)
			assert.Equal(t, "REVOKED", c["status"])
			assert.Equal(t, "KEY_COMPROMISE", c["revoke_reason"])
			// Deleting the revoked certificate keeps it on the CRL.
			p.ok(p.do("DELETE", pcaCerts+"/"+leaf, nil), http.StatusNoContent)
			pcaFail(t, p.do("GET", pcaCerts+"/"+leaf, nil), http.StatusBadRequest, "PCA.10010002")
			p.ok(p.do("POST", pcaCAs+"/"+sub+"/crl/disable", nil), http.StatusNoContent)
			pcaFail(t, p.Do("GET", pcaCAs+"/"+sub+"/crl", "", nil), http.StatusBadRequest, "PCA.00020308")
			p.ok(p.do("POST", pcaCAs+"/"+sub+"/crl/enable", map[string]any{"valid_days": 10}), http.StatusNoContent)
			crl3 := pcaFetchCRL(t, p, sub)
			assert.Equal(t, 1, crl3.Number.Cmp(crl2.Number))
			require.Len(t, crl3.RevokedCertificateEntries, 1)
			assert.WithinDuration(t, crl3.ThisUpdate.Add(10*24*time.Hour), crl3.NextUpdate, time.Second)
		})
	}
}

// pcaFetchCRL reads a CA's CRL without a credential, as relying parties do.
func pcaFetchCRL(t *testing.T, p *pcaEnv, ca string) *x509.RevocationList {
	t.Helper()
	r := p.Do("GET", pcaCAs+"/"+ca+"/crl", "", nil)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	assert.Equal(t, "application/pkix-crl", r.Header.Get("Content-Type"))
	crl, err := x509.ParseRevocationList(r.Body)
	require.NoError(t, err)
	require.NotNil(t, crl.Number)
	assert.Positive(t, crl.Number.Cmp(big.NewInt(0)))
	return crl
}
