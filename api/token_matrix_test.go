package api_test

import (
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
)

// TestTokenMatrixAPI runs the API against every token of the matrix
// (SoftHSM2 in-process, SoftHSM2 behind p11-kit, opencryptoki's soft
// token): native keys of every algorithm the token offers sign and
// openssl verifies them, the others answer 400 naming what is missing; a
// private CA hierarchy issues, revokes and publishes a CRL; a leaf key the
// daemon generates is sealed and exported; an APIG certificate is
// imported; and on the p11-kit row the daemon keeps serving after the
// server in front of the token is killed and started again.
func TestTokenMatrixAPI(t *testing.T) {
	testenv.ForEachToken(t, func(t *testing.T, tok testenv.TokenSpec) {
		p := newPCA(t, "bolt", apitest.Options{Spec: &tok, PublicBaseURL: apitest.SelfURL})
		offered := p.HSM.Capabilities().Algorithms()
		t.Logf("%s offers %v", tok.Name, offered)
		admin := p.NewToken("t1", signer.RoleAdmin)

		// Native keys.
		keyIDs := map[string]string{}
		for _, alg := range []string{"EC256", "EC384", "EC521", "RSA2048", "ED25519"} {
			if !slices.Contains(offered, hsm.Algorithm(alg)) {
				r := p.Do("POST", "/v1/keys", admin, map[string]any{"algorithm": alg, "label": "matrix " + alg})
				require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", alg, r.Body)
				assert.Contains(t, string(r.Body), "does not support "+alg)
				continue
			}
			k := createKey(t, p.Env, admin, alg)
			keyIDs[alg] = k.ID
			msg := []byte("matrix " + alg)
			// The algorithms the token can do (no PS256 without RSA-PSS).
			assert.Subset(t, keySigAlgs[alg], k.SigningAlgorithms)
			for _, sa := range k.SigningAlgorithms {
				r := p.Do("POST", "/v1/keys/"+k.ID+"/sign", admin, map[string]any{"algorithm": sa, "message": b64(msg)})
				require.Equal(t, http.StatusOK, r.Status, "%s %s: %s", alg, sa, r.Body)
				sig, err := base64.StdEncoding.DecodeString(r.Map(t)["signature"].(string))
				require.NoError(t, err)
				opensslVerify(t, k.PublicKeyPEM, sa, msg, sig)
			}
		}

		// A private CA hierarchy on RSA (every token has it), and on EC
		// where the token offers it.
		cas := []string{"RSA2048"}
		if slices.Contains(offered, hsm.EC256) {
			cas = append(cas, "EC256")
		}
		for _, alg := range cas {
			crl := map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}}
			root := p.createRoot("Matrix Root "+alg, map[string]any{"key_algorithm": alg}, crl)
			sub := p.createSub("Matrix Sub "+alg, root, 0, map[string]any{"key_algorithm": alg}, crl)
			var leaf string
			canSeal := p.HSM.SupportsFeature(hsm.FeatureWrap) == nil
			if canSeal {
				leaf = p.issueLeaf(sub, "matrix-"+alg+".example.com")
			} else {
				// No secret wrapping: a key made by hsmca is refused, a CSR works.
				r := p.do("POST", pcaCerts, map[string]any{"issuer_id": sub, "distinguished_name": map[string]any{"common_name": "x.example.com"},
					"validity": map[string]any{"type": "DAY", "value": 30}})
				pcaFail(t, r, http.StatusBadRequest, "PCA.00020001")
				leaf = p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": sub,
					"csr":      csrPEM(t, ecKey(t, elliptic.P256()), "matrix-"+alg+".example.com", "matrix-"+alg+".example.com"),
					"validity": map[string]any{"type": "DAY", "value": 30}}), http.StatusOK)["certificate_id"].(string)
			}
			ex := p.ok(p.do("POST", pcaCerts+"/"+leaf+"/export", map[string]any{"type": "OTHER"}), http.StatusOK)
			cert := pcaParseCert(t, ex["certificate"].(string))
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			rootPEM, _ := p.exportCA(root)
			roots.AddCert(pcaParseCert(t, rootPEM))
			subPEM, _ := p.exportCA(sub)
			subCert := pcaParseCert(t, subPEM)
			inter.AddCert(subCert)
			_, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			require.NoError(t, err, "%s: the leaf verifies to the root", alg)
			if canSeal {
				// The daemon's leaf key, sealed by the token, comes back.
				keyPEM, _ := ex["private_key"].(string)
				blk, _ := pem.Decode([]byte(keyPEM))
				require.NotNil(t, blk, "%s: exported private key", alg)
				key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
				require.NoError(t, err)
				assert.True(t, cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.(crypto.Signer).Public()),
					"%s: the exported key is the certificate's", alg)
			}

			p.ok(p.do("POST", pcaCerts+"/"+leaf+"/revoke", map[string]any{"reason": "KEY_COMPROMISE"}), http.StatusNoContent)
			list := pcaFetchCRL(t, p, sub)
			require.NoError(t, list.CheckSignatureFrom(subCert), "%s: the CRL is signed by its CA", alg)
			require.Len(t, list.RevokedCertificateEntries, 1)
			assert.Equal(t, cert.SerialNumber, list.RevokedCertificateEntries[0].SerialNumber)
		}

		// APIG import of an RSA certificate and key.
		f := &apigFixture{t: t, env: p.Env, o: newOSSL(t), tenant: "proj1", tok: p.NewToken("proj1", signer.RoleCAOperator)}
		if p.HSM.SupportsFeature(hsm.FeatureImport) == nil {
			got := f.create("matrix_cert", f.o.selfSigned("rsa", "matrix.example.com"))
			assert.Equal(t, "RSA", got["algorithm_type"])
		} else {
			r := f.do("POST", f.base(), certBody("matrix_cert", f.o.selfSigned("rsa", "matrix.example.com")))
			requireAPIGError(t, r, http.StatusBadRequest, "APIG.2012")
			assert.Contains(t, string(r.Body), "key import")
		}

		if tok.P11Kit == nil {
			return
		}
		// The server in front of the token goes away and comes back: the
		// daemon serves again, with the same keys, without a restart.
		id := keyIDs["EC256"]
		tok.P11Kit.Kill()
		r := p.Do("POST", "/v1/keys/"+id+"/sign", admin, map[string]any{"algorithm": "ES256", "message": b64([]byte("x"))})
		assert.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
		tok.P11Kit.Start()
		require.Eventually(t, func() bool {
			r := p.Do("POST", "/v1/keys/"+id+"/sign", admin, map[string]any{"algorithm": "ES256", "message": b64([]byte("x"))})
			return r.Status == http.StatusOK
		}, 30*time.Second, 100*time.Millisecond)
		p.issueLeaf(p.createRoot("After The Drop", map[string]any{"key_algorithm": "EC256"}), "after.example.com")
	})
}
