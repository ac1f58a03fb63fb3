package daemon

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// The configured public base URL, checked and without its trailing
// slash, is what the certificates the daemon signs under a CA name.
func TestPublicBaseURLInCertificates(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	cfg.PublicBaseURL = "https://ca.example.com/pki/"
	d, logs := startDaemon(t, cfg, nil)
	waitStatus(t, "http://"+d.Addr()+"/readyz", 200, 30*time.Second)
	assert.NotContains(t, logs.String(), "public_base_url is not set")
	c := newClient(t, d, "acme")

	root := createPCARoot(t, c)
	a := c.do("POST", "/v1/private-certificate-authorities/"+root+"/crl/enable", map[string]any{"valid_days": 7})
	require.Equal(t, 204, a.status, "%s", a.body)
	a = c.do("POST", "/v1/private-certificate-authorities", map[string]any{"type": "SUBORDINATE",
		"distinguished_name": map[string]any{"common_name": "URL CA", "country": "DE", "state": "Berlin",
			"locality": "Berlin", "organization": "hsmca tests", "organizational_unit": "PKI"},
		"key_algorithm": "EC256", "issuer_id": root, "signature_algorithm": "SHA256",
		"validity": map[string]any{"type": "YEAR", "value": 1}})
	require.Equal(t, 200, a.status, "%s", a.body)
	sub := a.m()["ca_id"].(string)
	a = c.do("POST", "/v1/private-certificate-authorities/"+sub+"/export", nil)
	require.Equal(t, 200, a.status, "%s", a.body)
	b, _ := pem.Decode([]byte(a.m()["certificate"].(string)))
	require.NotNil(t, b)
	cert, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	want := "https://ca.example.com/pki/v1/private-certificate-authorities/" + root
	assert.Equal(t, []string{want + "/crl"}, cert.CRLDistributionPoints)
	assert.Equal(t, []string{want + "/certificate"}, cert.IssuingCertificateURL)
}

// Unset, the daemon says at start that certificates name no URL.
func TestPublicBaseURLUnsetIsLogged(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	cfg.PublicBaseURL = ""
	_, logs := startDaemon(t, cfg, nil)
	assert.Contains(t, logs.String(), "public_base_url is not set")
}

// A public base URL that is no absolute http(s) URL without query or
// fragment stops the daemon at start, whatever issuer_alt_name says.
func TestBadPublicBaseURLRefusedAtStart(t *testing.T) {
	tok := testenv.NewToken(t)
	for _, bad := range []string{"https://ca.example.com/?x=1", "https://ca.example.com/#top", "ftp://ca.example.com"} {
		cfg := testConfig(t, tok)
		require.NotEmpty(t, cfg.IssuerAltName)
		cfg.PublicBaseURL = bad
		_, err := Start(t.Context(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "public_base_url", bad)
	}
}
