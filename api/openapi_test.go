package api_test

import (
	"regexp"
	"sort"
	"strings"
	"testing"

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
