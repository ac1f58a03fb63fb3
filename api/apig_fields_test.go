package api_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

// goPair is a self-signed certificate for cn made in Go for key (for key
// types the openssl helper does not make).
func goPair(t *testing.T, key crypto.Signer, cn string) pair {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	k, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return pair{cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}))}
}

// algorithm_type (Huawei's CertificateForm and answers): RSA or ECC,
// defaulted from the certificate when absent, checked against the
// certificate's key when given, answered in create, show, update and
// list; SM2 and other values are a 400 in the APIG envelope.
func TestAPIGAlgorithmType(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			o := f.o
			rsaPair := o.selfSigned("rsa", "rsa.example.com")
			ecPair := o.selfSigned("ec", "ec.example.com")
			_, edKey, err := ed25519.GenerateKey(rand.Reader)
			require.NoError(t, err)
			edPair := goPair(t, edKey, "ed.example.com")

			with := func(name string, p pair, algType any) map[string]any {
				b := certBody(name, p)
				if algType != nil {
					b["algorithm_type"] = algType
				}
				return b
			}
			created := map[string]string{}
			for _, tc := range []struct {
				name    string
				p       pair
				given   any
				want    string
				keyKind string
			}{
				{"alg_rsa_given", rsaPair, "RSA", "RSA", "rsa"},
				{"alg_rsa_default", rsaPair, nil, "RSA", "rsa"},
				{"alg_rsa_null", rsaPair, nil, "RSA", "rsa"},
				{"alg_rsa_empty", rsaPair, "", "RSA", "rsa"},
				{"alg_ecc_given", ecPair, "ECC", "ECC", "ec"},
				{"alg_ecc_default", ecPair, nil, "ECC", "ec"},
				{"alg_ed25519", edPair, "ECC", "ECC", "ed25519"},
			} {
				b := with(tc.name, tc.p, tc.given)
				if tc.name == "alg_rsa_null" {
					b["algorithm_type"] = nil
				}
				r := f.do("POST", f.base(), b)
				require.Equal(t, http.StatusOK, r.Status, "%s: %s", tc.name, r.Body)
				m := r.Map(t)
				assert.Equal(t, tc.want, m["algorithm_type"], tc.name)
				id := m["id"].(string)
				created[tc.name] = id
				g := f.do("GET", f.base()+"/"+id, nil)
				require.Equal(t, http.StatusOK, g.Status)
				assert.Equal(t, tc.want, g.Map(t)["algorithm_type"], tc.name)
			}

			// A type other than the certificate key's, SM2, or not a type.
			for _, tc := range []struct {
				name string
				body map[string]any
			}{
				{"RSA certificate as ECC", with("alg_bad", rsaPair, "ECC")},
				{"EC certificate as RSA", with("alg_bad", ecPair, "RSA")},
				{"Ed25519 certificate as RSA", with("alg_bad", edPair, "RSA")},
				{"SM2", with("alg_bad", ecPair, "SM2")},
				{"lower case", with("alg_bad", rsaPair, "rsa")},
				{"unknown", with("alg_bad", rsaPair, "DSA")},
				{"not a string", with("alg_bad", rsaPair, 1)},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := f.do("POST", f.base(), tc.body)
					requireAPIGError(t, r, 400, "APIG.2012")
					assert.Contains(t, r.Map(t)["error_msg"], "algorithm_type")
				})
			}
			sm2 := f.do("POST", f.base(), with("alg_bad", ecPair, "SM2"))
			assert.Contains(t, sm2.Map(t)["error_msg"], "SM2")
			assert.Contains(t, f.do("POST", f.base(), with("alg_bad", rsaPair, "ECC")).Map(t)["error_msg"], "RSA",
				"the refusal names the certificate's type")

			// PUT takes and checks it the same way.
			id := created["alg_rsa_given"]
			requireAPIGError(t, f.do("PUT", f.base()+"/"+id, with("alg_rsa_given", ecPair, "RSA")), 400, "APIG.2012")
			requireAPIGError(t, f.do("PUT", f.base()+"/"+id, with("alg_rsa_given", ecPair, "SM2")), 400, "APIG.2012")
			r := f.do("PUT", f.base()+"/"+id, with("alg_rsa_given", o.selfSigned("ec", "ec2.example.com"), "ECC"))
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			assert.Equal(t, "ECC", r.Map(t)["algorithm_type"])
			r = f.do("PUT", f.base()+"/"+id, with("alg_rsa_given", rsaPair, nil))
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			assert.Equal(t, "RSA", r.Map(t)["algorithm_type"], "absent on PUT: the new certificate's type")

			// The list shows it and filters on it.
			l := f.do("GET", f.base()+"?algorithm_type=ECC", nil)
			require.Equal(t, http.StatusOK, l.Status, string(l.Body))
			var page struct {
				Total int              `json:"total"`
				Certs []map[string]any `json:"certs"`
			}
			l.JSON(t, &page)
			assert.Equal(t, 3, page.Total)
			for _, c := range page.Certs {
				assert.Equal(t, "ECC", c["algorithm_type"], c["name"])
			}
			l = f.do("GET", f.base()+"?algorithm_type=RSA", nil)
			l.JSON(t, &page)
			assert.Equal(t, 4, page.Total)
			for _, c := range page.Certs {
				assert.Equal(t, "RSA", c["algorithm_type"], c["name"])
			}
		})
	}
}

// cert_content_sign and private_key_sign are the SM2 signing certificate
// and key of Huawei's national-crypto dual-certificate case. hsmca takes
// no SM2: empty (or null) values are accepted, a non-empty one is a 400
// that does not echo it, on create and on update.
func TestAPIGSM2SigningPair(t *testing.T) {
	f := newAPIGFixture(t, "bolt")
	good := f.o.selfSigned("ec", "pair.example.com")
	other := f.o.selfSigned("ec", "pair-other.example.com")
	body := func(name string, kv ...any) map[string]any {
		b := certBody(name, good)
		for i := 0; i+1 < len(kv); i += 2 {
			b[kv[i].(string)] = kv[i+1]
		}
		return b
	}
	r := f.do("POST", f.base(), body("pair_empty", "cert_content_sign", "", "private_key_sign", ""))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	id := r.Map(t)["id"].(string)
	r = f.do("POST", f.base(), body("pair_null", "cert_content_sign", nil, "private_key_sign", nil, "algorithm_type", "ECC"))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = f.do("PUT", f.base()+"/"+id, body("pair_empty", "cert_content_sign", "", "private_key_sign", ""))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))

	for _, tc := range []struct {
		name  string
		kv    []any
		field string
	}{
		{"signing certificate", []any{"cert_content_sign", other.cert}, "cert_content_sign"},
		{"signing key", []any{"private_key_sign", other.key}, "private_key_sign"},
		{"both, ECC", []any{"algorithm_type", "ECC", "cert_content_sign", other.cert, "private_key_sign", other.key}, "cert_content_sign"},
		{"both, SM2", []any{"algorithm_type", "SM2", "cert_content_sign", other.cert, "private_key_sign", other.key}, "algorithm_type"},
		{"signing key not a string", []any{"private_key_sign", 7}, "private_key_sign"},
		{"signing certificate not a string", []any{"cert_content_sign", []any{}}, "cert_content_sign"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, call := range []struct{ method, path string }{{"POST", f.base()}, {"PUT", f.base() + "/" + id}} {
				r := f.do(call.method, call.path, body("pair_refused", tc.kv...))
				requireAPIGError(t, r, 400, "APIG.2012")
				msg := r.Map(t)["error_msg"].(string)
				assert.True(t, strings.HasPrefix(msg, tc.field+":"), "%s %s: %s", call.method, tc.name, msg)
				for _, line := range strings.Split(other.key, "\n") {
					if len(line) > 16 {
						assert.NotContains(t, string(r.Body), line)
					}
				}
			}
		})
	}
	// The refused updates left the certificate as it was.
	g := f.do("GET", f.base()+"/"+id, nil)
	assert.Equal(t, "pair_empty", g.Map(t)["name"])
	assert.Equal(t, "pair.example.com", g.Map(t)["common_name"])
}

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
