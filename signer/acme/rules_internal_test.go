package acme

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer"
)

func TestPolicyCheck(t *testing.T) {
	p := Policy{AllowedDomains: []string{" .Example.COM "}, AllowedIPRanges: []string{"10.1.2.3/8"}}
	require.NoError(t, p.check())
	assert.Equal(t, []string{"example.com"}, p.AllowedDomains)
	assert.Equal(t, []string{"10.0.0.0/8"}, p.AllowedIPRanges)
	assert.Equal(t, defaultValidityDays, p.MaxValidityDays)
	assert.Equal(t, EABOff, p.ExternalAccountBinding)

	bad := Policy{AllowedDomains: []string{"not a name"}, AllowedIPRanges: []string{"10.0.0.1"}, MaxValidityDays: 398,
		KeyTypes: []string{"DSA1024"}, ExternalAccountBinding: "sometimes"}
	err := bad.check()
	require.Error(t, err)
	assert.Len(t, signer.AsError(err).Fields, 5)
}

func TestCheckIdentifier(t *testing.T) {
	p := Policy{AllowedDomains: []string{"example.com"}, AllowedIPRanges: []string{"192.0.2.0/24"}}
	for _, tc := range []struct {
		id     Identifier
		reason signer.Reason
		want   string
	}{
		{Identifier{"dns", "WWW.Example.com"}, "", "www.example.com"},
		{Identifier{"dns", "example.com"}, "", "example.com"},
		{Identifier{"dns", "*.example.com"}, "", "*.example.com"},
		{Identifier{"dns", "badexample.com"}, ReasonRejectedIdentifier, ""},
		{Identifier{"dns", "a..example.com"}, ReasonRejectedIdentifier, ""},
		{Identifier{"dns", "-a.example.com"}, ReasonRejectedIdentifier, ""},
		{Identifier{"dns", "*.*.example.com"}, ReasonRejectedIdentifier, ""},
		{Identifier{"ip", "192.0.2.7"}, "", "192.0.2.7"},
		{Identifier{"ip", "198.51.100.1"}, ReasonRejectedIdentifier, ""},
		{Identifier{"ip", "nope"}, ReasonRejectedIdentifier, ""},
		{Identifier{"email", "a@example.com"}, ReasonUnsupportedIdentifier, ""},
	} {
		got, err := checkIdentifier(&p, tc.id)
		if tc.reason != "" {
			assert.Equal(t, tc.reason, signer.ReasonOf(err), "%v", tc.id)
			continue
		}
		require.NoError(t, err, "%v", tc.id)
		assert.Equal(t, tc.want, got.Value)
	}
}

// http-01 redirects go to http on the http-01 port or https on the https
// port only.
func TestRedirectAllowed(t *testing.T) {
	v := newValidator(Config{HTTPPort: 8080, HTTPSPort: 8443}.withDefaults())
	for raw, ok := range map[string]bool{
		"http://a.example:8080/x":   true,
		"https://a.example:8443/x":  true,
		"http://a.example/x":        false, // port 80, not 8080
		"https://a.example/x":       false,
		"http://a.example:22/x":     false,
		"ftp://a.example:8080/x":    false,
		"http://u:p@a.example:8080": false,
	} {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		assert.Equal(t, ok, v.redirectAllowed(u) == nil, raw)
	}
	d := newValidator(Config{}.withDefaults())
	for raw, ok := range map[string]bool{"http://a.example/x": true, "https://a.example/x": true, "http://a.example:8080/": false} {
		u, _ := url.Parse(raw)
		assert.Equal(t, ok, d.redirectAllowed(u) == nil, raw)
	}
}

func TestReverseName(t *testing.T) {
	n, err := reverseName("192.0.2.5")
	require.NoError(t, err)
	assert.Equal(t, "5.2.0.192.in-addr.arpa", n)
	n, err = reverseName("2001:db8::1")
	require.NoError(t, err)
	assert.Equal(t, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", n)
}
