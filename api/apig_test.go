package api_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/apig"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// ossl makes keys and certificates with the openssl command line, so the
// import is tested on what real clients upload.
type ossl struct {
	t   *testing.T
	dir string
	n   int
}

const osslConfig = `[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_leaf]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
`

func newOSSL(t *testing.T) *ossl {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl not on PATH: %v", err)
	}
	o := &ossl{t: t, dir: t.TempDir()}
	require.NoError(t, os.WriteFile(o.path("openssl.cnf"), []byte(osslConfig), 0o600))
	return o
}

func (o *ossl) path(name string) string { return filepath.Join(o.dir, name) }

func (o *ossl) fresh(ext string) string {
	o.n++
	return o.path(fmt.Sprintf("f%d.%s", o.n, ext))
}

func (o *ossl) run(args ...string) {
	o.t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Env = append(os.Environ(), "OPENSSL_CONF="+o.path("openssl.cnf"))
	out, err := cmd.CombinedOutput()
	require.NoError(o.t, err, "openssl %s: %s", strings.Join(args, " "), out)
}

func (o *ossl) read(path string) string {
	o.t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(o.t, err)
	return string(b)
}

// key makes a private key file: rsa (PKCS#8), rsa-pkcs1, rsa1024, ec
// (SEC1, P-256), ec384 (PKCS#8), rsa-enc-pkcs8, rsa-enc-legacy, ec-enc-legacy.
func (o *ossl) key(kind string) string {
	o.t.Helper()
	p := o.fresh("key")
	switch kind {
	case "rsa":
		o.run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p)
	case "rsa-pkcs1":
		o.run("genrsa", "-traditional", "-out", p, "2048")
	case "rsa1024":
		o.run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", p)
	case "ec":
		o.run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p)
	case "ec384":
		o.run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", p)
	case "rsa-enc-pkcs8":
		o.run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-aes256", "-pass", "pass:secret", "-out", p)
	case "rsa-enc-legacy":
		plain := o.key("rsa-pkcs1")
		o.run("rsa", "-in", plain, "-aes256", "-passout", "pass:secret", "-traditional", "-out", p)
	case "ec-enc-legacy":
		plain := o.key("ec")
		o.run("ec", "-in", plain, "-aes256", "-passout", "pass:secret", "-out", p)
	default:
		o.t.Fatalf("unknown key kind %q", kind)
	}
	return p
}

// ca makes a self-signed CA certificate for key.
func (o *ossl) ca(key, subj string) string {
	o.t.Helper()
	p := o.fresh("pem")
	o.run("req", "-x509", "-new", "-key", key, "-subj", subj, "-days", "3650", "-sha256",
		"-config", o.path("openssl.cnf"), "-extensions", "v3_ca", "-out", p)
	return p
}

// leaf makes a certificate for key with subj and san ("DNS:a,DNS:b" or
// ""), signed by caCert/caKey, or self-signed when caCert is "".
func (o *ossl) leaf(key, subj, san, caCert, caKey, serial string) string {
	o.t.Helper()
	p := o.fresh("pem")
	if caCert == "" {
		args := []string{"req", "-x509", "-new", "-key", key, "-subj", subj, "-days", "365", "-sha256",
			"-set_serial", serial, "-config", o.path("openssl.cnf"), "-extensions", "v3_leaf", "-out", p}
		if san != "" {
			args = append(args, "-addext", "subjectAltName="+san)
		}
		o.run(args...)
		return p
	}
	csr := o.fresh("csr")
	o.run("req", "-new", "-key", key, "-subj", subj, "-config", o.path("openssl.cnf"), "-out", csr)
	ext := o.fresh("ext")
	e := "basicConstraints=CA:FALSE\n"
	if san != "" {
		e += "subjectAltName=" + san + "\n"
	}
	require.NoError(o.t, os.WriteFile(ext, []byte(e), 0o600))
	o.run("x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-set_serial", serial, "-days", "365",
		"-sha256", "-extfile", ext, "-out", p)
	return p
}

// pair is a certificate (with its chain) and its key, as PEM text.
type pair struct{ cert, key string }

const (
	seedSubject = "/C=XX/ST=XX/L=XX/O=XX/OU=IT/CN=apigtest.example.com"
	seedSAN     = "DNS:apigtest.example.com,DNS:*.san.com"
	seedIssuer  = "/C=XX/O=XXSSL Inc/CN=XXSSL RSA CA"
	seedInst    = "f0fa1789-3b76-433b-a787-9892951c620e"
)

// seedPair is the seed's certificate: issued by "XXSSL Inc" with serial
// 13010 to apigtest.example.com, the chain in cert_content.
func (o *ossl) seedPair(keyKind string) pair {
	caKey := o.key("rsa")
	ca := o.ca(caKey, seedIssuer)
	k := o.key(keyKind)
	leaf := o.leaf(k, seedSubject, seedSAN, ca, caKey, "13010")
	return pair{cert: o.read(leaf) + o.read(ca), key: o.read(k)}
}

// selfSigned is a self-signed certificate with a SAN for a key of kind.
func (o *ossl) selfSigned(keyKind, cn string) pair {
	k := o.key(keyKind)
	c := o.leaf(k, "/O=hsmca tests/CN="+cn, "DNS:"+cn, "", "", "7")
	return pair{cert: o.read(c), key: o.read(k)}
}

type apigFixture struct {
	t      *testing.T
	env    *apitest.Env
	o      *ossl
	tenant string
	tok    string
}

func newAPIGFixture(t *testing.T, backend string) *apigFixture {
	t.Helper()
	env := apitest.New(t, backend)
	return &apigFixture{t: t, env: env, o: newOSSL(t), tenant: "proj1",
		tok: env.NewToken("proj1", signer.RoleCAOperator)}
}

func (f *apigFixture) base() string { return "/v2/" + f.tenant + "/apigw/certificates" }

func (f *apigFixture) do(method, path string, body any) *apitest.Response {
	f.t.Helper()
	return f.env.Do(method, path, "", body, "X-Auth-Token", f.tok)
}

func certBody(name string, p pair) map[string]any {
	return map[string]any{"name": name, "cert_content": p.cert, "private_key": p.key}
}

// create imports p and returns the answer's object.
func (f *apigFixture) create(name string, p pair) map[string]any {
	f.t.Helper()
	r := f.do("POST", f.base(), certBody(name, p))
	require.Equal(f.t, http.StatusOK, r.Status, string(r.Body))
	return r.Map(f.t)
}

func (f *apigFixture) record(id string) *store.Record {
	f.t.Helper()
	rec, err := f.env.Store.Get(context.Background(), apig.RecordCertificate, f.tenant, id)
	require.NoError(f.t, err)
	return rec
}

func (f *apigFixture) keyExists(keyID string) bool {
	f.t.Helper()
	ok, err := f.env.HSM.Exists(context.Background(), keyID)
	require.NoError(f.t, err)
	return ok
}

func requireAPIGError(t *testing.T, r *apitest.Response, status int, code string) {
	t.Helper()
	require.Equal(t, status, r.Status, string(r.Body))
	var m map[string]any
	r.JSON(t, &m)
	assert.Equal(t, code, m["error_code"], string(r.Body))
	assert.NotEmpty(t, m["error_msg"])
	assert.Len(t, m, 2, "envelope is exactly {error_code, error_msg}")
}

func apigParseCert(t *testing.T, text string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(text))
	require.NotNil(t, b)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

var (
	hex32    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	seedTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
)

// The seed's example request, with a real certificate and key made by
// openssl, answers the seed's full object filled from the certificate.
func TestAPIGCreateSeedExample(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			for _, tc := range []struct {
				keyKind, keyAlg, sigAlg, algType string
			}{
				{"rsa", "RSA2048", "SHA256-RSA", "RSA"},
				{"ec", "EC256", "SHA256-RSA", "ECC"},
			} {
				t.Run(tc.keyKind, func(t *testing.T) {
					p := f.o.seedPair(tc.keyKind)
					name := "cert_demo_" + tc.keyKind
					// The seed's own quoting: single quotes around the PEM,
					// and (EC case) line breaks as literal "\n".
					quote := func(s string) string { return "'" + s + "'" }
					if tc.keyKind == "ec" {
						quote = func(s string) string { return "'" + strings.ReplaceAll(s, "\n", `\n`) + "'" }
					}
					r := f.do("POST", f.base(), map[string]any{
						"name":         name,
						"private_key":  quote(p.key),
						"cert_content": quote(p.cert),
						"type":         "instance",
						"instance_id":  seedInst,
					})
					require.Equal(t, http.StatusOK, r.Status, string(r.Body))
					m := r.Map(t)
					leaf := apigParseCert(t, p.cert)
					assert.Regexp(t, hex32, m["id"])
					assert.Equal(t, name, m["name"])
					assert.Equal(t, "instance", m["type"])
					assert.Equal(t, seedInst, m["instance_id"])
					assert.Equal(t, f.tenant, m["project_id"])
					assert.Equal(t, "apigtest.example.com", m["common_name"])
					assert.Equal(t, []any{"apigtest.example.com", "*.san.com"}, m["san"])
					assert.EqualValues(t, 3, m["version"])
					assert.Equal(t, []any{"XX"}, m["organization"])
					assert.Equal(t, []any{"IT"}, m["organizational_unit"])
					assert.Equal(t, []any{"XX"}, m["locality"])
					assert.Equal(t, []any{"XX"}, m["state"])
					assert.Equal(t, []any{"XX"}, m["country"])
					assert.Equal(t, leaf.NotBefore.UTC().Format(time.RFC3339), m["not_before"])
					assert.Equal(t, leaf.NotAfter.UTC().Format(time.RFC3339), m["not_after"])
					assert.Regexp(t, seedTime, m["not_before"])
					assert.Equal(t, "13010", m["serial_number"])
					assert.Equal(t, []any{"XXSSL Inc"}, m["issuer"])
					assert.Equal(t, tc.sigAlg, m["signature_algorithm"])
					assert.Regexp(t, seedTime, m["create_time"])
					assert.Regexp(t, seedTime, m["update_time"])
					assert.Equal(t, false, m["is_has_trusted_root_ca"])
					assert.Equal(t, tc.algType, m["algorithm_type"], "the certificate's key type when not given")
					assert.Len(t, m, 22)

					id := m["id"].(string)
					rec := f.record(id)
					assert.Equal(t, tc.keyAlg, rec.Fields[signer.KeyAlgorithmField])
					assert.True(t, f.keyExists(rec.Fields[signer.KeyField]))

					g := f.do("GET", f.base()+"/"+id, nil)
					require.Equal(t, http.StatusOK, g.Status, string(g.Body))
					assert.Equal(t, m, g.Map(t))
				})
			}
		})
	}
}

// Every key encoding the contract names is accepted, with its algorithm
// recorded by the key-owner conventions; a global certificate is on the
// "common" instance.
func TestAPIGKeyFormats(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			for _, tc := range []struct{ kind, alg, sigAlg string }{
				{"rsa", "RSA2048", "SHA256-RSA"},       // PKCS#8
				{"rsa-pkcs1", "RSA2048", "SHA256-RSA"}, // PKCS#1
				{"ec", "EC256", "ECDSA-SHA256"},        // SEC1
				{"ec384", "EC384", "ECDSA-SHA256"},     // PKCS#8
			} {
				p := f.o.selfSigned(tc.kind, "k-"+tc.kind+".example.com")
				m := f.create("key_"+strings.ReplaceAll(tc.kind, "-", "_"), p)
				assert.Equal(t, "global", m["type"], tc.kind)
				assert.Equal(t, "common", m["instance_id"], tc.kind)
				assert.Equal(t, tc.sigAlg, m["signature_algorithm"], tc.kind)
				assert.Equal(t, []any{"hsmca tests"}, m["issuer"], tc.kind)
				assert.Equal(t, "7", m["serial_number"], tc.kind)
				rec := f.record(m["id"].(string))
				assert.Equal(t, tc.alg, rec.Fields[signer.KeyAlgorithmField], tc.kind)
			}
		})
	}
}

// expiredPair is a certificate past its notAfter for an openssl key.
func expiredPair(t *testing.T, o *ossl) pair {
	t.Helper()
	kp := o.key("ec")
	keyPEM := o.read(kp)
	b, _ := pem.Decode([]byte(keyPEM))
	k, err := x509.ParseECPrivateKey(b.Bytes)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "old.example.com"},
		DNSNames: []string{"old.example.com"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	return pair{cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), key: keyPEM}
}

// Each failure the contract lists answers its own code in the APIG
// envelope.
func TestAPIGErrors(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			o := f.o
			good := o.selfSigned("ec", "good.example.com")
			other := o.selfSigned("ec", "other.example.com")
			caKey := o.key("ec")
			ca := o.ca(caKey, "/O=Right CA/CN=Right CA")
			wrongCAKey := o.key("ec")
			wrongCA := o.ca(wrongCAKey, "/O=Wrong CA/CN=Wrong CA")
			issuedKey := o.key("ec")
			issued := o.read(o.leaf(issuedKey, "/CN=chain.example.com", "DNS:chain.example.com", ca, caKey, "5"))
			noSANKey := o.key("ec")
			noSAN := pair{cert: o.read(o.leaf(noSANKey, "/CN=nosan.example.com", "", "", "", "6")), key: o.read(noSANKey)}
			weakKey := o.key("rsa1024")
			weak := pair{cert: o.read(o.leaf(weakKey, "/CN=weak.example.com", "DNS:weak.example.com", "", "", "8")), key: o.read(weakKey)}
			encCases := map[string]string{}
			for _, k := range []string{"rsa-enc-pkcs8", "rsa-enc-legacy", "ec-enc-legacy"} {
				encCases[k] = o.read(o.key(k))
			}
			f.create("taken_name", o.selfSigned("ec", "taken.example.com"))

			with := func(p pair, kv ...any) map[string]any {
				b := certBody("cert_new", p)
				for i := 0; i+1 < len(kv); i += 2 {
					if kv[i+1] == nil {
						delete(b, kv[i].(string))
					} else {
						b[kv[i].(string)] = kv[i+1]
					}
				}
				return b
			}
			cases := []struct {
				name   string
				body   any
				status int
				code   string
			}{
				{"missing name", with(good, "name", nil), 400, "APIG.2001"},
				{"missing cert_content", with(good, "cert_content", nil), 400, "APIG.2001"},
				{"missing private_key", with(good, "private_key", nil), 400, "APIG.2001"},
				{"empty private_key", with(good, "private_key", ""), 400, "APIG.2001"},
				{"instance without instance_id", with(good, "type", "instance"), 400, "APIG.2001"},
				{"empty body", "", 400, "APIG.2001"},
				{"name too short", with(good, "name", "abc"), 400, "APIG.2012"},
				{"name too long", with(good, "name", "a"+strings.Repeat("b", 50)), 400, "APIG.2012"},
				{"name starts with a digit", with(good, "name", "1cert"), 400, "APIG.2012"},
				{"name with a dash", with(good, "name", "cert-one"), 400, "APIG.2012"},
				{"bad type", with(good, "type", "regional"), 400, "APIG.2012"},
				{"bad instance_id", with(good, "type", "instance", "instance_id", "a/b"), 400, "APIG.2012"},
				{"unknown field", with(good, "colour", "blue"), 400, "APIG.2012"},
				{"name not a string", with(good, "name", 12), 400, "APIG.2012"},
				{"private_key not a string", with(good, "private_key", 12), 400, "APIG.2012"},
				{"not JSON", "{name", 400, "APIG.2012"},
				{"RSA key under 2048 bits", with(weak), 400, "APIG.2012"},
				{"two private keys", with(good, "private_key", good.key+other.key), 400, "APIG.2012"},
				{"name taken", with(good, "name", "taken_name"), 400, "APIG.3325"},
				{"key of another certificate", with(good, "private_key", other.key), 400, "APIG.2101"},
				{"expired", with(expiredPair(t, o)), 400, "APIG.2102"},
				{"chain does not link", with(pair{cert: issued + o.read(wrongCA), key: o.read(issuedKey)}), 400, "APIG.2104"},
				{"wrong trusted_root_ca", with(pair{cert: issued, key: o.read(issuedKey)}, "trusted_root_ca", o.read(wrongCA)), 400, "APIG.2104"},
				{"encrypted PKCS#8 key", with(good, "private_key", encCases["rsa-enc-pkcs8"]), 400, "APIG.2105"},
				{"encrypted legacy RSA key", with(good, "private_key", encCases["rsa-enc-legacy"]), 400, "APIG.2105"},
				{"encrypted legacy EC key", with(good, "private_key", encCases["ec-enc-legacy"]), 400, "APIG.2105"},
				{"certificate not PEM", with(good, "cert_content", "hello"), 400, "APIG.2106"},
				{"certificate bad DER", with(good, "cert_content", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 400, "APIG.2106"},
				{"key in cert_content", with(good, "cert_content", good.cert+good.key), 400, "APIG.2106"},
				{"trusted_root_ca not PEM", with(good, "trusted_root_ca", "nope"), 400, "APIG.2106"},
				{"key not PEM", with(good, "private_key", "hello"), 400, "APIG.2106"},
				{"key bad DER", with(good, "private_key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 400, "APIG.2106"},
				{"no SAN", with(noSAN), 400, "APIG.2109"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					requireAPIGError(t, f.do("POST", f.base(), tc.body), tc.status, tc.code)
				})
			}
			// A chain that verifies, in cert_content and against trusted_root_ca.
			r := f.do("POST", f.base(), with(pair{cert: issued + o.read(ca), key: o.read(issuedKey)}, "name", "chain_ok"))
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			r = f.do("POST", f.base(), with(pair{cert: issued, key: o.read(issuedKey)}, "name", "root_ok", "trusted_root_ca", o.read(ca)))
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			assert.Equal(t, true, r.Map(t)["is_has_trusted_root_ca"])

			// Nothing of the refused imports stayed in the HSM.
			ctx := context.Background()
			page, err := f.env.Store.List(ctx, store.Query{Kind: apig.RecordCertificate, Tenant: f.tenant})
			require.NoError(t, err)
			keys, err := f.env.HSM.List(ctx)
			require.NoError(t, err)
			assert.Len(t, keys, len(page.Records), "one HSM key per stored certificate")
		})
	}
}

// Unknown ids answer 404 APIG.3021; credentials and projects 401/403.
func TestAPIGAccess(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			m := f.create("cert_one", f.o.selfSigned("ec", "one.example.com"))
			id := m["id"].(string)
			body := certBody("cert_one", f.o.selfSigned("ec", "two.example.com"))
			unknown := strings.Repeat("ab", 16)
			for _, path := range []string{unknown, "not-an-id", strings.ToUpper(id)} {
				requireAPIGError(t, f.do("GET", f.base()+"/"+path, nil), 404, "APIG.3021")
				requireAPIGError(t, f.do("PUT", f.base()+"/"+path, body), 404, "APIG.3021")
				requireAPIGError(t, f.do("DELETE", f.base()+"/"+path, nil), 404, "APIG.3021")
			}

			// No token, a bad token: 401 in the family's envelope.
			requireAPIGError(t, f.env.Do("GET", f.base(), "", nil), 401, "APIG.1002")
			requireAPIGError(t, f.env.Do("GET", f.base(), "", nil, "X-Auth-Token", "hsmca_nope"), 401, "APIG.1002")
			requireAPIGError(t, f.env.Do("POST", f.base(), "hsmca_nope", body), 401, "APIG.1002")

			// Another tenant's project_id is 403, whatever the method.
			otherTok := f.env.NewToken("proj2", signer.RoleAdmin)
			for _, call := range []struct{ method, path string }{
				{"GET", f.base()}, {"POST", f.base()}, {"GET", f.base() + "/" + id},
				{"PUT", f.base() + "/" + id}, {"DELETE", f.base() + "/" + id},
			} {
				var b any
				if call.method == "POST" || call.method == "PUT" {
					b = body
				}
				requireAPIGError(t, f.env.Do(call.method, call.path, otherTok, b), 403, "APIG.1005")
			}
			// Its own project does not see proj1's certificate.
			requireAPIGError(t, f.env.Do("GET", "/v2/proj2/apigw/certificates/"+id, otherTok, nil), 404, "APIG.3021")
			// A role without the right is 403 too.
			signerTok := f.env.NewToken("proj1", signer.RoleSigner)
			requireAPIGError(t, f.env.Do("GET", f.base(), signerTok, nil), 403, "APIG.1005")
			// The admin role may.
			adminTok := f.env.NewToken("proj1", signer.RoleAdmin)
			assert.Equal(t, http.StatusOK, f.env.Do("GET", f.base()+"/"+id, adminTok, nil).Status)
			// Still there after every refused call.
			assert.Equal(t, http.StatusOK, f.do("GET", f.base()+"/"+id, nil).Status)
		})
	}
}

// privateKeyNeedles are byte strings of a PEM private key that must not
// appear anywhere: its DER, each base64 line of its body and the secret
// integers themselves.
func privateKeyNeedles(t *testing.T, keyPEM string) [][]byte {
	t.Helper()
	b, _ := pem.Decode([]byte(keyPEM))
	require.NotNil(t, b)
	needles := [][]byte{b.Bytes}
	for _, line := range strings.Split(keyPEM, "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			needles = append(needles, []byte(line))
		}
	}
	var k crypto.PrivateKey
	var err error
	switch b.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	require.NoError(t, err)
	switch k := k.(type) {
	case *rsa.PrivateKey:
		needles = append(needles, k.D.Bytes(), k.Primes[0].Bytes(), k.Primes[1].Bytes(), x509.MarshalPKCS1PrivateKey(k))
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		require.NoError(t, err)
		needles = append(needles, d)
	}
	return needles
}

// The imported private key is nowhere but in the HSM: not in the bolt
// file, not in any Redis value, not in the logs, not in answers; the HSM
// object is sensitive and not extractable.
func TestAPIGPrivateKeyNeverStored(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			var needles [][]byte
			var bodies []string
			for _, kind := range []string{"rsa", "rsa-pkcs1", "ec"} {
				p := f.o.seedPair(kind)
				needles = append(needles, privateKeyNeedles(t, p.key)...)
				r := f.do("POST", f.base(), map[string]any{"name": "leak_" + strings.ReplaceAll(kind, "-", "_"),
					"cert_content": p.cert, "private_key": p.key, "type": "instance", "instance_id": seedInst})
				require.Equal(t, http.StatusOK, r.Status, string(r.Body))
				id := r.Map(t)["id"].(string)
				bodies = append(bodies, string(r.Body))
				g := f.do("GET", f.base()+"/"+id, nil)
				bodies = append(bodies, string(g.Body))

				keyID := f.record(id).Fields[signer.KeyField]
				sensitive, extractable, err := f.env.HSM.KeyAttributes(context.Background(), keyID)
				require.NoError(t, err)
				assert.True(t, sensitive, "CKA_SENSITIVE")
				assert.False(t, extractable, "CKA_EXTRACTABLE")
			}
			// A refused import (the key does not match) leaves nothing either.
			other := f.o.selfSigned("rsa", "other.example.com")
			p := f.o.selfSigned("rsa", "refused.example.com")
			needles = append(needles, privateKeyNeedles(t, other.key)...)
			r := f.do("POST", f.base(), certBody("refused", pair{cert: p.cert, key: other.key}))
			requireAPIGError(t, r, 400, "APIG.2101")
			bodies = append(bodies, string(r.Body))
			// Nor does a refused SM2 signing key (private_key_sign).
			signKey := f.o.selfSigned("ec", "sign.example.com").key
			needles = append(needles, privateKeyNeedles(t, signKey)...)
			b := certBody("refused_sign", p)
			b["private_key_sign"] = signKey
			r = f.do("POST", f.base(), b)
			requireAPIGError(t, r, 400, "APIG.2012")
			bodies = append(bodies, string(r.Body))
			l := f.do("GET", f.base(), nil)
			bodies = append(bodies, string(l.Body))

			haystacks := map[string][]byte{"logs": []byte(f.env.Logs.String()), "answers": []byte(strings.Join(bodies, "\n"))}
			for name, v := range storeValues(t, f.env) {
				haystacks[name] = v
			}
			require.NotEmpty(t, haystacks)
			for name, h := range haystacks {
				for i, n := range needles {
					assert.False(t, containsBytes(h, n), "needle %d of the private key found in %s", i, name)
				}
			}
		})
	}
}

func containsBytes(h, n []byte) bool { return len(n) > 0 && strings.Contains(string(h), string(n)) }

// storeValues returns everything the store holds: the bolt file's bytes,
// or every Redis key's value read as its type requires.
func storeValues(t *testing.T, env *apitest.Env) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	switch st := env.Store.(type) {
	case *boltstore.Store:
		b, err := os.ReadFile(st.Path())
		require.NoError(t, err)
		out["bolt file"] = b
		return out
	}
	require.NotNil(t, env.Redis, "backend %s", env.Backend)
	ctx := context.Background()
	opt, err := redis.ParseURL(env.Redis.URL())
	require.NoError(t, err)
	c := redis.NewClient(opt)
	defer c.Close()
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "*", 1000).Result()
		require.NoError(t, err)
		for _, k := range keys {
			typ, err := c.Type(ctx, k).Result()
			require.NoError(t, err)
			var parts []string
			switch typ {
			case "string":
				v, err := c.Get(ctx, k).Result()
				require.NoError(t, err)
				parts = append(parts, v)
			case "hash":
				v, err := c.HGetAll(ctx, k).Result()
				require.NoError(t, err)
				for hk, hv := range v {
					parts = append(parts, hk, hv)
				}
			case "list":
				v, err := c.LRange(ctx, k, 0, -1).Result()
				require.NoError(t, err)
				parts = append(parts, v...)
			case "set":
				v, err := c.SMembers(ctx, k).Result()
				require.NoError(t, err)
				parts = append(parts, v...)
			case "zset":
				v, err := c.ZRangeWithScores(ctx, k, 0, -1).Result()
				require.NoError(t, err)
				for _, z := range v {
					parts = append(parts, fmt.Sprint(z.Member))
				}
			case "stream":
				v, err := c.XRange(ctx, k, "-", "+").Result()
				require.NoError(t, err)
				for _, m := range v {
					for fk, fv := range m.Values {
						parts = append(parts, fk, fmt.Sprint(fv))
					}
				}
			default:
				t.Fatalf("redis key %s has type %s the scan does not read", k, typ)
			}
			// DUMP too: for values too short to be compressed it is the raw bytes.
			d, err := c.Dump(ctx, k).Result()
			require.NoError(t, err)
			parts = append(parts, d)
			out["redis "+k] = []byte(k + "\x00" + strings.Join(parts, "\x00"))
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	require.NotEmpty(t, out, "redis holds keys after an import")
	return out
}

// The list pages with offset and limit (Huawei's rules: a negative offset
// is 0, a limit of 0 or less is 20, over 500 is 500), filters on every
// field the contract names and shows the short form.
func TestAPIGList(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			o := f.o
			ids := map[string]string{}
			for _, c := range []struct {
				name, kind, typ, inst string
			}{
				{"alpha_one", "ec", "global", ""},
				{"alpha_two", "rsa", "instance", "gw1"},
				{"beta_three", "ec", "instance", "gw2"},
			} {
				p := o.selfSigned(c.kind, strings.ReplaceAll(c.name, "_", "-")+".example.com")
				b := certBody(c.name, p)
				b["type"] = c.typ
				if c.inst != "" {
					b["instance_id"] = c.inst
				}
				r := f.do("POST", f.base(), b)
				require.Equal(t, http.StatusOK, r.Status, string(r.Body))
				ids[c.name] = r.Map(t)["id"].(string)
			}
			type listAnswer struct {
				Size  int              `json:"size"`
				Total int              `json:"total"`
				Certs []map[string]any `json:"certs"`
			}
			list := func(query string) listAnswer {
				t.Helper()
				r := f.do("GET", f.base()+query, nil)
				require.Equal(t, http.StatusOK, r.Status, string(r.Body))
				assert.Len(t, r.Map(t), 3, "exactly size, total, certs")
				var a listAnswer
				r.JSON(t, &a)
				assert.Equal(t, len(a.Certs), a.Size)
				return a
			}
			names := func(a listAnswer) []string {
				var out []string
				for _, c := range a.Certs {
					out = append(out, c["name"].(string))
				}
				return out
			}

			all := list("")
			assert.Equal(t, 3, all.Total)
			assert.Equal(t, []string{"beta_three", "alpha_two", "alpha_one"}, names(all), "newest first")
			item := all.Certs[2]
			assert.Equal(t, ids["alpha_one"], item["id"])
			for _, k := range []string{"id", "name", "type", "instance_id", "project_id", "common_name", "san",
				"not_after", "signature_algorithm", "create_time", "update_time", "is_has_trusted_root_ca", "algorithm_type"} {
				assert.Contains(t, item, k)
			}
			assert.Len(t, item, 13)
			for _, k := range []string{"issuer", "organization", "organizational_unit", "locality", "state", "country",
				"serial_number", "not_before", "version"} {
				assert.NotContains(t, item, k, "the short form has no %s", k)
			}
			assert.Equal(t, "common", item["instance_id"])
			assert.Equal(t, []any{"alpha-one.example.com"}, item["san"])

			p1 := list("?limit=1&offset=1")
			assert.Equal(t, 3, p1.Total)
			assert.Equal(t, []string{"alpha_two"}, names(p1))
			newestFirst := []string{"beta_three", "alpha_two", "alpha_one"}
			for _, q := range []string{"?limit=0", "?limit=-1", "?limit=-9223372036854775808", "?limit="} {
				assert.Equal(t, newestFirst, names(list(q)), "%s: a limit of 0 or less is the default 20", q)
			}
			for _, q := range []string{"?offset=-1", "?offset=-9223372036854775808", "?offset=-5&limit=0"} {
				a := list(q)
				assert.Equal(t, newestFirst, names(a), "%s: a negative offset is 0", q)
				assert.Equal(t, 3, a.Total, q)
			}
			assert.Equal(t, []string{"beta_three"}, names(list("?offset=-3&limit=1")))
			assert.Len(t, list("?limit=100000").Certs, 3, "limit above 500 is clamped")
			assert.Empty(t, list("?offset=10").Certs)
			assert.Equal(t, 3, list("?offset=10").Total)

			for q, want := range map[string][]string{
				"?name=alpha":                       {"alpha_two", "alpha_one"},
				"?name=THREE":                       {"beta_three"},
				"?common_name=alpha-two":            {"alpha_two"},
				"?signature_algorithm=SHA256-RSA":   {"alpha_two"},
				"?signature_algorithm=ECDSA-SHA256": {"beta_three", "alpha_one"},
				"?type=instance":                    {"beta_three", "alpha_two"},
				"?type=global":                      {"alpha_one"},
				"?instance_id=gw2":                  {"beta_three"},
				"?instance_id=common":               {"alpha_one"},
				"?type=instance&name=alpha":         {"alpha_two"},
				"?name=nothing":                     nil,
				"?type=instance&limit=1":            {"beta_three"},
				"?algorithm_type=RSA":               {"alpha_two"},
				"?algorithm_type=ECC":               {"beta_three", "alpha_one"},
				"?algorithm_type=SM2":               nil,
				"?algorithm_type=ECC&type=instance": {"beta_three"},
			} {
				a := list(q)
				assert.Equal(t, want, names(a), q)
				if q == "?type=instance&limit=1" {
					assert.Equal(t, 2, a.Total, q)
				} else {
					assert.Equal(t, len(want), a.Total, q)
				}
			}
			requireAPIGError(t, f.do("GET", f.base()+"?offset=x", nil), 400, "APIG.2012")
			requireAPIGError(t, f.do("GET", f.base()+"?limit=x", nil), 400, "APIG.2012")
			requireAPIGError(t, f.do("GET", f.base()+"?limit=1.5", nil), 400, "APIG.2012")
			requireAPIGError(t, f.do("GET", f.base()+"?algorithm_type=DSA", nil), 400, "APIG.2012")
			requireAPIGError(t, f.do("GET", f.base()+"?algorithm_type=rsa", nil), 400, "APIG.2012")
		})
	}
}

// PUT replaces certificate and key: the record names a new HSM object and
// the old one is destroyed; DELETE destroys the key and frees the quota.
func TestAPIGReplaceAndDelete(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			ctx := context.Background()
			first := f.create("cert_demo", f.o.seedPair("rsa"))
			id := first["id"].(string)
			oldKey := f.record(id).Fields[signer.KeyField]
			require.True(t, f.keyExists(oldKey))

			next := f.o.selfSigned("ec", "next.example.com")
			b := certBody("cert_renamed", next)
			b["type"] = "instance"
			b["instance_id"] = "gw9"
			r := f.do("PUT", f.base()+"/"+id, b)
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			m := r.Map(t)
			assert.Equal(t, id, m["id"])
			assert.Equal(t, "cert_renamed", m["name"])
			assert.Equal(t, "instance", m["type"])
			assert.Equal(t, "gw9", m["instance_id"])
			assert.Equal(t, "next.example.com", m["common_name"])
			assert.Equal(t, "ECDSA-SHA256", m["signature_algorithm"])
			assert.Equal(t, first["create_time"], m["create_time"])
			assert.Equal(t, "RSA", first["algorithm_type"])
			assert.Equal(t, "ECC", m["algorithm_type"], "the replacement's key type")
			assert.Len(t, m, 22)

			rec := f.record(id)
			newKey := rec.Fields[signer.KeyField]
			assert.NotEqual(t, oldKey, newKey)
			assert.Equal(t, "EC256", rec.Fields[signer.KeyAlgorithmField])
			assert.False(t, f.keyExists(oldKey), "the old key is destroyed")
			assert.True(t, f.keyExists(newKey))
			sensitive, extractable, err := f.env.HSM.KeyAttributes(ctx, newKey)
			require.NoError(t, err)
			assert.True(t, sensitive)
			assert.False(t, extractable)
			intents, err := f.env.Store.ListIntents(ctx)
			require.NoError(t, err)
			assert.Empty(t, intents)
			g := f.do("GET", f.base()+"/"+id, nil)
			assert.Equal(t, m, g.Map(t))

			// The old name is free again, the new one taken.
			f.create("cert_demo", f.o.selfSigned("ec", "again.example.com"))
			requireAPIGError(t, f.do("POST", f.base(), certBody("cert_renamed", f.o.selfSigned("ec", "x.example.com"))), 400, "APIG.3325")
			// Renaming onto another certificate's name is refused, and so is
			// an invalid replacement; both leave the certificate as it was.
			requireAPIGError(t, f.do("PUT", f.base()+"/"+id, certBody("cert_demo", next)), 400, "APIG.3325")
			requireAPIGError(t, f.do("PUT", f.base()+"/"+id, certBody("cert_renamed", pair{cert: next.cert, key: f.o.read(f.o.key("ec"))})), 400, "APIG.2101")
			assert.Equal(t, newKey, f.record(id).Fields[signer.KeyField])
			assert.True(t, f.keyExists(newKey))

			used, err := f.env.Store.QuotaUsage(ctx, f.tenant, apig.QuotaCertificates)
			require.NoError(t, err)
			assert.EqualValues(t, 2, used)
			d := f.do("DELETE", f.base()+"/"+id, nil)
			require.Equal(t, http.StatusNoContent, d.Status, string(d.Body))
			assert.Empty(t, d.Body)
			assert.False(t, f.keyExists(newKey), "DELETE destroys the HSM object")
			requireAPIGError(t, f.do("GET", f.base()+"/"+id, nil), 404, "APIG.3021")
			requireAPIGError(t, f.do("DELETE", f.base()+"/"+id, nil), 404, "APIG.3021")
			used, err = f.env.Store.QuotaUsage(ctx, f.tenant, apig.QuotaCertificates)
			require.NoError(t, err)
			assert.EqualValues(t, 1, used)
		})
	}
}

// Every operation leaves its START/SUCCESS or FAIL events; the tenant's
// chain names the certificate.
func TestAPIGEvents(t *testing.T) {
	f := newAPIGFixture(t, "bolt")
	m := f.create("cert_events", f.o.selfSigned("ec", "ev.example.com"))
	id := m["id"].(string)
	require.Equal(t, http.StatusOK, f.do("GET", f.base()+"/"+id, nil).Status)
	require.Equal(t, http.StatusOK, f.do("GET", f.base(), nil).Status)
	require.Equal(t, http.StatusOK, f.do("PUT", f.base()+"/"+id, certBody("cert_events", f.o.selfSigned("ec", "ev2.example.com"))).Status)
	require.Equal(t, http.StatusNoContent, f.do("DELETE", f.base()+"/"+id, nil).Status)
	requireAPIGError(t, f.do("GET", f.base()+"/"+id, nil), 404, "APIG.3021")

	evs, err := f.env.Engine.ListEvents(context.Background(), f.tenant, 0, 0)
	require.NoError(t, err)
	var got []string
	for _, e := range evs {
		if strings.HasPrefix(e.Operation, "APIG_") {
			got = append(got, e.Operation+" "+e.Outcome+" "+e.Resource)
		}
	}
	assert.Equal(t, []string{
		"APIG_CERTIFICATE_CREATE SUCCESS " + id,
		"APIG_CERTIFICATE_RETRIEVE SUCCESS " + id,
		"APIG_CERTIFICATE_RETRIEVE_LIST SUCCESS ",
		"APIG_CERTIFICATE_UPDATE SUCCESS " + id,
		"APIG_CERTIFICATE_DELETE SUCCESS " + id,
		"APIG_CERTIFICATE_RETRIEVE FAIL " + id,
	}, got)
	metrics := f.env.Do("GET", "/metrics", "", nil)
	for _, ev := range []string{`event="APIG_CERTIFICATE_CREATE",stage="START"} 1`,
		`event="APIG_CERTIFICATE_RETRIEVE",stage="FAIL"} 1`, `event="APIG_CERTIFICATE_DELETE",stage="SUCCESS"} 1`} {
		assert.True(t, strings.Contains(string(metrics.Body), ev), ev)
	}
}

// An imported key signs through the keys API under the certificate's id,
// and the signature verifies with the certificate's public key; after a
// replace the same id signs with the new key.
func TestAPIGKeySignsThroughKeysAPI(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newAPIGFixture(t, backend)
			signerTok := f.env.NewToken(f.tenant, signer.RoleSigner)
			msg := []byte("signed by an imported APIG key")
			verify := func(t *testing.T, id string, certPEM string) {
				t.Helper()
				r := f.env.Do("POST", "/v1/keys/"+id+"/sign", signerTok, map[string]any{"message": base64.StdEncoding.EncodeToString(msg)})
				require.Equal(t, http.StatusOK, r.Status, string(r.Body))
				sig, err := base64.StdEncoding.DecodeString(r.Map(t)["signature"].(string))
				require.NoError(t, err)
				cert := apigParseCert(t, certPEM)
				// Verified with the certificate's public key, by the
				// algorithm the keys API picks by default for it.
				require.NoError(t, cert.CheckSignature(sigAlgFor(cert), msg, sig))
			}
			for _, kind := range []string{"rsa", "rsa-pkcs1", "ec", "ec384"} {
				t.Run(kind, func(t *testing.T) {
					p := f.o.selfSigned(kind, kind+".example.com")
					id := f.create("sign_"+strings.ReplaceAll(kind, "-", "_"), p)["id"].(string)
					verify(t, id, p.cert)
				})
			}
			p := f.o.selfSigned("rsa", "before.example.com")
			id := f.create("sign_replace", p)["id"].(string)
			verify(t, id, p.cert)
			q := f.o.selfSigned("ec", "after.example.com")
			r := f.do("PUT", f.base()+"/"+id, certBody("sign_replace", q))
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			verify(t, id, q.cert)
			require.Equal(t, http.StatusNoContent, f.do("DELETE", f.base()+"/"+id, nil).Status)
			r = f.env.Do("POST", "/v1/keys/"+id+"/sign", signerTok, map[string]any{"message": base64.StdEncoding.EncodeToString(msg)})
			assert.Equal(t, http.StatusNotFound, r.Status, string(r.Body))
		})
	}
}

// sigAlgFor is the x509 signature algorithm that the keys API's default
// for the certificate's key produces (RS256, ES256/ES384 by curve).
func sigAlgFor(c *x509.Certificate) x509.SignatureAlgorithm {
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok && k.Curve.Params().BitSize == 384 {
		return x509.ECDSAWithSHA384
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
		return x509.ECDSAWithSHA256
	}
	return x509.SHA256WithRSA
}
