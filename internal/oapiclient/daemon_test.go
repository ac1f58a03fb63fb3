package oapiclient_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/oapiclient"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
)

// TestGeneratedClientAgainstTLSDaemon runs hsmcad as it is deployed (its
// configuration from the environment, HTTPS with administrators' client
// certificates) and uses the generated client as a user would: an
// administrator authenticated by TLS alone (the document's
// adminCertificate scheme, x-hsmca-mutual-tls) creates a tenant token,
// and the token drives the tenant's families.
func TestGeneratedClientAgainstTLSDaemon(t *testing.T) {
	tok := testenv.NewToken(t)
	for _, e := range config.Env {
		if _, ok := os.LookupEnv(e.Name); ok {
			t.Setenv(e.Name, "")
			os.Unsetenv(e.Name)
		}
	}
	dir := t.TempDir()
	t.Setenv("HSMCA_DATA_DIR", dir)
	t.Setenv("HSMCA_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("HSMCA_PKCS11_MODULE", tok.Module)
	t.Setenv("HSMCA_TOKEN_LABEL", tok.Label)
	t.Setenv("HSMCA_PIN_FILE", tok.PINFile)
	t.Setenv("HSMCA_ISSUER_ALT_NAME", "https://dts.example.com/iaca")
	cfg, err := config.Load("")
	require.NoError(t, err)
	serverCA := testpki.NewCA(t, "hsmca test server CA")
	adminCA := testpki.NewCA(t, "hsmca test admin CA")
	server := serverCA.Issue(t, testpki.Options{CommonName: "hsmcad", Server: true, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	cfg.TLS.Cert, cfg.TLS.Key = server.WriteFiles(t, dir, "server")
	cfg.TLS.ClientCA = filepath.Join(dir, "admin-ca.pem")
	require.NoError(t, os.WriteFile(cfg.TLS.ClientCA, adminCA.PEM(), 0o600))

	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Shutdown(context.Background()) })
	ctx := context.Background()

	// The first administrator, as `hsmca admin bootstrap` makes it.
	super := adminCA.Issue(t, testpki.Options{CommonName: "root"})
	raw, err := json.Marshal(api.OpsAdminRequest{Certificate: string(super.PEM()), Username: "root"})
	require.NoError(t, err)
	sock := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", cfg.AdminSocket)
		}}}
	resp, err := sock.Post("http://hsmcad/ops/admins", "application/json", bytes.NewReader(raw))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	base := "https://" + d.Addr()
	clientAs := func(cert *testpki.Cert) *oapiclient.ClientWithResponses {
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cert != nil {
			tc.Certificates = []tls.Certificate{cert.TLS()}
		}
		c, err := oapiclient.NewClientWithResponses(base, oapiclient.WithHTTPClient(&http.Client{
			Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}))
		require.NoError(t, err)
		return c
	}
	admin, anon := clientAs(super), clientAs(nil)

	// Platform routes: the TLS client certificate is the credential.
	admins, err := admin.ListAdminsWithResponse(ctx)
	require.NoError(t, err)
	require.NotNil(t, admins.JSON200, "%d %s", admins.StatusCode(), admins.Body)
	require.Len(t, *admins.JSON200, 1)
	assert.Equal(t, "root", (*admins.JSON200)[0].Username)
	created, err := admin.CreateTokenWithResponse(ctx, oapiclient.TokenCreate{Tenant: "acme",
		Roles: []oapiclient.TenantRole{oapiclient.TenantRoleAdmin}})
	require.NoError(t, err)
	require.NotNil(t, created.JSON201, "%d %s", created.StatusCode(), created.Body)
	noCert, err := anon.ListAdminsWithResponse(ctx)
	require.NoError(t, err)
	require.NotNil(t, noCert.JSON401, "%d %s", noCert.StatusCode(), noCert.Body)

	// Tenant routes, with the token.
	bearer := header("Authorization", "Bearer "+created.JSON201.Token)
	k, err := anon.CreateKeyWithResponse(ctx, oapiclient.KeyCreate{Algorithm: oapiclient.KeyCreateAlgorithmED25519}, bearer)
	require.NoError(t, err)
	require.NotNil(t, k.JSON201, "%d %s", k.StatusCode(), k.Body)
	msg := oapiclient.Base64(base64.StdEncoding.EncodeToString([]byte("over TLS")))
	s, err := anon.SignWithKeyWithResponse(ctx, k.JSON201.Id, oapiclient.SignRequest{Message: &msg}, bearer)
	require.NoError(t, err)
	require.NotNil(t, s.JSON200, "%d %s", s.StatusCode(), s.Body)
	assert.Equal(t, oapiclient.SigningAlgorithmEdDSA, s.JSON200.Algorithm)

	var rootBody oapiclient.DtsRootCreate
	require.NoError(t, rootBody.FromDtsManagedRootCreate(oapiclient.DtsManagedRootCreate{OrganisationName: "Example Inc."}))
	root, err := anon.CreateDtsRootWithResponse(ctx, rootBody, bearer)
	require.NoError(t, err)
	require.NotNil(t, root.JSON201, "%d %s", root.StatusCode(), root.Body)

	dn := oapiclient.PcaDistinguishedName{CommonName: ptr("TLS Root"), Country: ptr("DE"), State: ptr("Berlin"),
		Locality: ptr("Berlin"), Organization: ptr("hsmca tests"), OrganizationalUnit: ptr("PKI")}
	ca, err := anon.CreatePcaCAWithResponse(ctx, oapiclient.PcaCACreate{Type: oapiclient.PcaCATypeROOT,
		KeyAlgorithm: oapiclient.PcaKeyAlgorithmEC256, DistinguishedName: dn,
		SignatureAlgorithm: ptr(oapiclient.PcaSignatureAlgorithmSHA256),
		Validity:           &oapiclient.PcaValidity{Type: oapiclient.PcaValidityTypeYEAR, Value: 1}}, bearer)
	require.NoError(t, err)
	require.NotNil(t, ca.JSON200, "%d %s", ca.StatusCode(), ca.Body)

	// A tenant token on a platform route: 403 in the CZERTAINLY envelope.
	forbidden, err := anon.ListAdminsWithResponse(ctx, bearer)
	require.NoError(t, err)
	require.NotNil(t, forbidden.JSON403, "%d %s", forbidden.StatusCode(), forbidden.Body)
	assert.NotEmpty(t, forbidden.JSON403.Message)
}
