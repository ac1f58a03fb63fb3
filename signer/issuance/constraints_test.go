package issuance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNameConstraintMatchers(t *testing.T) {
	for _, tc := range []struct {
		name, c       string
		within, meets bool
	}{
		{"example.com", "example.com", true, true},
		{"www.example.com", "example.com", true, true},
		{"WWW.Example.COM", "example.com", true, true},
		{"wwwexample.com", "example.com", false, false},
		{"evil.org", "example.com", false, false},
		{"example.com", ".example.com", false, false},
		{"a.example.com", ".example.com", true, true},
		{"*.example.com", "example.com", true, true},
		{"*.example.com", ".example.com", true, true},
		{"*.example.com", "bad.example.com", false, true},
		{"*.example.com", "x.bad.example.com", false, false},
		{"*.example.com", ".bad.example.com", false, false},
		{"*.com", "example.com", false, true},
		{"anything.example", "", true, true},
	} {
		assert.Equal(t, tc.within, dnsWithin(tc.name, tc.c), "%s within %s", tc.name, tc.c)
		assert.Equal(t, tc.meets, dnsMeets(tc.name, tc.c), "%s meets %s", tc.name, tc.c)
	}

	_, v4, _ := net.ParseCIDR("10.0.0.0/8")
	_, v6, _ := net.ParseCIDR("2001:db8::/32")
	v4.IP = v4.IP.To4()
	assert.True(t, ipWithin(net.ParseIP("10.1.2.3"), v4))
	assert.True(t, ipWithin(net.ParseIP("::ffff:10.1.2.3"), v4), "IPv4-mapped is IPv4")
	assert.False(t, ipWithin(net.ParseIP("11.0.0.1"), v4))
	assert.False(t, ipWithin(net.ParseIP("2001:db8::1"), v4))
	assert.True(t, ipWithin(net.ParseIP("2001:db8::1"), v6))
	assert.False(t, ipWithin(net.ParseIP("10.1.2.3"), v6))

	for _, tc := range []struct {
		addr, c      string
		narrow, wide bool
	}{
		{"a@example.com", "example.com", true, true},
		{"a@EXAMPLE.com", "example.com", true, true},
		{"a@sub.example.com", "example.com", false, true},
		{"a@sub.example.com", ".example.com", true, true},
		{"a@example.com", ".example.com", false, false},
		{"a@example.com", "a@example.com", true, true},
		{"A@example.com", "a@example.com", false, false},
		{"b@example.com", "a@example.com", false, false},
		{"a@evil.org", "example.com", false, false},
	} {
		assert.Equal(t, tc.narrow, emailWithin(tc.addr, tc.c, false), "%s in %s", tc.addr, tc.c)
		assert.Equal(t, tc.wide, emailWithin(tc.addr, tc.c, true), "%s in %s (wide)", tc.addr, tc.c)
	}
}

// dirNameConstraintExt encodes name constraints with directoryName
// subtrees, which Go cannot write.
func dirNameConstraintExt(t *testing.T, permitted, excluded []pkix.RDNSequence) pkix.Extension {
	subtrees := func(tag int, names []pkix.RDNSequence) asn1.RawValue {
		var body []byte
		for _, n := range names {
			der, err := asn1.Marshal(n)
			require.NoError(t, err)
			base, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: der})
			require.NoError(t, err)
			st, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: base})
			require.NoError(t, err)
			body = append(body, st...)
		}
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: true, Bytes: body}
	}
	var inner []byte
	for tag, names := range [][]pkix.RDNSequence{permitted, excluded} {
		if len(names) > 0 {
			der, err := asn1.Marshal(subtrees(tag, names))
			require.NoError(t, err)
			inner = append(inner, der...)
		}
	}
	val, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: inner})
	require.NoError(t, err)
	return pkix.Extension{Id: oidNameConstraints, Value: val}
}

func TestDirNameConstraints(t *testing.T) {
	acme := pkix.Name{Country: []string{"DE"}, Organization: []string{"Acme"}}.ToRDNSequence()
	legal := pkix.Name{Country: []string{"DE"}, Organization: []string{"Acme"}, OrganizationalUnit: []string{"Legal"}}.ToRDNSequence()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dir CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		ExtraExtensions: []pkix.Extension{dirNameConstraintExt(t, []pkix.RDNSequence{acme}, []pkix.RDNSequence{legal})}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	permitted, excluded, err := dirNameConstraints(ca)
	require.NoError(t, err)
	require.Len(t, permitted, 1)
	require.Len(t, excluded, 1)
	for subj, ok := range map[string]bool{
		"C=DE,O=Acme,CN=x":          true,
		"C=DE,O=acme  ,CN=x":        true,
		"C=DE,O=Other,CN=x":         false,
		"CN=x":                      false,
		"C=DE,O=Acme,OU=Legal,CN=x": false,
	} {
		var n pkix.Name
		for _, part := range strings.Split(subj, ",") {
			k, v, _ := strings.Cut(part, "=")
			switch k {
			case "C":
				n.Country = []string{v}
			case "O":
				n.Organization = []string{v}
			case "OU":
				n.OrganizationalUnit = []string{v}
			case "CN":
				n.CommonName = v
			}
		}
		s := flatten(n.ToRDNSequence())
		got := anyDir(s, permitted) && !anyDir(s, excluded)
		assert.Equal(t, ok, got, subj)
	}
}
