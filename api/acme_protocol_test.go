package api_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	acmesvc "github.com/hsmca/hsmca/signer/acme"
)

// acmeClient is a minimal ACME client for the protocol's edge cases.
type acmeClient struct {
	e     *acmeEnv
	key   crypto.Signer
	kid   string
	nonce string
}

func (e *acmeEnv) client(key crypto.Signer) *acmeClient {
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(e.t, err)
		key = k
	}
	return &acmeClient{e: e, key: key}
}

func (c *acmeClient) url(path string) string { return c.e.base + "/acme/" + c.e.dirID + path }

func (c *acmeClient) Nonce() (string, error) {
	if c.nonce == "" {
		r := c.e.Do("HEAD", "/acme/"+c.e.dirID+"/new-nonce", "", nil)
		require.Equal(c.e.t, http.StatusOK, r.Status)
		c.nonce = r.Header.Get("Replay-Nonce")
	}
	n := c.nonce
	c.nonce = ""
	return n, nil
}

func algOf(k crypto.Signer) jose.SignatureAlgorithm {
	switch k.(type) {
	case ed25519.PrivateKey:
		return jose.EdDSA
	case *ecdsa.PrivateKey:
		if k.(*ecdsa.PrivateKey).Curve == elliptic.P384() {
			return jose.ES384
		}
		return jose.ES256
	}
	return jose.RS256
}

// sign makes the JWS of a request to url; byKey embeds the key (jwk).
func (c *acmeClient) sign(key crypto.Signer, url string, payload []byte, byKey bool, nonce bool) []byte {
	opts := &jose.SignerOptions{EmbedJWK: byKey}
	if nonce {
		opts.NonceSource = c
	}
	opts.WithHeader("url", url)
	if !byKey {
		opts.WithHeader("kid", c.kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: algOf(key), Key: key}, opts)
	require.NoError(c.e.t, err)
	jws, err := s.Sign(payload)
	require.NoError(c.e.t, err)
	return []byte(jws.FullSerialize())
}

// post sends a signed request (payload nil: POST-as-GET).
func (c *acmeClient) post(path string, payload any, byKey bool) *apitest.Response {
	c.e.t.Helper()
	return c.postBody(path, c.sign(c.key, c.url(path), c.payload(payload), byKey, true))
}

func (c *acmeClient) payload(p any) []byte {
	if p == nil {
		return []byte{}
	}
	b, err := json.Marshal(p)
	require.NoError(c.e.t, err)
	return b
}

func (c *acmeClient) postBody(path string, body []byte) *apitest.Response {
	c.e.t.Helper()
	r := c.e.Do("POST", "/acme/"+c.e.dirID+path, "", body, "Content-Type", "application/jose+json")
	if n := r.Header.Get("Replay-Nonce"); n != "" {
		c.nonce = n
	}
	return r
}

// problem asserts a problem document of ACME type typ with status.
func acmeProblem(t *testing.T, r *apitest.Response, status int, typ string) string {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	assert.Equal(t, "application/problem+json", r.Header.Get("Content-Type"))
	m := r.Map(t)
	assert.Equal(t, "urn:ietf:params:acme:error:"+typ, m["type"], "body: %s", r.Body)
	assert.EqualValues(t, status, m["status"])
	return m["detail"].(string)
}

func (c *acmeClient) register() {
	c.e.t.Helper()
	r := c.post("/new-account", map[string]any{"termsOfServiceAgreed": true, "contact": []string{"mailto:ops@acme.test"}}, true)
	require.Equal(c.e.t, http.StatusCreated, r.Status, "body: %s", r.Body)
	c.kid = r.Header.Get("Location")
	require.NotEmpty(c.e.t, c.kid)
}

// order creates an order for names and returns its URL path and object.
func (c *acmeClient) order(names ...string) (string, map[string]any) {
	c.e.t.Helper()
	var ids []map[string]string
	for _, n := range names {
		typ := "dns"
		if net.ParseIP(n) != nil {
			typ = "ip"
		}
		ids = append(ids, map[string]string{"type": typ, "value": n})
	}
	r := c.post("/new-order", map[string]any{"identifiers": ids}, false)
	require.Equal(c.e.t, http.StatusCreated, r.Status, "body: %s", r.Body)
	return c.path(r.Header.Get("Location")), r.Map(c.e.t)
}

func (c *acmeClient) path(url string) string {
	return strings.TrimPrefix(url, c.url(""))
}

func (c *acmeClient) thumbprint() string {
	jwk := jose.JSONWebKey{Key: c.key.Public()}
	b, err := jwk.Thumbprint(crypto.SHA256)
	require.NoError(c.e.t, err)
	return base64.RawURLEncoding.EncodeToString(b)
}

// challenge finds the challenge of type typ of an authorization.
func (c *acmeClient) challenge(authzURL, typ string) map[string]any {
	c.e.t.Helper()
	r := c.post(c.path(authzURL), nil, false)
	require.Equal(c.e.t, http.StatusOK, r.Status, "body: %s", r.Body)
	for _, ch := range r.Map(c.e.t)["challenges"].([]any) {
		if m := ch.(map[string]any); m["type"] == typ {
			return m
		}
	}
	c.e.t.Fatalf("no %s challenge", typ)
	return nil
}

// solveHTTP serves the key authorization of an authorization's http-01
// challenge on the http-01 port and asks for validation.
func (c *acmeClient) solveHTTP(authzURL string) map[string]any {
	c.e.t.Helper()
	ch := c.challenge(authzURL, "http-01")
	token := ch["token"].(string)
	stop := c.e.serveHTTP01(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/acme-challenge/"+token {
			_, _ = w.Write([]byte(token + "." + c.thumbprint()))
			return
		}
		http.NotFound(w, r)
	})
	defer stop()
	r := c.post(c.path(ch["url"].(string)), map[string]any{}, false)
	require.Equal(c.e.t, http.StatusOK, r.Status, "body: %s", r.Body)
	return r.Map(c.e.t)
}

// serveHTTP01 serves h on the validator's http-01 port until stopped.
func (e *acmeEnv) serveHTTP01(h http.HandlerFunc) func() {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(e.httpPort))
	require.NoError(e.t, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }
}

func csrFor(t *testing.T, key crypto.Signer, cn string, names ...string) string {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(der)
}

// issue runs an order for names over http-01 to its certificate.
func (c *acmeClient) issue(certKey crypto.Signer, names ...string) *x509.Certificate {
	c.e.t.Helper()
	o, obj := c.order(names...)
	for _, a := range obj["authorizations"].([]any) {
		ch := c.solveHTTP(a.(string))
		require.Equal(c.e.t, "valid", ch["status"], "%v", ch)
	}
	r := c.post(o, nil, false)
	require.Equal(c.e.t, "ready", r.Map(c.e.t)["status"])
	r = c.post(o+"/finalize", map[string]any{"csr": csrFor(c.e.t, certKey, "", names...)}, false)
	require.Equal(c.e.t, http.StatusOK, r.Status, "body: %s", r.Body)
	m := r.Map(c.e.t)
	require.Equal(c.e.t, "valid", m["status"])
	r = c.post(c.path(m["certificate"].(string)), nil, false)
	require.Equal(c.e.t, http.StatusOK, r.Status, "body: %s", r.Body)
	assert.Equal(c.e.t, "application/pem-certificate-chain", r.Header.Get("Content-Type"))
	return pcaParseCert(c.e.t, string(r.Body))
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// The protocol's refusals are problem documents of the right type, and
// its rules hold: nonces once only, the url header, the policy, the CSR,
// finalize before ready, revocation by the certificate's key,
// deactivation, key rollover, renewal information and replaces, on both
// stores.
func TestACMEProtocol(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			e := newACME(t, backend, map[string]any{"allowed_domains": []string{"acme.test"},
				"allowed_ip_ranges": []string{"127.0.0.0/8"}, "max_validity_days": 30})
			dir := e.Do("GET", "/acme/"+e.dirID+"/directory", "", nil)
			require.Equal(t, http.StatusOK, dir.Status)
			assert.Equal(t, e.Server.URL+"/acme/"+e.dirID+"/new-order", dir.Map(t)["newOrder"])
			acmeProblem(t, e.Do("GET", "/acme/nope/directory", "", nil), http.StatusNotFound, "malformed")

			c := e.client(nil)
			// A nonce is good once.
			n, _ := c.Nonce()
			body := func(nonce string) []byte {
				c.nonce = nonce
				return c.sign(c.key, c.url("/new-account"), []byte(`{"termsOfServiceAgreed":true}`), true, true)
			}
			first := body(n)
			r := c.postBody("/new-account", first)
			require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Body)
			c.kid = r.Header.Get("Location")
			acmeProblem(t, c.postBody("/new-account", first), http.StatusBadRequest, "badNonce")
			acmeProblem(t, c.postBody("/new-account", body("made-up")), http.StatusBadRequest, "badNonce")
			// The same key finds the same account.
			r = c.post("/new-account", map[string]any{"onlyReturnExisting": true}, true)
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
			assert.Equal(t, c.kid, r.Header.Get("Location"))
			// The url header must be the request's.
			acmeProblem(t, c.postBody("/new-order", c.sign(c.key, c.url("/new-account"), []byte(`{}`), false, true)),
				http.StatusForbidden, "unauthorized")
			// Another key without an account.
			acmeProblem(t, e.client(nil).post("/new-account", map[string]any{"onlyReturnExisting": true}, true),
				http.StatusBadRequest, "accountDoesNotExist")

			// The policy.
			acmeProblem(t, c.post("/new-order", map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "www.example.com"}}}, false),
				http.StatusBadRequest, "rejectedIdentifier")
			acmeProblem(t, c.post("/new-order", map[string]any{"identifiers": []map[string]string{{"type": "ip", "value": "10.1.2.3"}}}, false),
				http.StatusBadRequest, "rejectedIdentifier")
			acmeProblem(t, c.post("/new-order", map[string]any{"identifiers": []map[string]string{{"type": "email", "value": "a@acme.test"}}}, false),
				http.StatusBadRequest, "unsupportedIdentifier")

			// Finalize before the authorizations are valid; a CSR for
			// other names.
			o, obj := c.order("a.acme.test")
			acmeProblem(t, c.post(o+"/finalize", map[string]any{"csr": csrFor(t, newKey(t), "", "a.acme.test")}, false),
				http.StatusForbidden, "orderNotReady")
			ch := c.solveHTTP(obj["authorizations"].([]any)[0].(string))
			require.Equal(t, "valid", ch["status"])
			acmeProblem(t, c.post(o+"/finalize", map[string]any{"csr": csrFor(t, newKey(t), "", "b.acme.test")}, false),
				http.StatusBadRequest, "badCSR")
			acmeProblem(t, c.post(o+"/finalize", map[string]any{"csr": csrFor(t, c.key, "", "a.acme.test")}, false),
				http.StatusBadRequest, "badCSR")
			certKey := newKey(t)
			r = c.post(o+"/finalize", map[string]any{"csr": csrFor(t, certKey, "a.acme.test", "a.acme.test")}, false)
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
			r = c.post(c.path(r.Map(t)["certificate"].(string)), nil, false)
			cert := pcaParseCert(t, string(r.Body))
			assert.Equal(t, 30*24*time.Hour, cert.NotAfter.Sub(cert.NotBefore), "max_validity_days")
			// The PCA family lists it.
			list := e.ok(e.do("GET", pcaCerts+"?limit=100", nil), http.StatusOK)
			assert.Contains(t, mustJSON(t, list), cert.SerialNumber.Text(16))

			// An IP identifier, over http-01.
			ipCert := c.issue(newKey(t), "127.0.0.1")
			assert.Equal(t, "127.0.0.1", ipCert.IPAddresses[0].String())

			// Renewal information, then an order that replaces it.
			ari := base64.RawURLEncoding.EncodeToString(cert.AuthorityKeyId) + "." +
				base64.RawURLEncoding.EncodeToString(cert.SerialNumber.Bytes())
			ri := e.Do("GET", "/acme/"+e.dirID+"/renewal-info/"+ari, "", nil)
			require.Equal(t, http.StatusOK, ri.Status, "body: %s", ri.Body)
			assert.NotEmpty(t, ri.Header.Get("Retry-After"))
			var info struct {
				SuggestedWindow struct{ Start, End time.Time } `json:"suggestedWindow"`
			}
			ri.JSON(t, &info)
			assert.True(t, info.SuggestedWindow.Start.After(cert.NotBefore) && info.SuggestedWindow.End.Before(cert.NotAfter))
			r = c.post("/new-order", map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "a.acme.test"}}, "replaces": ari}, false)
			require.Equal(t, http.StatusCreated, r.Status, "body: %s", r.Body)
			assert.Equal(t, ari, r.Map(t)["replaces"])

			// Revocation by the certificate's key (jwk), then again.
			der := base64.RawURLEncoding.EncodeToString(cert.Raw)
			other := e.client(nil)
			acmeProblem(t, other.post("/revoke-cert", map[string]any{"certificate": der}, true), http.StatusForbidden, "unauthorized")
			revoke := func() *apitest.Response {
				return c.postBody("/revoke-cert", c.sign(certKey, c.url("/revoke-cert"), c.payload(map[string]any{"certificate": der, "reason": 1}), true, true))
			}
			r = revoke()
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
			e.requireRevoked(cert)
			acmeProblem(t, revoke(), http.StatusBadRequest, "alreadyRevoked")
			acmeProblem(t, c.post("/revoke-cert", map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(ipCert.Raw), "reason": 7}, false),
				http.StatusBadRequest, "badRevocationReason")
			ri = e.Do("GET", "/acme/"+e.dirID+"/renewal-info/"+ari, "", nil)
			ri.JSON(t, &info)
			assert.False(t, info.SuggestedWindow.End.After(time.Now().Add(time.Minute)), "a revoked certificate is due now")

			// Key rollover: the new key signs from now on, the old one
			// finds no account.
			newK, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			require.NoError(t, err)
			oldJWK, err := json.Marshal(jose.JSONWebKey{Key: c.key.Public()})
			require.NoError(t, err)
			inner := c.sign(newK, c.url("/key-change"), c.payload(map[string]any{"account": c.kid, "oldKey": json.RawMessage(oldJWK)}), true, false)
			r = c.postBody("/key-change", c.sign(c.key, c.url("/key-change"), inner, false, true))
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
			oldKey := c.key
			c.key = newK
			r = c.post(c.path(c.kid), nil, false)
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
			old := e.client(oldKey)
			acmeProblem(t, old.post("/new-account", map[string]any{"onlyReturnExisting": true}, true), http.StatusBadRequest, "accountDoesNotExist")

			// Deactivation: the account can do nothing more.
			r = c.post(c.path(c.kid), map[string]any{"status": "deactivated"}, false)
			require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
			assert.Equal(t, "deactivated", r.Map(t)["status"])
			acmeProblem(t, c.post("/new-order", map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "c.acme.test"}}}, false),
				http.StatusForbidden, "unauthorized")

			// Every operation left its events.
			ev := e.ok(e.Do("GET", "/v1/events?limit=500", e.NewToken("t1", "auditor"), nil), http.StatusOK)
			raw := mustJSON(t, ev)
			for _, op := range []string{"ACME_DIRECTORY_CREATE", "ACME_ACCOUNT_CREATE", "ACME_ORDER_CREATE", "ACME_CHALLENGE_VALIDATE",
				"ACME_ORDER_FINALIZE", "ACME_CERTIFICATE_REVOKE", "ACME_ACCOUNT_KEY_CHANGE", "ACME_ACCOUNT_DEACTIVATE", "PCA_CERTIFICATE_ISSUE_CSR",
				"ACME_ORDER_RETRIEVE", "ACME_AUTHZ_RETRIEVE", "ACME_CERTIFICATE_DOWNLOAD", "ACME_ACCOUNT_RETRIEVE"} {
				assert.Contains(t, raw, op)
			}
		})
	}
}

// The validator: http-01 follows a redirect only to the http-01 port or
// the https port, never elsewhere; dns-01 reads the TXT record;
// tls-alpn-01 checks the acme-tls/1 certificate (RFC 8737).
func TestACMEValidation(t *testing.T) {
	e := newACME(t, "bolt", map[string]any{"allowed_domains": []string{"acme.test"}})
	c := e.client(nil)
	c.register()

	// A redirect to another port is refused, the challenge invalid.
	elsewhere := freePort(t)
	_, obj := c.order("redirect.acme.test")
	az := obj["authorizations"].([]any)[0].(string)
	ch := c.challenge(az, "http-01")
	stop := e.serveHTTP01(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://redirect.acme.test:"+strconv.Itoa(elsewhere)+r.URL.Path, http.StatusFound)
	})
	r := c.post(c.path(ch["url"].(string)), map[string]any{}, false)
	stop()
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	m := r.Map(t)
	assert.Equal(t, "invalid", m["status"])
	assert.Contains(t, m["error"].(map[string]any)["detail"], "only port")

	// A redirect to the same port (another path) is followed.
	_, obj = c.order("follow.acme.test")
	az = obj["authorizations"].([]any)[0].(string)
	ch = c.challenge(az, "http-01")
	token := ch["token"].(string)
	stop = e.serveHTTP01(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			_, _ = w.Write([]byte(token + "." + c.thumbprint()))
			return
		}
		http.Redirect(w, r, "/moved", http.StatusMovedPermanently)
	})
	r = c.post(c.path(ch["url"].(string)), map[string]any{}, false)
	stop()
	assert.Equal(t, "valid", r.Map(t)["status"], "body: %s", r.Body)

	// A wrong key authorization is incorrectResponse.
	_, obj = c.order("wrong.acme.test")
	ch = c.challenge(obj["authorizations"].([]any)[0].(string), "http-01")
	stop = e.serveHTTP01(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("nope")) })
	r = c.post(c.path(ch["url"].(string)), map[string]any{}, false)
	stop()
	assert.Contains(t, r.Map(t)["error"].(map[string]any)["type"], "incorrectResponse")

	// dns-01.
	_, obj = c.order("txt.acme.test")
	ch = c.challenge(obj["authorizations"].([]any)[0].(string), "dns-01")
	sum := sha256.Sum256([]byte(ch["token"].(string) + "." + c.thumbprint()))
	e.dns.addTXT("_acme-challenge.txt.acme.test", base64.RawURLEncoding.EncodeToString(sum[:]))
	r = c.post(c.path(ch["url"].(string)), map[string]any{}, false)
	assert.Equal(t, "valid", r.Map(t)["status"], "body: %s", r.Body)

	// tls-alpn-01.
	_, obj = c.order("alpn.acme.test")
	ch = c.challenge(obj["authorizations"].([]any)[0].(string), "tls-alpn-01")
	stop = e.serveALPN("alpn.acme.test", ch["token"].(string)+"."+c.thumbprint())
	r = c.post(c.path(ch["url"].(string)), map[string]any{}, false)
	stop()
	assert.Equal(t, "valid", r.Map(t)["status"], "body: %s", r.Body)
}

// serveALPN answers acme-tls/1 on the validator's tls-alpn-01 port with
// the RFC 8737 certificate for name and keyAuth.
func (e *acmeEnv) serveALPN(name, keyAuth string) func() {
	e.t.Helper()
	key := newKey(e.t)
	sum := sha256.Sum256([]byte(keyAuth))
	ext, err := asn1.Marshal(sum[:])
	require.NoError(e.t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}, Critical: true, Value: ext}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(e.t, err)
	l, err := tls.Listen("tcp", "127.0.0.1:"+strconv.Itoa(e.tlsPort), &tls.Config{NextProtos: []string{"acme-tls/1"},
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	require.NoError(e.t, err)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_ = conn.(*tls.Conn).Handshake()
			_ = conn.Close()
		}
	}()
	return func() { _ = l.Close() }
}

// An account holds at most OpenOrdersPerAccount open orders: the next is
// rateLimited until one is finalized.
func TestACMEOpenOrdersPerAccount(t *testing.T) {
	e := newACMEWith(t, "redis", map[string]any{"allowed_domains": []string{"acme.test"}},
		apitest.Options{PublicBaseURL: apitest.SelfURL}, func(c *acmesvc.Config) { c.OpenOrdersPerAccount = 2 })
	c := e.client(nil)
	c.register()
	o, obj := c.order("one.acme.test")
	c.order("two.acme.test")
	acmeProblem(t, c.post("/new-order", map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "three.acme.test"}}}, false),
		http.StatusTooManyRequests, "rateLimited")
	require.Equal(t, "valid", c.solveHTTP(obj["authorizations"].([]any)[0].(string))["status"])
	r := c.post(o+"/finalize", map[string]any{"csr": csrFor(t, newKey(t), "", "one.acme.test")}, false)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	c.order("three.acme.test")
}
