package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckHash(t *testing.T) {
	for _, tc := range []struct {
		in       string
		required bool
		want     string
		ok       bool
	}{
		{"SHA256", true, "SHA256", true}, {"SHA384", false, "SHA384", true}, {"SHA512", true, "SHA512", true},
		{"", false, "SHA256", true}, {"", true, "", false}, {"MD5", false, "", false}, {"sha256", false, "", false},
	} {
		got, err := CheckHash("signature_algorithm", tc.in, tc.required)
		assert.Equal(t, tc.want, got, tc.in)
		if tc.ok {
			assert.NoError(t, err, tc.in)
			continue
		}
		assert.Equal(t, BadHash, ReasonOf(err), tc.in)
		assert.True(t, strings.HasPrefix(err.Error(), "signature_algorithm: "))
	}
}

func TestSignatureAlgorithmAndBack(t *testing.T) {
	for _, tc := range []struct {
		key, hash string
		want      x509.SignatureAlgorithm
	}{
		{"EC256", "SHA256", x509.ECDSAWithSHA256}, {"EC384", "SHA384", x509.ECDSAWithSHA384},
		{"EC521", "SHA512", x509.ECDSAWithSHA512}, {"RSA2048", "SHA256", x509.SHA256WithRSA},
		{"RSA3072", "SHA384", x509.SHA384WithRSA}, {"RSA4096", "SHA512", x509.SHA512WithRSA},
		{"EC256", "", x509.ECDSAWithSHA256}, {"ED25519", "SHA384", x509.PureEd25519},
	} {
		got := SignatureAlgorithm(tc.key, tc.hash)
		assert.Equal(t, tc.want, got, tc.key+"/"+tc.hash)
		if tc.hash != "" && tc.key != "ED25519" {
			assert.Equal(t, tc.hash, HashName(got))
		}
	}
	assert.Equal(t, "SHA384", HashName(x509.SHA384WithRSAPSS))
	assert.Equal(t, "SHA256", HashName(x509.PureEd25519))
}

func TestKeyUsages(t *testing.T) {
	ku, err := ParseKeyUsages("key_usages", []string{"digitalSignature", "KEYCERTSIGN", "cRLSign"})
	require.NoError(t, err)
	assert.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign|x509.KeyUsageCRLSign, ku)
	assert.Equal(t, []string{"digitalSignature", "keyCertSign", "cRLSign"}, KeyUsageNames(ku))
	assert.Equal(t, []string{}, KeyUsageNames(0))
	_, err = ParseKeyUsages("key_usages", []string{"signEverything"})
	assert.Equal(t, BadValue, ReasonOf(err))
	assert.Equal(t, "signEverything", err.(*Error).Value)
}

func TestEntityKeyUsage(t *testing.T) {
	ku, err := EntityKeyUsage("key_usages", 0, "EC256")
	require.NoError(t, err)
	assert.Equal(t, x509.KeyUsageDigitalSignature, ku)
	ku, err = EntityKeyUsage("key_usages", 0, "RSA2048")
	require.NoError(t, err)
	assert.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, ku)
	ku, err = EntityKeyUsage("key_usages", x509.KeyUsageKeyAgreement, "RSA2048")
	require.NoError(t, err)
	assert.Equal(t, x509.KeyUsageKeyAgreement, ku, "a requested usage is taken as it is")
	_, err = EntityKeyUsage("key_usages", x509.KeyUsageDigitalSignature|x509.KeyUsageCRLSign, "EC256")
	assert.Equal(t, BadValue, ReasonOf(err))
}

func TestDistinguishedNameCheck(t *testing.T) {
	full := DistinguishedName{CommonName: "CA", Country: "NZ", State: "Wellington", Locality: "Wellington",
		Organization: "Example", OrganizationalUnit: "PKI"}
	require.NoError(t, full.Check("distinguished_name", true))
	require.NoError(t, DistinguishedName{CommonName: "leaf"}.Check("distinguished_name", false))
	for name, tc := range map[string]struct {
		dn    DistinguishedName
		all   bool
		field string
	}{
		"no CN":          {DistinguishedName{}, false, "distinguished_name.common_name"},
		"CA without OU":  {func() DistinguishedName { d := full; d.OrganizationalUnit = ""; return d }(), true, "distinguished_name.organizational_unit"},
		"spaces":         {DistinguishedName{CommonName: " x"}, false, "distinguished_name.common_name"},
		"control":        {DistinguishedName{CommonName: "a\x00b"}, false, "distinguished_name.common_name"},
		"bidi":           {DistinguishedName{CommonName: "a\u202eb"}, false, "distinguished_name.common_name"},
		"country short":  {DistinguishedName{CommonName: "x", Country: "N"}, false, "distinguished_name.country"},
		"not UTF-8":      {DistinguishedName{CommonName: "\xff"}, false, "distinguished_name.common_name"},
		"long CN":        {DistinguishedName{CommonName: strings.Repeat("é", 65)}, false, "distinguished_name.common_name"},
		"country case":   {DistinguishedName{CommonName: "x", Country: "nz"}, false, "distinguished_name.country"},
		"country length": {DistinguishedName{CommonName: "x", Country: "NZL"}, false, "distinguished_name.country"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.dn.Check("distinguished_name", tc.all)
			require.Error(t, err)
			assert.Equal(t, BadName, ReasonOf(err))
			assert.Equal(t, tc.field, err.(*Error).Field)
		})
	}
	assert.Equal(t, full, NameOf(full.PKIXName()))
	assert.Equal(t, []string(nil), DistinguishedName{CommonName: "x"}.PKIXName().Country)
}

func TestPrintableStringAndCountryCodes(t *testing.T) {
	assert.Len(t, iso3166Alpha2, 249)
	for _, c := range []string{"NZ", "US", "AU", "DE", "GB"} {
		assert.True(t, IsCountryCode(c), c)
	}
	for _, c := range []string{"UK", "EU", "XX", "nz", "USA", ""} {
		assert.False(t, IsCountryCode(c), c)
	}
	assert.True(t, PrintableString("Example DTS CA (test) 1-2/3:4=5?"))
	assert.False(t, PrintableString("a_b"))
	assert.False(t, PrintableString("Zürich"))
	assert.False(t, PrintableString("a@b"))
}

func TestAddSANs(t *testing.T) {
	var tmpl x509.Certificate
	sans := []SAN{{"DNS", "*.example.com"}, {"DNS", "host.example"}, {"IP", "2001:db8::1"},
		{"EMAIL", "pki@example.com"}, {"URI", "urn:example:a"}}
	require.NoError(t, AddSANs("subject_alternative_names", sans, &tmpl))
	assert.Equal(t, []string{"*.example.com", "host.example"}, tmpl.DNSNames)
	require.Len(t, tmpl.IPAddresses, 1)
	assert.Equal(t, []string{"pki@example.com"}, tmpl.EmailAddresses)
	require.Len(t, tmpl.URIs, 1)
	assert.Equal(t, sans, SANsOf(tmpl.DNSNames, tmpl.IPAddresses, tmpl.EmailAddresses, tmpl.URIs))

	for name, tc := range map[string]struct {
		san    SAN
		reason Reason
		field  string
	}{
		"bad DNS":      {SAN{"DNS", "-a.example"}, BadValue, "s[0].value"},
		"double star":  {SAN{"DNS", "*.*.example"}, BadValue, "s[0].value"},
		"long label":   {SAN{"DNS", strings.Repeat("a", 64) + ".example"}, BadValue, "s[0].value"},
		"bad IP":       {SAN{"IP", "300.1.1.1"}, BadIP, "s[0].value"},
		"named email":  {SAN{"EMAIL", "Ada <a@example.com>"}, BadValue, "s[0].value"},
		"relative URI": {SAN{"URI", "/path"}, BadValue, "s[0].value"},
		"control":      {SAN{"DNS", "a\nb"}, BadValue, "s[0].value"},
		"empty":        {SAN{"DNS", ""}, BadValue, "s[0].value"},
		"unknown type": {SAN{"X400", "x"}, BadSANType, "s[0].type"},
		"trailing dot": {SAN{"DNS", "host.example."}, BadValue, "s[0].value"},
		"bidi":         {SAN{"DNS", "a\u202eb.example"}, BadValue, "s[0].value"},
		"zero-width":   {SAN{"URI", "https://a\u200bb.example/"}, BadValue, "s[0].value"},
		"suffix star":  {SAN{"DNS", "*.co.uk"}, BadValue, "s[0].value"},
		"TLD star":     {SAN{"DNS", "*.com"}, BadValue, "s[0].value"},
		"email host":   {SAN{"EMAIL", "a@-bad.example"}, BadValue, "s[0].value"},
		"email star":   {SAN{"EMAIL", "a@*.example.com"}, BadValue, "s[0].value"},
		"non-ASCII":    {SAN{"EMAIL", "jörg@example.com"}, BadValue, "s[0].value"},
	} {
		t.Run(name, func(t *testing.T) {
			err := AddSANs("s", []SAN{tc.san}, &x509.Certificate{})
			require.Error(t, err)
			assert.Equal(t, tc.reason, ReasonOf(err))
			assert.Equal(t, tc.field, err.(*Error).Field)
		})
	}
	many := make([]SAN, MaxSANs+1)
	for i := range many {
		many[i] = SAN{"DNS", "a.example"}
	}
	assert.Equal(t, BadValue, ReasonOf(AddSANs("s", many, &x509.Certificate{})))
	assert.Nil(t, SANsOf(nil, []net.IP{}, nil, []*url.URL{}))
}

func TestWithinIssuer(t *testing.T) {
	issuer := &x509.Certificate{NotBefore: t0, NotAfter: t1}
	assert.NoError(t, WithinIssuer("validity", t0, t1, issuer))
	err := WithinIssuer("validity", t0, t1.Add(time.Second), issuer)
	assert.Equal(t, BadValidity, ReasonOf(err))
	assert.Equal(t, "validity", err.(*Error).Field)
	err = WithinIssuer("validity", t0.Add(-time.Second), t1, issuer)
	assert.Equal(t, "validity.start_from", err.(*Error).Field)
}

func TestCheckPathLength(t *testing.T) {
	assert.NoError(t, CheckPathLength("path_length", 0, 1))
	assert.NoError(t, CheckPathLength("path_length", 6, UnlimitedPathLength))
	for _, tc := range []struct {
		child, issuer int
		reason        Reason
	}{{-1, 7, BadValue}, {7, 7, BadValue}, {0, 0, BadPathLength}, {2, 2, BadPathLength}, {3, 2, BadPathLength}} {
		assert.Equal(t, tc.reason, ReasonOf(CheckPathLength("path_length", tc.child, tc.issuer)), "%d under %d", tc.child, tc.issuer)
	}
}

func TestCATemplatePathLength(t *testing.T) {
	nolimit := CATemplate(pkix.Name{}, t0, t1, UnlimitedPathLength, 0)
	assert.Equal(t, -1, nolimit.MaxPathLen)
	zero := CATemplate(pkix.Name{}, t0, t1, 0, x509.KeyUsageDigitalSignature)
	assert.True(t, zero.MaxPathLenZero)
	assert.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign|x509.KeyUsageCRLSign, zero.KeyUsage)
}
