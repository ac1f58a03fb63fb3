package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/global"
	hwsigner "github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/signer"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/config"
	hwrequest "github.com/huaweicloud/huaweicloud-sdk-go-v3/core/request"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	apigv2 "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/apig/v2"
	apigmodel "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/apig/v2/model"
	ccmv1 "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1"
	ccmmodel "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
)

// sdkHTTP is the SDK's HTTP configuration for a loopback daemon: no
// retries, no proxy, a bounded timeout.
func sdkHTTP() *config.HttpConfig {
	return config.DefaultHttpConfig().WithTimeout(30 * time.Second)
}

// apigClient is the official APIG client with basic (project) credentials.
func apigClient(t *testing.T, endpoint, ak, sk, project string) *apigv2.ApigClient {
	t.Helper()
	cred, err := basic.NewCredentialsBuilder().WithAk(ak).WithSk(sk).WithProjectId(project).SafeBuild()
	require.NoError(t, err)
	hc, err := apigv2.ApigClientBuilder().WithEndpoints([]string{endpoint}).WithCredential(cred).
		WithHttpConfig(sdkHTTP()).SafeBuild()
	require.NoError(t, err)
	return apigv2.NewApigClient(hc)
}

// ccmClient is the official CCM client with global (domain) credentials,
// as CCM is a global service.
func ccmClient(t *testing.T, endpoint, ak, sk, domain string) *ccmv1.CcmClient {
	t.Helper()
	cred, err := global.NewCredentialsBuilder().WithAk(ak).WithSk(sk).WithDomainId(domain).SafeBuild()
	require.NoError(t, err)
	hc, err := ccmv1.CcmClientBuilder().WithEndpoints([]string{endpoint}).WithCredential(cred).
		WithHttpConfig(sdkHTTP()).SafeBuild()
	require.NoError(t, err)
	return ccmv1.NewCcmClient(hc)
}

// sdkStatus returns the status and error code of an SDK call's failure.
func sdkStatus(t *testing.T, err error) (int, string) {
	t.Helper()
	require.Error(t, err)
	var se *sdkerr.ServiceResponseError
	require.ErrorAs(t, err, &se, "%v", err)
	return se.StatusCode, se.ErrorCode
}

// signedRequest signs a request with the SDK's own signer, with the given
// X-Sdk-Date (zero: now), and returns it ready to send.
func signedRequest(t *testing.T, endpoint, method, path, ak, sk string, body any, date time.Time, query map[string]string, headers map[string]string) *http.Request {
	t.Helper()
	b := hwrequest.NewHttpRequestBuilder().WithEndpoint(endpoint).WithPath(path).WithMethod(method).
		AddHeaderParam("Content-Type", "application/json")
	for k, v := range query {
		b = b.AddQueryParam(k, reflect.ValueOf(v))
	}
	for k, v := range headers {
		b = b.AddHeaderParam(k, v)
	}
	if !date.IsZero() {
		b = b.AddHeaderParam("X-Sdk-Date", date.UTC().Format("20060102T150405Z"))
	}
	if body != nil {
		b = b.WithBody("application/json", body)
	}
	req := b.Build()
	add, err := hwsigner.Sign(req, ak, sk)
	require.NoError(t, err)
	for k, v := range add {
		req.AddHeaderParam(k, v)
	}
	hr, err := req.ConvertRequest()
	require.NoError(t, err)
	return hr
}

func send(t *testing.T, r *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

// TestAccessKeySignedRequestsFromTheOfficialSDK drives both Huawei
// families through the official Go SDK with nothing but an access key,
// secret key, project or domain id and an endpoint override.
func TestAccessKeySignedRequestsFromTheOfficialSDK(t *testing.T) {
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			ak, sk := env.NewAccessKey("acme", signer.RoleCAOperator)

			apigc := apigClient(t, env.Server.URL, ak, sk, "acme")
			list, err := apigc.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{})
			require.NoError(t, err)
			assert.EqualValues(t, 0, list.Total)

			ccmc := ccmClient(t, env.Server.URL, ak, sk, "acme")
			limit := int32(5)
			cas, err := ccmc.ListCertificateAuthority(&ccmmodel.ListCertificateAuthorityRequest{Limit: &limit})
			require.NoError(t, err)
			require.NotNil(t, cas.Total)
			assert.EqualValues(t, 0, *cas.Total)

			// A write with a JSON body: the body's hash is signed too.
			pathLen := int32(1)
			created, err := ccmc.CreateCertificateAuthority(&ccmmodel.CreateCertificateAuthorityRequest{
				Body: &ccmmodel.CreateCertificateAuthorityRequestBody{
					Type:               "ROOT",
					KeyAlgorithm:       "EC256",
					SignatureAlgorithm: ptr("SHA256"),
					PathLength:         &pathLen,
					DistinguishedName: &ccmmodel.DistinguishedName{CommonName: "SDK Root", Country: "CN",
						State: "GD", Locality: "SZ", Organization: "Acme", OrganizationalUnit: "PKI"},
					Validity: &ccmmodel.Validity{Type: "YEAR", Value: 5},
				}})
			require.NoError(t, err)
			require.NotNil(t, created.CaId)
			show, err := ccmc.ShowCertificateAuthority(&ccmmodel.ShowCertificateAuthorityRequest{CaId: *created.CaId})
			require.NoError(t, err)
			assert.Equal(t, "ACTIVED", *show.Status)

			// The same secret in another tenant's project is refused.
			other := apigClient(t, env.Server.URL, ak, sk, "other")
			status, code := sdkStatus(t, func() error { _, err := other.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{}); return err }())
			assert.Equal(t, http.StatusForbidden, status)
			assert.Equal(t, "APIG.1005", code)
			otherDomain := ccmClient(t, env.Server.URL, ak, sk, "other")
			status, code = sdkStatus(t, func() error {
				_, err := otherDomain.ListCertificateAuthority(&ccmmodel.ListCertificateAuthorityRequest{})
				return err
			}())
			assert.Equal(t, http.StatusForbidden, status)
			assert.Equal(t, "PCA.10010008", code)

			// A wrong secret key is a 401 in each family's envelope.
			bad := apigClient(t, env.Server.URL, ak, strings.Repeat("x", 40), "acme")
			status, code = sdkStatus(t, func() error { _, err := bad.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{}); return err }())
			assert.Equal(t, http.StatusUnauthorized, status)
			assert.Equal(t, "APIG.1002", code)
			badCCM := ccmClient(t, env.Server.URL, ak, strings.Repeat("x", 40), "acme")
			status, code = sdkStatus(t, func() error {
				_, err := badCCM.ListCertificateAuthority(&ccmmodel.ListCertificateAuthorityRequest{})
				return err
			}())
			assert.Equal(t, http.StatusUnauthorized, status)
			assert.Equal(t, "PCA.10010007", code)

			// Revocation takes effect on the next request.
			require.NoError(t, env.Engine.RevokeAccessKey(context.Background(), ak))
			status, _ = sdkStatus(t, func() error { _, err := apigc.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{}); return err }())
			assert.Equal(t, http.StatusUnauthorized, status)

			// The secret is in no log line and nowhere in the store.
			assert.NotContains(t, env.Logs.String(), sk)
			require.NoError(t, env.Engine.Close()) // flush, so the store holds everything
			assert.NotContains(t, rawStoreBytes(t, env), sk)
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestSignedRequestChecks covers what the daemon checks of a signature:
// the clock-skew window, the body, the signed headers, repeats, roles and
// the families that take signatures.
func TestSignedRequestChecks(t *testing.T) {
	env := apitest.New(t, "bolt")
	ak, sk := env.NewAccessKey("acme", signer.RoleCAOperator)
	roAK, roSK := env.NewAccessKey("acme", signer.RoleAuditor)
	url := env.Server.URL
	certs := "/v2/acme/apigw/certificates"
	proj := map[string]string{"X-Project-Id": "acme"}

	// Within 15 minutes either way the signature holds; beyond, 401.
	for _, off := range []time.Duration{-14 * time.Minute, 14 * time.Minute} {
		status, _ := send(t, signedRequest(t, url, "GET", certs, ak, sk, nil, time.Now().Add(off), nil, proj))
		assert.Equal(t, http.StatusOK, status, "skew %v", off)
	}
	for _, off := range []time.Duration{-16 * time.Minute, 16 * time.Minute} {
		status, body := send(t, signedRequest(t, url, "GET", certs, ak, sk, nil, time.Now().Add(off), nil, proj))
		assert.Equal(t, http.StatusUnauthorized, status, "skew %v", off)
		assert.Equal(t, "APIG.1002", body["error_code"])
		assert.Contains(t, body["error_msg"], "15 minutes")
	}

	// The same signed request twice in the same second: both accepted.
	now := time.Now()
	for range 2 {
		status, _ := send(t, signedRequest(t, url, "GET", certs, ak, sk, nil, now, map[string]string{"limit": "5", "name": "a b+c"}, proj))
		assert.Equal(t, http.StatusOK, status)
	}

	// A body other than the one signed is refused.
	r := signedRequest(t, url, "POST", "/v1/private-certificates/csr/parse", ak, sk, map[string]string{"csr": "x"}, time.Time{}, nil, nil)
	tampered := []byte(`{"csr":"y"}`)
	r.Body = io.NopCloser(bytes.NewReader(tampered))
	r.ContentLength = int64(len(tampered))
	status, body := send(t, r)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "PCA.10010007", body["error_code"])

	// A query parameter added after signing is refused.
	r = signedRequest(t, url, "GET", certs, ak, sk, nil, time.Time{}, nil, proj)
	r.URL.RawQuery = "limit=1"
	status, _ = send(t, r)
	assert.Equal(t, http.StatusUnauthorized, status)

	// A signature that leaves out X-Sdk-Date is refused: it would never expire.
	r = signedRequest(t, url, "GET", certs, ak, sk, nil, time.Time{}, nil, proj)
	auth := r.Header.Get("Authorization")
	r.Header.Set("Authorization", strings.Replace(auth, "x-sdk-date", "", 1))
	status, body = send(t, r)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.NotContains(t, body["error_msg"], sk)

	// An unknown key id and another algorithm: 401, saying why.
	status, _ = send(t, signedRequest(t, url, "GET", certs, "AAAAAAAAAAAAAAAAAAAA", sk, nil, time.Time{}, nil, proj))
	assert.Equal(t, http.StatusUnauthorized, status)
	r = signedRequest(t, url, "GET", certs, ak, sk, nil, time.Time{}, nil, proj)
	r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SDK-HMAC-SHA256", "SDK-HMAC-SM3", 1))
	status, body = send(t, r)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, body["error_msg"], "SDK-HMAC-SHA256")

	// Roles apply as for tokens: the CA routes want admin or ca-operator.
	status, body = send(t, signedRequest(t, url, "POST", "/v1/private-certificate-authorities", roAK, roSK,
		map[string]any{"type": "ROOT"}, time.Time{}, nil, nil))
	assert.Equal(t, http.StatusForbidden, status)
	assert.Equal(t, "PCA.10010008", body["error_code"])

	// Other families take tokens, not signatures.
	status, body = send(t, signedRequest(t, url, "GET", "/v1/keys", ak, sk, nil, time.Time{}, nil, nil))
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, body["message"], "Huawei")

	assert.NotContains(t, env.Logs.String(), sk)
	assert.NotContains(t, env.Logs.String(), roSK)
}

// TestAccessKeyRevokedOnEveryReplica: two daemons on one Redis and one
// token; a key revoked on one stops working on the other at once, though
// the other has its secret cached.
func TestAccessKeyRevokedOnEveryReplica(t *testing.T) {
	a := apitest.New(t, "redis")
	b := apitest.New(t, "redis", apitest.Options{Redis: a.Redis, Token: a.Token})
	ak, sk := a.NewAccessKey("acme", signer.RoleCAOperator)
	cb := apigClient(t, b.Server.URL, ak, sk, "acme")
	_, err := cb.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{})
	require.NoError(t, err, "replica b checks a key made on replica a")
	require.NoError(t, a.Engine.RevokeAccessKey(context.Background(), ak))
	status, code := sdkStatus(t, func() error { _, err := cb.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{}); return err }())
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, "APIG.1002", code)
}
