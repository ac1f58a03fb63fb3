package daemon

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
)

// issuerAltNames reads the IssuerAlternativeName URIs and emails of a PEM
// certificate.
func issuerAltNames(t *testing.T, pemText string) []string {
	t.Helper()
	b, _ := pem.Decode([]byte(pemText))
	require.NotNil(t, b)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	var out []string
	for _, ext := range c.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 18}) {
			var names []asn1.RawValue
			_, err := asn1.Unmarshal(ext.Value, &names)
			require.NoError(t, err)
			for _, n := range names {
				out = append(out, string(n.Bytes))
			}
		}
	}
	return out
}

// Without issuer_alt_name, the daemon's public_base_url is the
// IssuerAlternativeName of managed DTS roots and of the signers they
// issue; issuer_alt_name, when set, wins.
func TestDTSIssuerAltNameDefaultsToPublicBaseURL(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	cfg.IssuerAltName = ""
	cfg.PublicBaseURL = "https://ca.example.com"
	d, _ := startDaemon(t, cfg, nil)
	waitStatus(t, "http://"+d.Addr()+"/readyz", 200, 30*time.Second)
	c := newClient(t, d, "acme")

	root := c.do("POST", "/v1/ecosystems/certificates/ca", map[string]any{"organisationName": "Example Inc."})
	require.Equal(t, 201, root.status, "%s", root.body)
	assert.Equal(t, []string{"https://ca.example.com"}, issuerAltNames(t, root.m()["certificatePem"].(string)))
	s := c.do("POST", "/v1/ecosystems/certificates/vical-signers", map[string]any{"caId": root.m()["id"]})
	require.Equal(t, 201, s.status, "%s", s.body)
	assert.Equal(t, []string{"https://ca.example.com"}, issuerAltNames(t, s.m()["certificatePem"].(string)))

	value, setting := DTSIssuerAltName(cfg)
	assert.Equal(t, "https://ca.example.com", value)
	assert.Contains(t, setting, "public_base_url")
	cfg.IssuerAltName = "pki@example.com"
	value, setting = DTSIssuerAltName(cfg)
	assert.Equal(t, "pki@example.com", value)
	assert.Equal(t, "issuer_alt_name", setting)
}

// With neither setting the daemon starts, warns, and refuses managed DTS
// roots with 503 and a message naming both settings; unmanaged roots are
// still registered.
func TestDTSManagedRootsRefusedWithoutIssuerAltName(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	cfg.IssuerAltName, cfg.PublicBaseURL = "", ""
	d, logs := startDaemon(t, cfg, nil)
	waitStatus(t, "http://"+d.Addr()+"/readyz", 200, 30*time.Second)
	assert.Contains(t, logs.String(), "neither issuer_alt_name nor public_base_url is set")
	c := newClient(t, d, "acme")

	r := c.do("POST", "/v1/ecosystems/certificates/ca", map[string]any{"organisationName": "Example Inc."})
	require.Equal(t, 503, r.status, "%s", r.body)
	m := r.m()
	assert.Equal(t, "IssuerAlternativeNameNotConfigured", m["code"])
	assert.Contains(t, m["message"], "issuer_alt_name")
	assert.Contains(t, m["message"], "public_base_url")
	assert.Equal(t, []any{}, m["details"])

	ca := testpki.NewCA(t, "External IACA")
	r = c.do("POST", "/v1/ecosystems/certificates/ca", map[string]any{"certificatePem": string(ca.PEM())})
	assert.Equal(t, 201, r.status, "%s", r.body)
}

func TestBadPublicBaseURLAsIssuerAltNameRefusedAtStart(t *testing.T) {
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	cfg.IssuerAltName = ""
	cfg.PublicBaseURL = "ca.example.com"
	_, err := Start(t.Context(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "public_base_url")
}
