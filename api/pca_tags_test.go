package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	ccmv1 "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

// ccm is the official CCM client of the test daemon with an access key
// of the pcaEnv's tenant (global credentials, the tenant as domain id).
func (p *pcaEnv) ccm() *ccmv1.CcmClient {
	p.t.Helper()
	ak, sk := p.NewAccessKey("t1", "ca-operator")
	return ccmClient(p.t, p.Server.URL, ak, sk, "t1")
}

func sdkTags(kv ...string) []model.ResourceTag {
	var out []model.ResourceTag
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, model.ResourceTag{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// The tag routes of CAs and certificates through the official SDK's own
// client (AK/SK-signed, DELETE bodies included) and models: every answer
// decodes with its fields filled.
func TestPCATagsThroughSDK(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			cli := p.ccm()
			root := p.createRoot("SDK Tag Root")
			sub := p.createSub("SDK Tag Sub", root, 0)
			leaf := p.issueLeaf(sub, "sdk-tag.example.com")
			plain := p.issueLeaf(sub, "plain.example.com")

			// CAs.
			bc, err := cli.BatchCreateCaTags(&model.BatchCreateCaTagsRequest{CaId: root,
				Body: &model.BatchOperateTagRequestBody{Tags: sdkTags("env", "prod", "owner", "pki team")}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, bc.HttpStatusCode)
			_, err = cli.CreateCaTag(&model.CreateCaTagRequest{CaId: sub,
				Body: &model.ResourceTagRequestBody{Tag: &model.ResourceTag{Key: "env", Value: "dev"}}})
			require.NoError(t, err)
			lt, err := cli.ListCaTags(&model.ListCaTagsRequest{CaId: root})
			require.NoError(t, err)
			require.NotNil(t, lt.Tags)
			assert.Equal(t, sdkTags("env", "prod", "owner", "pki team"), *lt.Tags)
			dt, err := cli.ListDomainCaTags(&model.ListDomainCaTagsRequest{})
			require.NoError(t, err)
			require.NotNil(t, dt.Tags)
			assert.Equal(t, []model.DomainTags{{Key: "env", Values: []string{"dev", "prod"}},
				{Key: "owner", Values: []string{"pki team"}}}, *dt.Tags)
			fr, err := cli.ListCaResourceInstances(&model.ListCaResourceInstancesRequest{Body: &model.ListResourceInstancesRequestBody{
				Tags: &[]model.DomainTags{{Key: "env", Values: []string{"prod", "dev"}}}, Limit: ptr[int32](10), Offset: ptr[int32](0)}})
			require.NoError(t, err)
			require.NotNil(t, fr.TotalCount)
			assert.Equal(t, int32(2), *fr.TotalCount)
			require.NotNil(t, fr.Resources)
			require.Len(t, *fr.Resources, 2)
			first := (*fr.Resources)[0]
			require.NotNil(t, first.ResourceId)
			assert.Equal(t, sub, *first.ResourceId, "newest first")
			require.NotNil(t, first.ResourceName)
			assert.Equal(t, "SDK Tag Sub", *first.ResourceName)
			require.NotNil(t, first.Tags)
			assert.Equal(t, sdkTags("env", "dev"), *first.Tags)
			require.NotNil(t, first.ResourceDetail)
			detail, ok := (*first.ResourceDetail).(map[string]any)
			require.True(t, ok, "resource_detail is the CA as shown: %#v", *first.ResourceDetail)
			assert.Equal(t, sub, detail["ca_id"])
			assert.Equal(t, "ACTIVED", detail["status"])
			cr, err := cli.CountCaResourceInstances(&model.CountCaResourceInstancesRequest{Body: &model.ListResourceInstancesRequestBody{
				Matches: &[]model.ResourceTag{{Key: "resource_name", Value: "sdk tag"}}}})
			require.NoError(t, err)
			require.NotNil(t, cr.TotalCount)
			assert.Equal(t, int32(2), *cr.TotalCount)
			bd, err := cli.BatchDeleteCaTags(&model.BatchDeleteCaTagsRequest{CaId: root,
				Body: &model.BatchOperateTagRequestBody{Tags: sdkTags("owner", "", "never-set", "")}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, bd.HttpStatusCode)
			lt, err = cli.ListCaTags(&model.ListCaTagsRequest{CaId: root})
			require.NoError(t, err)
			assert.Equal(t, sdkTags("env", "prod"), *lt.Tags)

			// Certificates.
			_, err = cli.BatchCreateCertTags(&model.BatchCreateCertTagsRequest{CertificateId: leaf,
				Body: &model.BatchOperateTagRequestBody{Tags: sdkTags("app", "web", "tier", "1")}})
			require.NoError(t, err)
			_, err = cli.CreateCertTag(&model.CreateCertTagRequest{CertificateId: leaf,
				Body: &model.ResourceTagRequestBody{Tag: &model.ResourceTag{Key: "tier", Value: "2"}}})
			require.NoError(t, err)
			ct, err := cli.ListCertTags(&model.ListCertTagsRequest{CertificateId: leaf})
			require.NoError(t, err)
			assert.Equal(t, sdkTags("app", "web", "tier", "2"), *ct.Tags)
			ct, err = cli.ListCertTags(&model.ListCertTagsRequest{CertificateId: plain})
			require.NoError(t, err)
			require.NotNil(t, ct.Tags, "no tags: an empty list")
			assert.Empty(t, *ct.Tags)
			dct, err := cli.ListDomainCertTags(&model.ListDomainCertTagsRequest{})
			require.NoError(t, err)
			assert.Equal(t, []model.DomainTags{{Key: "app", Values: []string{"web"}}, {Key: "tier", Values: []string{"2"}}}, *dct.Tags)
			cf, err := cli.ListCertResourceInstances(&model.ListCertResourceInstancesRequest{Body: &model.ListResourceInstancesRequestBody{
				Tags: &[]model.DomainTags{{Key: "app"}}}})
			require.NoError(t, err)
			assert.Equal(t, int32(1), *cf.TotalCount)
			require.Len(t, *cf.Resources, 1)
			got := (*cf.Resources)[0]
			assert.Equal(t, leaf, *got.ResourceId)
			assert.Equal(t, "sdk-tag.example.com", *got.ResourceName)
			detail, ok = (*got.ResourceDetail).(map[string]any)
			require.True(t, ok)
			assert.Equal(t, leaf, detail["certificate_id"])
			cc, err := cli.CountCertResourceInstances(&model.CountCertResourceInstancesRequest{Body: &model.ListResourceInstancesRequestBody{}})
			require.NoError(t, err)
			assert.Equal(t, int32(2), *cc.TotalCount, "no condition: every certificate")
			_, err = cli.BatchDeleteCertTags(&model.BatchDeleteCertTagsRequest{CertificateId: leaf,
				Body: &model.BatchOperateTagRequestBody{Tags: sdkTags("app", "", "tier", "")}})
			require.NoError(t, err)
			ct, err = cli.ListCertTags(&model.ListCertTagsRequest{CertificateId: leaf})
			require.NoError(t, err)
			assert.Empty(t, *ct.Tags)

			// Refusals reach the SDK as CCM errors.
			_, err = cli.CreateCaTag(&model.CreateCaTagRequest{CaId: root,
				Body: &model.ResourceTagRequestBody{Tag: &model.ResourceTag{Key: "_sys_x", Value: "v"}}})
			status, code := sdkStatus(t, err)
			assert.Equal(t, http.StatusBadRequest, status)
			assert.Equal(t, "PCA.00020401", code)
			_, err = cli.ListCertTags(&model.ListCertTagsRequest{CertificateId: uuid.NewString()})
			_, code = sdkStatus(t, err)
			assert.Equal(t, "PCA.10010002", code)
		})
	}
}

// The raw routes: status codes, the CCM envelope of every refusal, the
// static segments beside the ids, roles and tenants.
func TestPCATagRoutes(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			p := newPCA(t, backend)
			root := p.createRoot("Route Tag Root")
			leaf := p.issueLeaf(root, "route-tag.example.com")
			for _, base := range []struct{ path, id string }{{pcaCAs, root}, {pcaCerts, leaf}} {
				res := base.path + "/" + base.id
				tags := func(kv ...string) map[string]any {
					var list []map[string]any
					for i := 0; i+1 < len(kv); i += 2 {
						list = append(list, map[string]any{"key": kv[i], "value": kv[i+1]})
					}
					return map[string]any{"tags": list}
				}
				p.ok(p.do("POST", res+"/tags/create", tags("a", "1", "b", "2")), http.StatusNoContent)
				p.ok(p.do("POST", res+"/tags", map[string]any{"tag": map[string]any{"key": "c"}}), http.StatusNoContent)
				m := p.ok(p.do("GET", res+"/tags", nil), http.StatusOK)
				assert.Equal(t, []any{map[string]any{"key": "a", "value": "1"}, map[string]any{"key": "b", "value": "2"},
					map[string]any{"key": "c", "value": ""}}, m["tags"])

				// The static segments are not ids, and the ids' routes still answer.
				m = p.ok(p.do("GET", base.path+"/tags", nil), http.StatusOK)
				assert.Len(t, m["tags"], 3)
				p.ok(p.do("GET", base.path+"/quotas", nil), http.StatusOK)
				p.ok(p.do("GET", res, nil), http.StatusOK)
				m = p.ok(p.do("POST", base.path+"/resource-instances/count", nil), http.StatusOK)
				assert.EqualValues(t, 1, m["total_count"], "an empty body is no condition")
				m = p.ok(p.do("POST", base.path+"/resource-instances/filter", map[string]any{"without_any_tag": true}), http.StatusOK)
				assert.EqualValues(t, 0, m["total_count"])
				assert.Equal(t, []any{}, m["resources"])

				for _, tc := range []struct {
					method, path string
					body         any
					status       int
					code         string
				}{
					{"POST", res + "/tags/create", tags("bad*key", "v"), 400, "PCA.00020401"},
					{"POST", res + "/tags/create", tags("k", "v", "k", "w"), 400, "PCA.00020401"},
					{"POST", res + "/tags/create", map[string]any{"tags": []any{}}, 400, "PCA.00020401"},
					{"POST", res + "/tags/create", map[string]any{}, 400, "PCA.00020001"},
					{"POST", res + "/tags/create", map[string]any{"tags": "k=v"}, 400, "PCA.00020001"},
					{"POST", res + "/tags/create", nil, 400, "PCA.00020001"},
					{"POST", res + "/tags", map[string]any{}, 400, "PCA.00020001"},
					{"POST", res + "/tags", map[string]any{"tag": map[string]any{"key": strings.Repeat("k", 129)}}, 400, "PCA.00020401"},
					{"DELETE", res + "/tags/delete", map[string]any{}, 400, "PCA.00020001"},
					{"POST", base.path + "/" + uuid.NewString() + "/tags/create", tags("k", "v"), 400, "PCA.10010002"},
					{"GET", base.path + "/" + uuid.NewString() + "/tags", nil, 400, "PCA.10010002"},
					{"POST", base.path + "/resource-instances/filter", map[string]any{"limit": 5}, 400, "PCA.00020001"},
					{"POST", base.path + "/resource-instances/filter", map[string]any{"limit": 51}, 400, "PCA.00020001"},
					{"POST", base.path + "/resource-instances/filter", map[string]any{"offset": -1}, 400, "PCA.00020001"},
					{"POST", base.path + "/resource-instances/filter", map[string]any{"matches": []any{map[string]any{"key": "status", "value": "x"}}}, 400, "PCA.00020001"},
					{"POST", base.path + "/resource-instances/filter", map[string]any{"tags": []any{map[string]any{"key": "a"}, map[string]any{"key": "a"}}}, 400, "PCA.00020401"},
					{"POST", base.path + "/resource-instances/count", map[string]any{"tags": []any{map[string]any{"key": ""}}}, 400, "PCA.00020401"},
				} {
					pcaFail(t, p.do(tc.method, tc.path, tc.body), tc.status, tc.code)
				}
				// The 20-tag limit.
				var many []string
				for i := range 17 {
					many = append(many, "k"+strings.Repeat("x", i), "v")
				}
				p.ok(p.do("POST", res+"/tags/create", tags(many...)), http.StatusNoContent)
				msg := pcaFail(t, p.do("POST", res+"/tags", map[string]any{"tag": map[string]any{"key": "one-too-many"}}), 400, "PCA.00020402")
				assert.Contains(t, msg, "20")
				m = p.ok(p.do("GET", res+"/tags", nil), http.StatusOK)
				assert.Len(t, m["tags"], 20)
				p.ok(p.do("DELETE", res+"/tags/delete", tags("a", "", "b", "wrong value")), http.StatusNoContent)
				m = p.ok(p.do("GET", res+"/tags", nil), http.StatusOK)
				assert.Len(t, m["tags"], 19)

				// Roles and tenants.
				auditor := p.NewToken("t1", "auditor")
				other := p.NewToken("t2", "admin")
				for _, path := range []string{base.path + "/tags", res + "/tags"} {
					r := p.Do("GET", path, "", nil, "X-Auth-Token", auditor)
					pcaFail(t, r, http.StatusForbidden, "PCA.10010008")
				}
				pcaFail(t, p.Do("GET", res+"/tags", "", nil, "X-Auth-Token", other), 400, "PCA.10010002")
				pcaFail(t, p.Do("POST", res+"/tags", "", map[string]any{"tag": map[string]any{"key": "x"}}, "X-Auth-Token", other), 400, "PCA.10010002")
				r := p.Do("GET", base.path+"/tags", "", nil, "X-Auth-Token", other)
				require.Equal(t, http.StatusOK, r.Status)
				assert.Equal(t, []any{}, r.Map(t)["tags"], "another tenant sees none of these keys")
				r = p.Do("POST", base.path+"/resource-instances/count", "", nil, "X-Auth-Token", other)
				require.Equal(t, http.StatusOK, r.Status)
				assert.EqualValues(t, 0, r.Map(t)["total_count"])
			}
		})
	}
}

// Every tag operation leaves START/SUCCESS/FAIL events and counts.
func TestPCATagEvents(t *testing.T) {
	p := newPCA(t, "bolt")
	root := p.createRoot("Event Tag Root")
	leaf := p.issueLeaf(root, "event-tag.example.com")
	tag := map[string]any{"tags": []any{map[string]any{"key": "k", "value": "v"}}}
	p.ok(p.do("POST", pcaCAs+"/"+root+"/tags/create", tag), http.StatusNoContent)
	p.ok(p.do("POST", pcaCAs+"/"+root+"/tags", map[string]any{"tag": map[string]any{"key": "k2"}}), http.StatusNoContent)
	p.ok(p.do("DELETE", pcaCAs+"/"+root+"/tags/delete", tag), http.StatusNoContent)
	p.ok(p.do("GET", pcaCAs+"/"+root+"/tags", nil), http.StatusOK)
	p.ok(p.do("GET", pcaCAs+"/tags", nil), http.StatusOK)
	p.ok(p.do("POST", pcaCAs+"/resource-instances/filter", nil), http.StatusOK)
	p.ok(p.do("POST", pcaCAs+"/resource-instances/count", nil), http.StatusOK)
	p.ok(p.do("POST", pcaCerts+"/"+leaf+"/tags/create", tag), http.StatusNoContent)
	pcaFail(t, p.do("POST", pcaCerts+"/"+leaf+"/tags/create", map[string]any{"tags": []any{map[string]any{"key": " x"}}}), 400, "PCA.00020401")

	evs, err := p.Store.ListEvents(t.Context(), "t1", 0, 0)
	require.NoError(t, err)
	var seen []string
	for _, ev := range evs {
		var rec struct{ Operation, Outcome, Resource string }
		require.NoError(t, json.Unmarshal(ev.Data, &rec))
		seen = append(seen, rec.Operation+"_"+rec.Outcome+":"+rec.Resource)
	}
	for _, want := range []string{"PCA_CA_TAG_BATCH_CREATE_SUCCESS:" + root, "PCA_CA_TAG_CREATE_SUCCESS:" + root,
		"PCA_CA_TAG_BATCH_DELETE_SUCCESS:" + root, "PCA_CA_TAG_RETRIEVE_SUCCESS:" + root, "PCA_CA_TAG_KEYS_RETRIEVE_SUCCESS:",
		"PCA_CA_TAG_FILTER_SUCCESS:", "PCA_CA_TAG_COUNT_SUCCESS:", "PCA_CERTIFICATE_TAG_BATCH_CREATE_SUCCESS:" + leaf,
		"PCA_CERTIFICATE_TAG_BATCH_CREATE_FAIL:" + leaf} {
		assert.True(t, slices.Contains(seen, want), "event %s missing from %v", want, seen)
	}
	r, err := http.Get(p.Server.URL + "/metrics")
	require.NoError(t, err)
	defer r.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, r.Body)
	for _, want := range []string{
		`hsmca_events_total{event="PCA_CERTIFICATE_TAG_BATCH_CREATE",stage="START"} 2`,
		`hsmca_events_total{event="PCA_CERTIFICATE_TAG_BATCH_CREATE",stage="FAIL"} 1`,
		`hsmca_events_total{event="PCA_CA_TAG_FILTER",stage="SUCCESS"} 1`,
	} {
		assert.Contains(t, b.String(), want)
	}
}
