package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

// Certificate names follow Huawei's current rule (CertificateForm): 4 to
// 50 characters, counted in characters, of Chinese characters, English
// letters, digits and underscores, starting with an English letter or a
// Chinese character. They round-trip through create, show, list and the
// name filter, and stay unique.
func TestAPIGChineseNames(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			p := f.o.selfSigned("ec", "names.example.com")
			for _, name := range []string{
				"证书名称",                        // four characters, twelve bytes
				"证书_1",                        // Chinese first, then underscore and digit
				"cert_证书",                     // English first
				strings.Repeat("证", 50),       // 50 characters, 150 bytes
				"a" + strings.Repeat("书", 49), // 50 characters
			} {
				r := f.do("POST", f.base(), certBody(name, p))
				require.Equal(t, http.StatusOK, r.Status, "%q: %s", name, r.Body)
				m := r.Map(t)
				assert.Equal(t, name, m["name"])
				g := f.do("GET", f.base()+"/"+m["id"].(string), nil)
				assert.Equal(t, name, g.Map(t)["name"])
			}
			l := f.do("GET", f.base()+"?name="+url.QueryEscape("证书"), nil)
			require.Equal(t, http.StatusOK, l.Status, string(l.Body))
			assert.EqualValues(t, 3, l.Map(t)["total"], "证书名称, 证书_1 and cert_证书")
			requireAPIGError(t, f.do("POST", f.base(), certBody("证书名称", p)), 400, "APIG.3325")

			for name, why := range map[string]string{
				"证书名":                   "three characters",
				strings.Repeat("证", 51): "51 characters",
				"_证书名称":                 "starts with an underscore",
				"1证书名称":                 "starts with a digit",
				"сертификат":            "Cyrillic letters are not in Huawei's rule",
				"café_cert":             "a Latin letter outside English",
				"しょうめい":                 "Japanese kana",
				"증명서이름":                 "Hangul",
				"证书\u3000名称":            "an ideographic space",
				"证书１２":                  "full-width digits",
				"证书-名称":                 "a dash",
				"ｃｅｒｔ":                  "full-width Latin letters",
			} {
				t.Run(why, func(t *testing.T) {
					requireAPIGError(t, f.do("POST", f.base(), certBody(name, p)), 400, "APIG.2012")
				})
			}
		})
	}
}
