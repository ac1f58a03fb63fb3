package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
)

func intermediatePath(rootID string) string { return caPath + "/" + rootID + "/intermediate" }

// intermediate creates an intermediate under rootID and returns it.
func (f *dtsFixture) intermediate(rootID string, body any) map[string]any {
	f.t.Helper()
	r := f.do("POST", intermediatePath(rootID), body)
	require.Equal(f.t, http.StatusCreated, r.Status, string(r.Body))
	return r.Map(f.t)
}

// opensslFails runs openssl expecting a failure and returns its output.
func opensslFails(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	require.Error(t, err, "openssl %v: %s", args, out)
	return string(out)
}

func crlFrom(t *testing.T, env *apitest.Env, path string, issuer *x509.Certificate) *x509.RevocationList {
	t.Helper()
	r := env.Do("GET", path, "", nil)
	require.Equal(t, 200, r.Status, string(r.Body))
	assert.Equal(t, "application/pkix-crl", r.Header.Get("Content-Type"))
	crl, err := x509.ParseRevocationList(r.Body)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(issuer))
	return crl
}

// The intermediate routes as a MATTR VII client uses them: a root created
// with useIntermediateCa, an intermediate under it (MATTR's object and
// list shape), its update and deletion.
func TestDTSIntermediateRoundTrip(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			root := f.root(map[string]any{"organisationName": "Example Inc.", "country": "NZ", "useIntermediateCa": true})
			rootID := root["id"].(string)
			assert.Equal(t, true, root["useIntermediateCa"])
			assert.Equal(t, root, f.do("GET", caPath+"/"+rootID, nil).Map(t))
			plain := f.root(map[string]any{"organisationName": "Example Inc."})
			assert.Equal(t, false, plain["useIntermediateCa"])

			r := f.do("POST", intermediatePath(rootID), `{"usages": ["VICAL"]}`)
			require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
			m := r.Map(t)
			id := m["id"].(string)
			_, err := uuid.Parse(id)
			require.NoError(t, err)
			assert.Equal(t, intermediatePath(rootID)+"/"+id, r.Header.Get("Location"))
			assert.Equal(t, true, m["active"])
			assert.Equal(t, true, m["isManaged"])
			assert.Equal(t, rootID, m["caCertificateId"])
			assert.Equal(t, []any{"VICAL"}, m["usages"])
			cert := parsePEMCert(t, m["certificatePem"].(string))
			sum := sha256.Sum256(cert.Raw)
			assert.Equal(t, hex.EncodeToString(sum[:]), m["certificateFingerprint"])
			data := m["certificateData"].(map[string]any)
			assert.Equal(t, "t1 DTS Intermediate CA", data["commonName"])
			assert.Equal(t, "NZ", data["country"])
			assert.Equal(t, "Example Inc.", data["organisationName"])
			assert.Equal(t, cert.NotBefore.UTC().Format(time.RFC3339), data["notBefore"])
			assert.Equal(t, cert.NotAfter.UTC().Format(time.RFC3339), data["notAfter"])
			assert.Equal(t, 3, f.hsmKeys(), "two roots and the intermediate")
			assert.Equal(t, int64(1), f.quota(dts.QuotaIntermediates))

			assert.Equal(t, m, f.do("GET", intermediatePath(rootID)+"/"+id, nil).Map(t))
			list := f.do("GET", intermediatePath(rootID), nil).Map(t)
			assert.NotContains(t, list, "nextCursor")
			assert.Equal(t, []any{m}, list["data"])
			second := f.intermediate(rootID, nil)
			page := f.do("GET", intermediatePath(rootID)+"?limit=1", nil).Map(t)
			require.Len(t, page["data"], 1)
			require.NotEmpty(t, page["nextCursor"])
			page = f.do("GET", intermediatePath(rootID)+"?limit=1&cursor="+page["nextCursor"].(string), nil).Map(t)
			assert.Equal(t, second["id"], page["data"].([]any)[0].(map[string]any)["id"])
			assert.Empty(t, f.do("GET", intermediatePath(plain["id"].(string)), nil).Map(t)["data"])

			r = f.do("PUT", intermediatePath(rootID)+"/"+id, map[string]any{"active": false})
			require.Equal(t, 200, r.Status, string(r.Body))
			assert.Equal(t, false, r.Map(t)["active"])
			r = f.do("PUT", intermediatePath(rootID)+"/"+id, map[string]any{"active": true, "usages": []string{"VICAL"}})
			require.Equal(t, 200, r.Status, string(r.Body))
			assert.Equal(t, true, r.Map(t)["active"])
			d := envelope(t, f.do("PUT", intermediatePath(rootID)+"/"+id, map[string]any{}), 400, "BadRequest")
			assert.Equal(t, []string{"active"}, params(d))
			d = envelope(t, f.do("PUT", intermediatePath(rootID)+"/"+id, map[string]any{"usages": "VICAL"}), 400, "BadRequest")
			assert.Equal(t, []string{"usages"}, params(d))
			assert.Equal(t, "must be an array of strings", d[0]["msg"])
			d = envelope(t, f.do("PUT", intermediatePath(rootID)+"/"+id, map[string]any{"usages": []string{"VICAL", "RICAL"}}), 400, "BadRequest")
			assert.Equal(t, []string{"usages"}, params(d))
			assert.Equal(t, "RICAL", d[0]["value"], "the offending usage")
			d = envelope(t, f.do("GET", intermediatePath(rootID)+"/not-a-uuid", nil), 400, "BadRequest")
			assert.Equal(t, "intermediateId", d[0]["param"])
			assert.Equal(t, "path", d[0]["location"])
			envelope(t, f.do("GET", intermediatePath(plain["id"].(string))+"/"+id, nil), 404, "NotFound")

			r = f.do("DELETE", intermediatePath(rootID)+"/"+id, nil)
			require.Equal(t, http.StatusNoContent, r.Status, string(r.Body))
			envelope(t, f.do("GET", intermediatePath(rootID)+"/"+id, nil), 404, "NotFound")
			envelope(t, f.do("DELETE", intermediatePath(rootID)+"/"+id, nil), 404, "NotFound")
			assert.Equal(t, 3, f.hsmKeys(), "two roots and the second intermediate")
			assert.Equal(t, int64(1), f.quota(dts.QuotaIntermediates))
		})
	}
}

// The chain root -> intermediate -> VICAL signer built by the daemon
// verifies with crypto/x509 and with openssl, CRLs included, and the
// profile is the one documented.
func TestDTSIntermediateChainVerifies(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			root := f.root(map[string]any{"organisationName": "Example Inc.", "country": "NZ", "useIntermediateCa": true})
			rootID := root["id"].(string)
			m := f.intermediate(rootID, map[string]any{"commonName": "Example DTS Intermediate"})
			interID := m["id"].(string)

			// A root of the 3-tier model issues signers only through an
			// intermediate.
			d := envelope(t, f.do("POST", signerPath, map[string]any{"caId": rootID}), 400, "BadRequest")
			assert.Equal(t, []string{"intermediateCaId"}, params(d))

			r := f.do("POST", signerPath, map[string]any{"intermediateCaId": interID})
			require.Equal(t, 201, r.Status, string(r.Body))
			s := r.Map(t)
			sid := s["id"].(string)
			assert.Equal(t, rootID, s["caId"])
			assert.Equal(t, interID, s["intermediateCaId"])
			assert.Equal(t, m["certificatePem"].(string)+root["certificatePem"].(string), s["certificateChainPem"])
			assert.Equal(t, s, f.do("GET", signerPath+"/"+sid, nil).Map(t))

			rootCert := parsePEMCert(t, root["certificatePem"].(string))
			interCert := parsePEMCert(t, m["certificatePem"].(string))
			leaf := parsePEMCert(t, s["certificatePem"].(string))
			roots, inters := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(rootCert)
			inters.AddCert(interCert)
			chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			require.NoError(t, err)
			require.Len(t, chains, 1)
			require.Len(t, chains[0], 3)
			assert.Equal(t, interCert.Raw, chains[0][1].Raw)
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			assert.Error(t, err, "the signer is not the root's")

			rootPath := writeTemp(t, "root.pem", []byte(root["certificatePem"].(string)))
			interPath := writeTemp(t, "inter.pem", []byte(m["certificatePem"].(string)))
			leafPath := writeTemp(t, "signer.pem", []byte(s["certificatePem"].(string)))
			chainPath := writeTemp(t, "chain.pem", []byte(s["certificateChainPem"].(string)))
			assert.Contains(t, openssl(t, "verify", "-CAfile", rootPath, "-untrusted", interPath, leafPath), "OK")
			assert.Contains(t, openssl(t, "verify", "-CAfile", rootPath, "-untrusted", chainPath, leafPath), "OK")
			assert.Contains(t, opensslFails(t, "verify", "-CAfile", rootPath, leafPath), "unable to get local issuer certificate")

			text := openssl(t, "x509", "-in", rootPath, "-noout", "-text")
			assert.Regexp(t, `X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:1`, text)
			text = openssl(t, "x509", "-in", interPath, "-noout", "-text")
			assert.Contains(t, text, "Version: 3")
			assert.Contains(t, text, "Subject: C = NZ, O = Example Inc., CN = Example DTS Intermediate")
			assert.Contains(t, text, "Issuer: C = NZ, O = Example Inc., CN = t1 DTS CA")
			assert.Regexp(t, `X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0`, text)
			assert.Regexp(t, `X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign`, text)
			assert.Contains(t, text, "X509v3 Subject Key Identifier")
			assert.Contains(t, text, "X509v3 Authority Key Identifier")
			assert.Contains(t, text, "URI:"+testIAN)
			text = openssl(t, "x509", "-in", leafPath, "-noout", "-text")
			assert.Regexp(t, `X509v3 Key Usage: critical\s+Digital Signature`, text)
			assert.Contains(t, text, "URI:"+testIAN)

			// The signer signs; its signature verifies with its certificate.
			require.Equal(t, 200, f.do("PUT", signerPath+"/"+sid, map[string]any{"active": true}).Status)
			payload := []byte("VICAL payload")
			r = f.do("POST", signerPath+"/"+sid+"/sign", map[string]any{"payload": base64.StdEncoding.EncodeToString(payload)})
			require.Equal(t, 200, r.Status, string(r.Body))
			sig, err := base64.StdEncoding.DecodeString(r.Map(t)["signature"].(string))
			require.NoError(t, err)
			digest := sha256.Sum256(payload)
			assert.True(t, ecdsa.VerifyASN1(leaf.PublicKey.(*ecdsa.PublicKey), digest[:], sig))

			// Both CRLs are public and verify; with them openssl checks
			// revocation along the whole chain.
			interCRLPath := intermediatePath(rootID) + "/" + interID + "/revocation-list"
			rootCRLPath := caPath + "/" + rootID + "/revocation-list"
			crls := func() (string, string) {
				return writeTemp(t, "root.crl", pemCRL(crlFrom(t, f.env, rootCRLPath, rootCert))),
					writeTemp(t, "inter.crl", pemCRL(crlFrom(t, f.env, interCRLPath, interCert)))
			}
			rc, ic := crls()
			assert.Contains(t, openssl(t, "crl", "-in", ic, "-CAfile", interPath, "-noout"), "verify OK")
			assert.Contains(t, openssl(t, "verify", "-crl_check_all", "-CRLfile", rc, "-CRLfile", ic,
				"-CAfile", rootPath, "-untrusted", interPath, leafPath), "OK")

			require.Equal(t, 204, f.do("DELETE", signerPath+"/"+sid, nil).Status)
			rc, ic = crls()
			assert.Contains(t, opensslFails(t, "verify", "-crl_check_all", "-CRLfile", rc, "-CRLfile", ic,
				"-CAfile", rootPath, "-untrusted", interPath, leafPath), "certificate revoked")
			assert.Empty(t, crlFrom(t, f.env, rootCRLPath, rootCert).RevokedCertificateEntries)

			require.Equal(t, 204, f.do("DELETE", intermediatePath(rootID)+"/"+interID, nil).Status)
			crl := crlFrom(t, f.env, rootCRLPath, rootCert)
			require.Len(t, crl.RevokedCertificateEntries, 1)
			assert.Equal(t, 0, crl.RevokedCertificateEntries[0].SerialNumber.Cmp(interCert.SerialNumber))
			rc = writeTemp(t, "root2.crl", pemCRL(crl))
			assert.Contains(t, opensslFails(t, "verify", "-crl_check", "-CRLfile", rc, "-CAfile", rootPath, interPath),
				"certificate revoked")
			envelope(t, f.env.Do("GET", interCRLPath, "", nil), 404, "NotFound")
			assert.Equal(t, 1, f.hsmKeys(), "only the root's key is left")
		})
	}
}

func pemCRL(crl *x509.RevocationList) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
}

// Under an unmanaged root the operator uploads the intermediate and the
// signers' certificates, which must chain to it.
func TestDTSIntermediateUnmanaged(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend)
			rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "External IACA", Country: []string{"NZ"}},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true,
				MaxPathLen: 1, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
			der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
			require.NoError(t, err)
			rootCert, _ := x509.ParseCertificate(der)
			interTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "External Intermediate", Country: []string{"NZ"}},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(4, 0, 0), IsCA: true, BasicConstraintsValid: true,
				MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
			der, err = x509.CreateCertificate(rand.Reader, interTmpl, rootCert, &interKey.PublicKey, rootKey)
			require.NoError(t, err)
			interCert, _ := x509.ParseCertificate(der)
			pemOf := func(c *x509.Certificate) string {
				return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
			}

			root := f.root(map[string]any{"certificatePem": pemOf(rootCert), "useIntermediateCa": true})
			rootID := root["id"].(string)
			assert.Equal(t, true, root["useIntermediateCa"])
			assert.Equal(t, false, root["isManaged"])

			d := envelope(t, f.do("POST", intermediatePath(rootID), map[string]any{"usages": []string{"VICAL"}}), 400, "BadRequest")
			assert.Equal(t, []string{"certificatePem"}, params(d))
			d = envelope(t, f.do("POST", intermediatePath(rootID), map[string]any{"certificatePem": pemOf(rootCert)}), 400, "BadRequest")
			assert.Equal(t, []string{"certificatePem"}, params(d))

			m := f.intermediate(rootID, map[string]any{"certificatePem": pemOf(interCert), "usages": []string{"VICAL"}})
			assert.Equal(t, false, m["isManaged"])
			assert.Equal(t, pemOf(interCert), m["certificatePem"])
			assert.Equal(t, "External Intermediate", m["certificateData"].(map[string]any)["commonName"])
			assert.Equal(t, 0, f.hsmKeys())
			envelope(t, f.do("POST", intermediatePath(rootID), map[string]any{"certificatePem": pemOf(interCert)}), 409, "Conflict")
			d = envelope(t, f.env.Do("GET", intermediatePath(rootID)+"/"+m["id"].(string)+"/revocation-list", "", nil), 404, api.EcosystemCodeNoCRL)
			assert.Empty(t, d)

			r := f.do("POST", signerPath, map[string]any{"caId": rootID, "intermediateCaId": m["id"]})
			require.Equal(t, 201, r.Status, string(r.Body))
			s := r.Map(t)
			assert.NotContains(t, s, "certificatePem")
			assert.NotContains(t, s, "certificateChainPem")
			b, _ := pem.Decode([]byte(s["csrPem"].(string)))
			csr, err := x509.ParseCertificateRequest(b.Bytes)
			require.NoError(t, err)
			issue := func(parent *x509.Certificate, key *ecdsa.PrivateKey) string {
				tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject,
					NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, csr.PublicKey, key)
				require.NoError(t, err)
				return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
			}
			d = envelope(t, f.do("PUT", signerPath+"/"+s["id"].(string), map[string]any{"certificatePem": issue(rootCert, rootKey)}), 400, "BadRequest")
			assert.Contains(t, d[0]["msg"], "intermediate CA certificate")
			good := issue(interCert, interKey)
			r = f.do("PUT", signerPath+"/"+s["id"].(string), map[string]any{"certificatePem": good, "active": true})
			require.Equal(t, 200, r.Status, string(r.Body))
			s = r.Map(t)
			assert.Equal(t, pemOf(interCert)+pemOf(rootCert), s["certificateChainPem"])
			assert.Contains(t, openssl(t, "verify", "-CAfile", writeTemp(t, "root.pem", []byte(pemOf(rootCert))),
				"-untrusted", writeTemp(t, "chain.pem", []byte(s["certificateChainPem"].(string))),
				writeTemp(t, "leaf.pem", []byte(good))), "OK")
			require.Equal(t, 200, f.do("POST", signerPath+"/"+s["id"].(string)+"/sign", map[string]any{"payload": "eA=="}).Status)
		})
	}
}

// Refusals, tenant isolation, roles and the quota of the intermediate
// routes.
func TestDTSIntermediateRulesAndAccess(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newDTS(t, backend, apitest.Options{DTS: []dts.Option{dts.IssuerAltName(testIAN)},
				Engine: func(o *signer.Options) { o.Quotas = map[string]int64{dts.QuotaIntermediates: 2} }})
			plain := f.root(map[string]any{"organisationName": "Example Inc."})["id"].(string)
			d := envelope(t, f.do("POST", intermediatePath(plain), nil), 400, "BadRequest")
			assert.Equal(t, []string{"id"}, params(d))
			assert.Equal(t, "path", d[0]["location"])
			envelope(t, f.do("POST", intermediatePath(uuid.NewString()), nil), 404, "NotFound")
			envelope(t, f.do("GET", intermediatePath(uuid.NewString()), nil), 404, "NotFound")
			d = envelope(t, f.do("POST", intermediatePath("nope"), nil), 400, "BadRequest")
			assert.Equal(t, "path", d[0]["location"])

			rootID := f.root(map[string]any{"organisationName": "Example Inc.", "useIntermediateCa": true})["id"].(string)
			d = envelope(t, f.do("POST", intermediatePath(rootID), map[string]any{"usages": []string{}, "notAfter": "soon", "extra": 1}), 400, "BadRequest")
			assert.ElementsMatch(t, []string{"usages", "notAfter", "extra"}, params(d))
			d = envelope(t, f.do("POST", intermediatePath(rootID), map[string]any{"notAfter": time.Now().AddDate(25, 0, 0).Format(time.RFC3339)}), 400, "BadRequest")
			assert.Equal(t, []string{"notAfter"}, params(d))
			assert.Contains(t, d[0]["msg"], "root")
			d = envelope(t, f.do("POST", intermediatePath(rootID), map[string]any{"usages": "VICAL"}), 400, "BadRequest")
			assert.Equal(t, "must be an array of strings", d[0]["msg"])
			id := f.intermediate(rootID, nil)["id"].(string)
			f.intermediate(rootID, nil)
			r := f.do("POST", intermediatePath(rootID), nil)
			envelope(t, r, 409, "Conflict")
			assert.Contains(t, r.Map(t)["message"], "maximum")
			assert.Equal(t, 4, f.hsmKeys(), "two roots, two intermediates: the refused create left no key")

			d = envelope(t, f.do("POST", signerPath, map[string]any{"intermediateCaId": uuid.NewString()}), 404, "NotFound")
			assert.Equal(t, []string{"intermediateCaId"}, params(d))
			d = envelope(t, f.do("POST", signerPath, map[string]any{"caId": plain, "intermediateCaId": id}), 400, "BadRequest")
			assert.Equal(t, []string{"caId"}, params(d))

			// An inactive intermediate issues nothing; an inactive root
			// neither.
			require.Equal(t, 200, f.do("PUT", intermediatePath(rootID)+"/"+id, map[string]any{"active": false}).Status)
			envelope(t, f.do("POST", signerPath, map[string]any{"intermediateCaId": id}), 409, "Conflict")
			require.Equal(t, 200, f.do("PUT", intermediatePath(rootID)+"/"+id, map[string]any{"active": true}).Status)
			require.Equal(t, 200, f.do("PUT", caPath+"/"+rootID, map[string]any{"active": false}).Status)
			envelope(t, f.do("POST", signerPath, map[string]any{"intermediateCaId": id}), 409, "Conflict")
			require.Equal(t, 200, f.do("PUT", caPath+"/"+rootID, map[string]any{"active": true}).Status)

			// Another tenant sees nothing, exactly as if it did not exist.
			other := f.env.NewToken("t2", signer.RoleAdmin)
			missing := uuid.NewString()
			for _, method := range []string{"GET", "PUT", "DELETE"} {
				theirs := f.env.Do(method, intermediatePath(rootID)+"/"+id, other, map[string]any{"active": true})
				none := f.env.Do(method, intermediatePath(rootID)+"/"+missing, other, map[string]any{"active": true})
				envelope(t, theirs, 404, "NotFound")
				envelope(t, none, 404, "NotFound")
				assert.Equal(t, len(theirs.Body)-len(id), len(none.Body)-len(missing), method)
			}
			envelope(t, f.env.Do("GET", intermediatePath(rootID), other, nil), 404, "NotFound")
			envelope(t, f.env.Do("POST", intermediatePath(rootID), other, nil), 404, "NotFound")
			envelope(t, f.env.Do("POST", signerPath, other, map[string]any{"intermediateCaId": id}), 404, "NotFound")

			envelope(t, f.env.Do("GET", intermediatePath(rootID), "", nil), 401, "Unauthorized")
			wrongRole := f.env.NewToken("t1", signer.RoleSigner, signer.RoleCAOperator)
			envelope(t, f.env.Do("POST", intermediatePath(rootID), wrongRole, nil), 403, "Forbidden")
			envelope(t, f.env.Do("GET", intermediatePath(rootID)+"/"+id, wrongRole, nil), 403, "Forbidden")
			admin := f.env.NewToken("t1", signer.RoleAdmin)
			require.Equal(t, 200, f.env.Do("GET", intermediatePath(rootID)+"/"+id, admin, nil).Status)
			// The CRL needs no credential; only under its own root.
			require.Equal(t, 200, f.env.Do("GET", intermediatePath(rootID)+"/"+id+"/revocation-list", "", nil).Status)
			envelope(t, f.env.Do("GET", intermediatePath(plain)+"/"+id+"/revocation-list", "", nil), 404, "NotFound")
			envelope(t, f.env.Do("GET", intermediatePath(rootID)+"/x/revocation-list", "", nil), 404, "NotFound")

			// Deleting the root leaves its intermediates, listed and
			// deletable under its id, no longer issuing.
			require.Equal(t, 204, f.do("DELETE", caPath+"/"+rootID, nil).Status)
			list := f.do("GET", intermediatePath(rootID), nil).Map(t)
			assert.Len(t, list["data"], 2)
			envelope(t, f.do("POST", signerPath, map[string]any{"intermediateCaId": id}), 409, "Conflict")
			for _, x := range list["data"].([]any) {
				require.Equal(t, 204, f.do("DELETE", intermediatePath(rootID)+"/"+x.(map[string]any)["id"].(string), nil).Status)
			}
			envelope(t, f.do("GET", intermediatePath(rootID), nil), 404, "NotFound")
			assert.Equal(t, 1, f.hsmKeys())
			assert.Equal(t, int64(0), f.quota(dts.QuotaIntermediates))
		})
	}
}

func TestDTSIntermediateEvents(t *testing.T) {
	f := newDTS(t, "bolt")
	rootID := f.root(map[string]any{"organisationName": "Example Inc.", "useIntermediateCa": true})["id"].(string)
	id := f.intermediate(rootID, nil)["id"].(string)
	f.do("GET", intermediatePath(rootID), nil)
	f.do("GET", intermediatePath(rootID)+"/"+id, nil)
	f.do("GET", intermediatePath(rootID)+"/"+uuid.NewString(), nil)
	f.do("PUT", intermediatePath(rootID)+"/"+id, map[string]any{"active": true})
	f.do("DELETE", intermediatePath(rootID)+"/"+id, nil)
	for _, op := range []string{"CREATE", "RETRIEVE_LIST", "UPDATE", "DELETE"} {
		ev := "ECOSYSTEM_DTS_INTERMEDIATE_CA_CERTIFICATE_" + op
		assert.Equal(t, 1, counter(t, f.env, ev, "START"), ev)
		assert.Equal(t, 1, counter(t, f.env, ev, "SUCCESS"), ev)
		assert.Equal(t, 0, counter(t, f.env, ev, "FAIL"), ev)
	}
	assert.Equal(t, 2, counter(t, f.env, "ECOSYSTEM_DTS_INTERMEDIATE_CA_CERTIFICATE_RETRIEVE", "START"))
	assert.Equal(t, 1, counter(t, f.env, "ECOSYSTEM_DTS_INTERMEDIATE_CA_CERTIFICATE_RETRIEVE", "FAIL"))
	metrics := string(f.env.Do("GET", "/metrics", "", nil).Body)
	assert.Regexp(t, `hsmca_signing_duration_seconds_count\{key_algorithm="EC256",operation="dts_intermediate_certificate"\} 1`, metrics)

	evs, err := f.env.Engine.ListEvents(context.Background(), "t1", 0, 0)
	require.NoError(t, err)
	var created int
	for _, ev := range evs {
		if ev.Operation == "ECOSYSTEM_DTS_INTERMEDIATE_CA_CERTIFICATE_CREATE" && ev.Outcome == "SUCCESS" {
			created++
			assert.Equal(t, id, ev.Resource)
			assert.True(t, strings.HasPrefix(ev.Principal, "token:"))
		}
	}
	assert.Equal(t, 1, created)
}
