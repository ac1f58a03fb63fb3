package api_test

import (
	"context"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
)

type openAPIOp struct {
	OperationID string                 `yaml:"operationId"`
	Security    *[]map[string][]string `yaml:"security"`
	Family      string                 `yaml:"x-hsmca-family"`
	Roles       []string               `yaml:"x-hsmca-roles"`
	Loopback    bool                   `yaml:"x-hsmca-loopback-only"`
	Responses   map[string]any         `yaml:"responses"`
}

// TestOpenAPIMatchesRouter keeps api/openapi.yaml true: every route the
// router serves is documented with its family and roles, and the document
// lists nothing the router does not serve.
func TestOpenAPIMatchesRouter(t *testing.T) {
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]openAPIOp `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(api.OpenAPI(), &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."))

	env := apitest.New(t, "bolt")
	param := regexp.MustCompile(`[:*](\w+)`)
	served := map[string]bool{}
	ids := map[string]bool{}
	for _, r := range api.Routes(api.Options{Engine: env.Engine}) {
		path := param.ReplaceAllString(r.Path, "{$1}")
		key := strings.ToLower(r.Method) + " " + path
		served[key] = true
		op, ok := doc.Paths[path][strings.ToLower(r.Method)]
		if !assert.True(t, ok, "%s %s is not in openapi.yaml", r.Method, path) {
			continue
		}
		assert.Equal(t, r.Family, op.Family, key)
		assert.False(t, ids[op.OperationID], "operationId %s used twice", op.OperationID)
		ids[op.OperationID] = true
		assert.NotEmpty(t, op.Responses, key)
		want := append(append([]string{}, r.Access.TenantRoles...), r.Access.PlatformRoles...)
		sort.Strings(want)
		got := append([]string{}, op.Roles...)
		sort.Strings(got)
		if r.Access.Public || (r.Access.Loopback && len(want) == 0) {
			assert.Empty(t, got, key)
			require.NotNil(t, op.Security, key)
			assert.Empty(t, *op.Security, "%s needs no credential", key)
		} else {
			assert.Equal(t, want, got, "roles of %s", key)
			require.NotNil(t, op.Security, key)
			assert.NotEmpty(t, *op.Security, key)
		}
		assert.Equal(t, r.Access.Loopback, op.Loopback, key)
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			assert.True(t, served[method+" "+path], "openapi.yaml lists %s %s, which the router does not serve", method, path)
		}
	}

	r := env.Do("GET", "/openapi.yaml", "", nil)
	assert.Equal(t, 200, r.Status)
	assert.Equal(t, api.OpenAPI(), r.Body)
}

// TestOpenAPIDocumentIsValid holds api/openapi.yaml to a standard OpenAPI
// 3 validator (kin-openapi: the structure, every schema, and every example
// against its schema) and to the house rules that make it usable by a
// client generator: every JSON body has a schema of its own (no bare
// object), every error answer is the operation's family envelope, and
// every operation documents the answers the route's guard can give.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI())
	require.NoError(t, err)
	assert.Equal(t, "3.0.3", doc.OpenAPI)
	require.NoError(t, doc.Validate(context.Background(), openapi3.EnableExamplesValidation()))

	envelopes := map[string][]string{
		"native":     {"NativeError", "MattrError"},
		"pca":        {"PcaError", "HuaweiThrottled"},
		"apig":       {"ApigError", "HuaweiThrottled"},
		"czertainly": {"CzError", "CzValidationErrors"},
		"oauth":      {"OAuthError"},
		"acme":       {"AcmeProblem"},
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			key := method + " " + path
			family, _ := op.Extensions["x-hsmca-family"].(string)
			require.Contains(t, envelopes, family, key)
			if rb := op.RequestBody; rb != nil {
				for ct, mt := range rb.Value.Content {
					assertTyped(t, key+" request "+ct, mt.Schema)
				}
			}
			must := []int{400, 413, 415, 500}
			if op.Security == nil || len(*op.Security) > 0 {
				must = append(must, 401, 403, 429, 503)
			}
			for _, st := range must {
				assert.NotNil(t, op.Responses.Status(st), "%s documents no %d", key, st)
			}
			for code, rr := range op.Responses.Map() {
				st, err := strconv.Atoi(code)
				require.NoError(t, err, "%s: response %q: statuses are explicit", key, code)
				for ct, mt := range rr.Value.Content {
					if !strings.HasPrefix(ct, "application/json") {
						continue
					}
					assertTyped(t, key+" "+code, mt.Schema)
					if st >= 400 && (path != "/readyz" || st != 503) {
						name := strings.TrimPrefix(mt.Schema.Ref, "#/components/schemas/")
						assert.Contains(t, envelopes[family], name, "%s %d: not the %s envelope", key, st, family)
					}
				}
			}
		}
	}
}

// assertTyped checks that a body schema says what the body holds: a
// reference to a named schema, or an inline schema that is not a bare
// object.
func assertTyped(t *testing.T, what string, s *openapi3.SchemaRef) {
	t.Helper()
	if !assert.NotNil(t, s, "%s has no schema", what) || s.Ref != "" {
		return
	}
	v := s.Value
	bare := v.Type.Is("object") && len(v.Properties) == 0 && v.AdditionalProperties.Schema == nil &&
		len(v.OneOf) == 0 && len(v.AnyOf) == 0 && len(v.AllOf) == 0
	assert.False(t, bare, "%s: a bare object; name its fields", what)
}
