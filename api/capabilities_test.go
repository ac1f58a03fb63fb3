package api_test

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	apigmodel "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/apig/v2/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/apig"
	"github.com/hsmca/hsmca/signer/dts"
	"github.com/hsmca/hsmca/signer/keys"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
)

// limitedHSM is a SoftHSM2 token that says it lacks every EC and Edwards
// mechanism, as opencryptoki's soft token does, and any way to wrap
// secrets (neither AES-GCM nor AES-ECB for the fallback), and with noPSS
// RSA-PSS. Its Generate, Import and Wrap would still work: a refusal
// proves the family asked the token first.
type limitedHSM struct {
	signer.HSM
	noPSS bool
}

func (l *limitedHSM) Supports(alg hsm.Algorithm) error {
	switch {
	case alg == hsm.ED25519:
		return &hsm.UnsupportedError{Feature: string(alg), Reason: "no CKM_EC_EDWARDS_KEY_PAIR_GEN"}
	case strings.HasPrefix(string(alg), "EC"):
		return &hsm.UnsupportedError{Feature: string(alg), Reason: "no CKM_EC_KEY_PAIR_GEN"}
	}
	return l.HSM.Supports(alg)
}

func (l *limitedHSM) SupportsKey(pub crypto.PublicKey) error {
	if _, ok := pub.(*rsa.PublicKey); ok {
		return l.HSM.SupportsKey(pub)
	}
	return l.Supports(hsm.AlgorithmOf(pub))
}

func (l *limitedHSM) SupportsFeature(f string) error {
	switch {
	case f == hsm.FeatureWrap:
		return &hsm.UnsupportedError{Feature: f, Reason: "no CKM_AES_GCM, and no CKM_AES_ECB for AES-CTR with HMAC-SHA256"}
	case f == hsm.FeaturePSS && l.noPSS:
		return &hsm.UnsupportedError{Feature: f, Reason: "no CKM_RSA_PKCS_PSS"}
	}
	return l.HSM.SupportsFeature(f)
}

// limitedToken wraps the engine's HSM in a limitedHSM.
func limitedToken(noPSS bool) apitest.Options {
	return apitest.Options{Engine: func(o *signer.Options) { o.HSM = &limitedHSM{HSM: o.HSM, noPSS: noPSS} }}
}

// A token without EC and secret wrapping: in every family, what needs
// them is a 400 in the family's envelope naming the mechanism, answered
// before anything is written (no record, intent, HSM object or quota
// unit; a FAIL event), and what the token has still works.
func TestTokenLimitsInEachFamily(t *testing.T) {
	checkTokenLimits(t, limitedToken(false), false, false)
}

// The same on opencryptoki's soft token itself, which has no EC and no
// Ed25519 but wraps secrets (AES-CTR with an HMAC, having no AES-GCM)
// and signs RSA-PSS: EC256 is a 400 in every family, RSA2048 works, and
// so do generated PCA leaf keys and access keys.
func TestTokenLimitsOnOpenCryptoki(t *testing.T) {
	spec := testenv.NewTokenSpec(t, testenv.TokenOpenCryptoki)
	checkTokenLimits(t, apitest.Options{Spec: &spec}, true, spec.Shared)
}

// tokenLimits is one daemon on a token without EC, with a token of every
// tenant role and an administrator's certificate. wrap says whether the
// token can wrap secrets; shared, that other tests use the token too (its
// objects are not counted then).
type tokenLimits struct {
	*fixture
	tok          string
	wrap, shared bool
}

func checkTokenLimits(t *testing.T, opts apitest.Options, wrap, shared bool) {
	opts.DTS = []dts.Option{dts.IssuerAltName(testIAN)}
	f := &tokenLimits{fixture: newFixture(t, "bolt", opts), wrap: wrap, shared: shared}
	f.tok = f.env.NewToken("t1", signer.RoleAdmin, signer.RoleSigner, signer.RoleCAOperator, signer.RoleDTSProvider)
	t.Run("keys", f.keys)
	t.Run("pca", f.pca)
	t.Run("dts", f.dts)
	t.Run("apig", f.apig)
	t.Run("access keys", f.accessKeys)
}

// nothingWritten checks the store and the token hold what they held
// (keys: the HSM objects counted before), no intent is left, the quota
// of resource is unused and the event failed without succeeding.
func (f *tokenLimits) nothingWritten(t *testing.T, objects int, tenant, resource, event string) {
	t.Helper()
	ctx := context.Background()
	left, err := f.env.Store.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, left, "no intent")
	if !f.shared {
		assert.Equal(t, objects, f.objects(t), "no HSM object")
	}
	if resource != "" {
		n, err := f.env.Store.QuotaUsage(ctx, tenant, resource)
		require.NoError(t, err)
		assert.Zero(t, n, "no quota unit")
	}
	assert.Positive(t, counter(t, f.env, event, "FAIL"))
	assert.Zero(t, counter(t, f.env, event, "SUCCESS"))
}

// objects counts the token's key objects; -1 on a token other tests use.
func (f *tokenLimits) objects(t *testing.T) int {
	t.Helper()
	if f.shared {
		return -1
	}
	ks, err := f.env.HSM.List(context.Background())
	require.NoError(t, err)
	return len(ks)
}

// nativeRefusal checks a native 400 and returns its message and params.
func nativeRefusal(t *testing.T, r *apitest.Response) (string, []string) {
	t.Helper()
	d := envelope(t, r, http.StatusBadRequest, "BadRequest")
	return r.Map(t)["message"].(string), params(d)
}

func (f *tokenLimits) keys(t *testing.T) {
	n := f.objects(t)
	msg, ps := nativeRefusal(t, f.env.Do("POST", "/v1/keys", f.tok, map[string]any{"algorithm": "EC256"}))
	assert.Equal(t, "algorithm: the HSM token does not support EC256 (no CKM_EC_KEY_PAIR_GEN); it offers RSA2048, RSA3072, RSA4096", msg)
	assert.Equal(t, []string{"algorithm"}, ps)
	msg, _ = nativeRefusal(t, f.env.Do("POST", "/v1/keys", f.tok, map[string]any{"algorithm": "ED25519"}))
	assert.Contains(t, msg, "ED25519 (no CKM_EC_EDWARDS_KEY_PAIR_GEN)")
	// The list of allowed values leaves out what the token lacks.
	msg, _ = nativeRefusal(t, f.env.Do("POST", "/v1/keys", f.tok, map[string]any{"algorithm": "DSA1024"}))
	assert.Equal(t, "algorithm: must be one of RSA2048, RSA3072, RSA4096", msg)
	f.nothingWritten(t, n, "t1", keys.QuotaKeys, "KEY_CREATE")

	r := f.env.Do("POST", "/v1/keys", f.tok, map[string]any{"algorithm": "RSA2048"})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	var k keyJSON
	r.JSON(t, &k)
	assert.Equal(t, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, k.SigningAlgorithms)
	digest := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, alg := range []string{"RS256", "PS256"} {
		r = f.env.Do("POST", "/v1/keys/"+k.ID+"/sign", f.tok, map[string]any{"digest": digest, "algorithm": alg})
		assert.Equal(t, http.StatusOK, r.Status, "%s: %s", alg, r.Body)
	}
}

func (f *tokenLimits) pca(t *testing.T) {
	n := f.objects(t)
	do := func(method, path string, body any) *apitest.Response {
		return f.env.Do(method, path, "", body, "X-Auth-Token", f.tok)
	}
	root := map[string]any{"type": "ROOT", "distinguished_name": pcaFullDN("EC root"), "key_algorithm": "EC256",
		"signature_algorithm": "SHA256", "validity": pcaYears(5)}
	msg := pcaFail(t, do("POST", pcaCAs, root), http.StatusBadRequest, api.PCACodeBadKeyAlg)
	assert.Equal(t, "key_algorithm: the HSM token does not support EC256 (no CKM_EC_KEY_PAIR_GEN); it offers RSA2048, RSA3072 or RSA4096", msg)
	root["key_algorithm"] = "SM2"
	msg = pcaFail(t, do("POST", pcaCAs, root), http.StatusBadRequest, api.PCACodeBadKeyAlg)
	assert.Equal(t, "key_algorithm: must be RSA2048, RSA3072 or RSA4096", msg)
	f.nothingWritten(t, n, "t1", pcasvc.QuotaCAs, "PCA_CA_CREATE")
	page, err := f.env.Store.List(context.Background(), store.Query{Kind: pcasvc.RecordIndex, Tenant: store.PlatformTenant})
	require.NoError(t, err)
	assert.Empty(t, page.Records, "no CA index record")

	root["key_algorithm"] = "RSA2048"
	r := do("POST", pcaCAs, root)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	ca := r.Map(t)["ca_id"].(string)

	// A key made here (in software: EC256 whatever the token) is kept
	// sealed by the token: refused by a token that cannot wrap secrets; a
	// CSR's key needs no sealing and is certified by the RSA CA.
	leaf := map[string]any{"issuer_id": ca, "key_algorithm": "EC256", "distinguished_name": map[string]any{"common_name": "a.example"},
		"validity": map[string]any{"type": "DAY", "value": 30}, "subject_alternative_names": []map[string]any{{"type": "DNS", "value": "a.example"}}}
	if f.wrap {
		r = do("POST", pcaCerts, leaf)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		id := r.Map(t)["certificate_id"].(string)
		r = do("POST", pcaCerts+"/"+id+"/export", map[string]any{"type": "OTHER", "is_compressed": "false"})
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		assert.Contains(t, r.Map(t)["private_key"], "PRIVATE KEY", "the sealed key opens")
	} else {
		msg = pcaFail(t, do("POST", pcaCerts, leaf), http.StatusBadRequest, api.PCACodeBadParameter)
		assert.Contains(t, msg, "the HSM token does not support secret wrapping (no CKM_AES_GCM, and no CKM_AES_ECB for AES-CTR with HMAC-SHA256)")
		assert.Contains(t, msg, "/v1/private-certificates/csr")
		f.nothingWritten(t, n+1, "t1", pcasvc.QuotaCertificates, "PCA_CERTIFICATE_ISSUE")
	}
	r = do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": ca, "validity": map[string]any{"type": "DAY", "value": 1},
		"csr": csrPEM(t, ecKey(t, elliptic.P256()), "b.example", "b.example")})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	// The OCSP responder's key is the CA key's algorithm: RSA2048.
	r = do("POST", pcaCAs+"/"+ca+"/ocsp/switch", map[string]any{"ocsp_switch": true})
	require.Equal(t, http.StatusNoContent, r.Status, string(r.Body))
}

func (f *tokenLimits) dts(t *testing.T) {
	n := f.objects(t)
	msg, ps := nativeRefusal(t, f.env.Do("POST", caPath, f.tok, map[string]any{"organisationName": "Acme"}))
	assert.Equal(t, "the HSM token does not support EC256 (no CKM_EC_KEY_PAIR_GEN); a managed DTS root CA has a P-256 key in the HSM; "+
		"register a root made elsewhere (certificatePem) instead", msg)
	assert.Empty(t, ps, "no field is at fault")
	f.nothingWritten(t, n, "t1", dts.QuotaRoots, "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE")

	// A root made elsewhere is registered; a VICAL signer's key is the
	// HSM's, P-256 too.
	r := f.env.Do("POST", caPath, f.tok, map[string]any{"certificatePem": string(testpki.NewCA(t, "External IACA").PEM())})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	msg, _ = nativeRefusal(t, f.env.Do("POST", signerPath, f.tok, map[string]any{"caId": r.Map(t)["id"]}))
	assert.Contains(t, msg, "EC256 (no CKM_EC_KEY_PAIR_GEN); a VICAL signer has a P-256 key in the HSM")
	f.nothingWritten(t, n, "t1", dts.QuotaSigners, "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_CREATE")
}

func (f *tokenLimits) apig(t *testing.T) {
	n := f.objects(t)
	o := newOSSL(t)
	base := "/v2/t1/apigw/certificates"
	do := func(method, path string, body any) *apitest.Response {
		return f.env.Do(method, path, "", body, "X-Auth-Token", f.tok)
	}
	r := do("POST", base, certBody("ec_cert", o.selfSigned("ec", "ec.example")))
	requireAPIGError(t, r, http.StatusBadRequest, api.APIGCodeBadValue)
	assert.Equal(t, "private_key: the HSM token does not support EC256 (no CKM_EC_KEY_PAIR_GEN)", r.Map(t)["error_msg"])
	f.nothingWritten(t, n, "t1", apig.QuotaCertificates, "APIG_CERTIFICATE_CREATE")

	r = do("POST", base, certBody("rsa_cert", o.selfSigned("rsa", "rsa.example")))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	id := r.Map(t)["id"].(string)
	// Replacing its key by an EC one is refused the same way; the RSA key
	// stays.
	r = do("PUT", base+"/"+id, certBody("rsa_cert", o.selfSigned("ec", "rsa.example")))
	requireAPIGError(t, r, http.StatusBadRequest, api.APIGCodeBadValue)
	if !f.shared {
		assert.Equal(t, n+1, f.objects(t))
	}
}

func (f *tokenLimits) accessKeys(t *testing.T) {
	body := map[string]any{"tenant": "acme", "roles": []string{"ca-operator"}}
	if f.wrap {
		// The secret key is sealed, and opened to check a signed request.
		r := f.doAs(f.super, "POST", "/v1/access-keys", body)
		require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
		created := r.Map(t)
		c := apigClient(t, f.env.Server.URL, created["access_key"].(string), created["secret_key"].(string), "acme")
		_, err := c.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{})
		require.NoError(t, err)
		return
	}
	msg, ps := nativeRefusal(t, f.doAs(f.super, "POST", "/v1/access-keys", body))
	assert.Equal(t, "the HSM token does not support secret wrapping (no CKM_AES_GCM, and no CKM_AES_ECB for AES-CTR with HMAC-SHA256); it cannot keep an access key's secret; "+
		"use an API token or an OAuth client instead", msg)
	assert.Empty(t, ps)
	r := f.doAs(f.admin, "GET", "/v1/access-keys", nil)
	require.Equal(t, http.StatusOK, r.Status)
	assert.Contains(t, string(r.Body), `"data":[]`)
	assert.Zero(t, counter(t, f.env, "ACCESS_KEY_CREATE", "SUCCESS"))
	// OAuth clients keep a hash, not a sealed secret: they work.
	r = f.doAs(f.super, "POST", "/v1/oauth-clients", body)
	assert.Equal(t, http.StatusCreated, r.Status, string(r.Body))
}

// A token without RSA-PSS: PS* is refused on the algorithm field and
// left out of the key's signing algorithms; RS* signs.
func TestTokenWithoutPSS(t *testing.T) {
	env := apitest.New(t, "bolt", limitedToken(true))
	tok := env.NewToken("t1", signer.RoleAdmin)
	r := env.Do("POST", "/v1/keys", tok, map[string]any{"algorithm": "RSA2048"})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	var k keyJSON
	r.JSON(t, &k)
	assert.Equal(t, []string{"RS256", "RS384", "RS512"}, k.SigningAlgorithms)
	digest := base64.StdEncoding.EncodeToString(make([]byte, 32))
	msg, ps := nativeRefusal(t, env.Do("POST", "/v1/keys/"+k.ID+"/sign", tok, map[string]any{"digest": digest, "algorithm": "PS256"}))
	assert.Equal(t, "algorithm: the HSM token does not support RSA-PSS (no CKM_RSA_PKCS_PSS); this key signs with RS256, RS384, RS512", msg)
	assert.Equal(t, []string{"algorithm"}, ps)
	r = env.Do("POST", "/v1/keys/"+k.ID+"/sign", tok, map[string]any{"digest": digest, "algorithm": "RS256"})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
}
