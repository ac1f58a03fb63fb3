package api_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdktime"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/utils"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/apig/v2/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

// jsonKeys are the JSON names of a model struct's fields (HttpStatusCode
// and other "-" fields left out).
func jsonKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// requireFilled fails for every pointer field of the model struct v that
// the answer left nil.
func requireFilled(t *testing.T, what string, v any) {
	t.Helper()
	rv := reflect.ValueOf(v)
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		if f.Type.Kind() == reflect.Pointer {
			assert.False(t, rv.Field(i).IsNil(), "%s: %s is not filled", what, f.Name)
		}
	}
}

// requireSameKeys fails when the answer's object has keys the model does
// not know or lacks keys it has.
func requireSameKeys(t *testing.T, what string, obj map[string]any, model reflect.Type) {
	t.Helper()
	got := make([]string, 0, len(obj))
	for k := range obj {
		got = append(got, k)
	}
	sort.Strings(got)
	assert.Equal(t, jsonKeys(model), got, "%s: the answer's fields are the model's", what)
}

// sdkDecode decodes an answer as the official SDK does (its JSON decoder,
// numbers as json.Number) into the SDK's model.
func sdkDecode(t *testing.T, r *apitest.Response, into any) {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.NoError(t, utils.Unmarshal(r.Body, into))
}

func sdkTime(t *testing.T, st *sdktime.SdkTime) time.Time {
	t.Helper()
	require.NotNil(t, st)
	return time.Time(*st)
}

// Every answer of the certificate routes decodes into the official Go
// SDK's model (services/apig/v2/model, v0.1.207) with every field the
// model has filled, in the model's JSON type, and no field it lacks.
func TestAPIGAnswersDecodeIntoSDKModels(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			p := f.o.seedPair("rsa")
			leaf := apigParseCert(t, p.cert)

			// The request body is the SDK's own CertificateForm, marshalled
			// as the SDK does.
			algRSA := model.GetCertificateFormAlgorithmTypeEnum().RSA
			inst := model.GetCertificateFormTypeEnum().INSTANCE
			instID := seedInst
			form := model.CertificateForm{Name: "sdk_证书", CertContent: p.cert, PrivateKey: p.key,
				Type: &inst, InstanceId: &instID, AlgorithmType: &algRSA}
			body, err := utils.Marshal(form)
			require.NoError(t, err)
			var formMap map[string]any
			require.NoError(t, json.Unmarshal(body, &formMap))

			var created model.CreateCertificateV2Response
			cr := f.do("POST", f.base(), formMap)
			sdkDecode(t, cr, &created)
			requireFilled(t, "create", created)
			requireSameKeys(t, "create", cr.Map(t), reflect.TypeOf(created))
			assert.Equal(t, "sdk_证书", *created.Name)
			assert.Equal(t, "instance", created.Type.Value())
			assert.Equal(t, seedInst, *created.InstanceId)
			assert.Equal(t, f.tenant, *created.ProjectId)
			assert.Equal(t, "RSA", created.AlgorithmType.Value())
			assert.Equal(t, []string{"apigtest.example.com", "*.san.com"}, *created.San)
			assert.EqualValues(t, 3, *created.Version)
			assert.Equal(t, "13010", *created.SerialNumber)
			assert.Equal(t, []string{"XXSSL Inc"}, *created.Issuer)
			assert.Equal(t, []string{"IT"}, *created.OrganizationalUnit)
			assert.Equal(t, "SHA256-RSA", *created.SignatureAlgorithm)
			assert.Equal(t, false, *created.IsHasTrustedRootCa)
			assert.True(t, leaf.NotAfter.Equal(sdkTime(t, created.NotAfter)))
			assert.True(t, leaf.NotBefore.Equal(sdkTime(t, created.NotBefore)))
			assert.False(t, sdkTime(t, created.CreateTime).IsZero())
			assert.False(t, sdkTime(t, created.UpdateTime).IsZero())
			id := *created.Id

			var shown model.ShowDetailsOfCertificateV2Response
			sr := f.do("GET", f.base()+"/"+id, nil)
			sdkDecode(t, sr, &shown)
			requireFilled(t, "show", shown)
			requireSameKeys(t, "show", sr.Map(t), reflect.TypeOf(shown))
			assert.Equal(t, id, *shown.Id)
			assert.Equal(t, "RSA", shown.AlgorithmType.Value())

			// Update with an EC certificate, algorithm_type left to the
			// certificate.
			next := f.o.seedPair("ec")
			upd := model.CertificateForm{Name: "sdk_updated", CertContent: next.cert, PrivateKey: next.key}
			body, err = utils.Marshal(upd)
			require.NoError(t, err)
			var updMap map[string]any
			require.NoError(t, json.Unmarshal(body, &updMap))
			var updated model.UpdateCertificateV2Response
			ur := f.do("PUT", f.base()+"/"+id, updMap)
			sdkDecode(t, ur, &updated)
			requireFilled(t, "update", updated)
			requireSameKeys(t, "update", ur.Map(t), reflect.TypeOf(updated))
			assert.Equal(t, "ECC", updated.AlgorithmType.Value())
			assert.Equal(t, "global", updated.Type.Value())
			assert.Equal(t, "common", *updated.InstanceId)

			f.create("sdk_second", f.o.selfSigned("rsa", "second.example.com"))
			var listed model.ListCertificatesV2Response
			lr := f.do("GET", f.base()+"?offset=-1&limit=0", nil)
			sdkDecode(t, lr, &listed)
			requireSameKeys(t, "list", lr.Map(t), reflect.TypeOf(listed))
			assert.EqualValues(t, 2, listed.Size)
			assert.EqualValues(t, 2, listed.Total)
			require.NotNil(t, listed.Certs)
			require.Len(t, *listed.Certs, 2)
			var raw struct {
				Certs []map[string]any `json:"certs"`
			}
			lr.JSON(t, &raw)
			for i, c := range *listed.Certs {
				requireFilled(t, "list item", c)
				requireSameKeys(t, "list item", raw.Certs[i], reflect.TypeOf(c))
			}
			first := (*listed.Certs)[0]
			assert.Equal(t, "sdk_second", *first.Name)
			assert.Equal(t, "RSA", first.AlgorithmType.Value())
			assert.Equal(t, "ECC", (*listed.Certs)[1].AlgorithmType.Value())

			// Errors decode into the SDK's error shape: error_code, error_msg.
			er := f.do("POST", f.base(), map[string]any{"name": "sdk_sm2", "cert_content": p.cert,
				"private_key": p.key, "algorithm_type": "SM2"})
			requireAPIGError(t, er, 400, "APIG.2012")
		})
	}
}
