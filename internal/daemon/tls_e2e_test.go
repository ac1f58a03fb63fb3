package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
)

type tlsClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newTLSClient(t *testing.T, base string, serverCA *testpki.CA, cert *testpki.Cert) *tlsClient {
	pool := x509.NewCertPool()
	pool.AddCert(serverCA.Cert)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{cert.TLS()}
	}
	return &tlsClient{t: t, base: base, c: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}}
}

func (c *tlsClient) try(method, path, token string, body any, headers ...string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(c.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func (c *tlsClient) do(method, path, token string, body any, headers ...string) (int, []byte) {
	c.t.Helper()
	code, raw, err := c.try(method, path, token, body, headers...)
	require.NoError(c.t, err)
	return code, raw
}

// opsPost calls the daemon's admin socket, as the ops CLI does.
func opsPost(t *testing.T, sock, path string, body, out any) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	resp, err := client.Post("http://hsmcad"+path, "application/json", bytes.NewReader(raw))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		require.NoError(t, json.Unmarshal(b, out), string(b))
	}
	return resp.StatusCode
}

// TestTLSClientCertificateAdmins runs the daemon over TLS with client
// certificate authentication: a superAdministrator bootstrapped over the
// admin socket creates an administrator, who can list but not create;
// once disabled, the administrator's certificate is refused.
func TestTLSClientCertificateAdmins(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	dir := t.TempDir()
	serverCA := testpki.NewCA(t, "hsmca test server CA")
	clientCA := testpki.NewCA(t, "hsmca test admin CA")
	server := serverCA.Issue(t, testpki.Options{CommonName: "hsmcad", Server: true,
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}})
	cfg.TLS.Cert, cfg.TLS.Key = server.WriteFiles(t, dir, "server")
	cfg.TLS.ClientCA = filepath.Join(dir, "client-ca.pem")
	require.NoError(t, os.WriteFile(cfg.TLS.ClientCA, clientCA.PEM(), 0o600))

	d, logs := startDaemon(t, cfg, nil)
	base := "https://" + d.Addr()

	superCert := clientCA.Issue(t, testpki.Options{CommonName: "root"})
	var boot api.OpsAdminResponse
	code := opsPost(t, cfg.AdminSocket, "/ops/admins", api.OpsAdminRequest{Certificate: string(superCert.PEM()), Username: "root"}, &boot)
	require.Equal(t, http.StatusCreated, code)
	assert.Equal(t, "superAdministrator", boot.Role)
	code = opsPost(t, cfg.AdminSocket, "/ops/admins", api.OpsAdminRequest{Certificate: clientCA.Issue(t, testpki.Options{}).B64(), Username: "late"}, nil)
	assert.Equal(t, http.StatusConflict, code, "only the first administrator is bootstrapped without --recover")

	super := newTLSClient(t, base, serverCA, superCert)
	readerCert := clientCA.Issue(t, testpki.Options{CommonName: "reader"})
	code, body := super.do("POST", "/v1/admins", "", map[string]any{
		"adminCertificate": readerCert.B64(), "username": "reader", "name": "Rea", "surname": "Der",
		"email": "reader@example.com", "role": "administrator", "enabled": true,
	})
	require.Equal(t, http.StatusCreated, code, string(body))
	var created struct {
		UUID string `json:"uuid"`
	}
	require.NoError(t, json.Unmarshal(body, &created))

	reader := newTLSClient(t, base, serverCA, readerCert)
	code, body = reader.do("GET", "/v1/admins", "", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	var list []map[string]any
	require.NoError(t, json.Unmarshal(body, &list))
	assert.Len(t, list, 2)
	code, body = reader.do("POST", "/v1/admins", "", map[string]any{
		"adminCertificate": clientCA.Issue(t, testpki.Options{}).B64(), "username": "x", "name": "X", "surname": "Y",
		"email": "x@example.com", "role": "administrator",
	})
	assert.Equal(t, http.StatusForbidden, code, string(body))
	assert.JSONEq(t, `{"message":"this credential lacks the role for this operation"}`, string(body))

	code, body = super.do("PUT", "/v1/admins/"+created.UUID+"/disable", "", nil)
	require.Equal(t, http.StatusNoContent, code, string(body))
	code, _ = reader.do("GET", "/v1/admins", "", nil)
	assert.Equal(t, http.StatusUnauthorized, code, "a disabled admin's certificate is refused")

	// A certificate of the client CA that no admin holds: 401.
	stranger := newTLSClient(t, base, serverCA, clientCA.Issue(t, testpki.Options{}))
	code, _ = stranger.do("GET", "/v1/admins", "", nil)
	assert.Equal(t, http.StatusUnauthorized, code)

	// A certificate from another CA: Go's client does not even offer it
	// (the server names its acceptable CAs), so the call is anonymous...
	foreignCert := testpki.NewCA(t, "foreign").Issue(t, testpki.Options{})
	foreign := newTLSClient(t, base, serverCA, foreignCert)
	code, _ = foreign.do("GET", "/v1/admins", "", nil)
	assert.Equal(t, http.StatusUnauthorized, code)
	// ...and forced on the server, it fails the handshake.
	forced := newTLSClient(t, base, serverCA, nil)
	pair := foreignCert.TLS()
	forced.c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &pair, nil
	}
	_, _, err := forced.try("GET", "/v1/admins", "", nil)
	assert.Error(t, err, "a client certificate the client CA did not issue is refused by TLS")

	// Token callers present no certificate; the header is no credential
	// without trusted-proxy mode.
	anon := newTLSClient(t, base, serverCA, nil)
	var tokResp api.OpsTokenResponse
	require.Equal(t, http.StatusOK, opsPost(t, cfg.AdminSocket, "/ops/tokens", api.OpsTokenRequest{Tenant: "t1", Roles: []string{"auditor"}}, &tokResp))
	code, body = anon.do("GET", "/v1/events", tokResp.Token, nil)
	assert.Equal(t, http.StatusOK, code, string(body))
	code, _ = anon.do("GET", "/v1/admins", "", nil, "X-APP-CERTIFICATE", superCert.B64())
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = super.do("GET", "/v1/events", tokResp.Token, nil)
	assert.Equal(t, http.StatusOK, code, "with both, a tenant route uses the token")

	require.NoError(t, d.Shutdown(context.Background()))
	assert.NotContains(t, logs.String(), tokResp.Token)
	assert.Contains(t, logs.String(), "administrator certificate refused")
}
