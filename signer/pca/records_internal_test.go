package pca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// The stored serial, validity and subject, taken from the template, are
// those of the certificate as parsed: times with sub-second parts, a
// subject given as the CSR's raw bytes or as a name.
func TestCertStoreRecordMatchesTheCertificate(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Date(2026, 12, 3, 6, 30, 15, 987654321, time.UTC)
	caTmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "CA"}, NotBefore: now, NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := issuance.SignCertificate(caTmpl, nil, caKey.Public(), caKey, issuance.KeyIDSHA1)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	is := &issuer{rec: &store.Record{ID: "ca-id"}, ca: &caRecord{DN: issuance.DistinguishedName{CommonName: "CA"}}, cert: caCert}

	leaf, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	raw, err := asn1.Marshal(pkix.Name{CommonName: "raw.example", Organization: []string{"Raw Org"}, Country: []string{"DE"}}.ToRDNSequence())
	require.NoError(t, err)
	for name, tmpl := range map[string]*x509.Certificate{
		"raw subject":  {RawSubject: raw},
		"named":        {Subject: pkix.Name{CommonName: "named.example", Locality: []string{"Berlin"}, OrganizationalUnit: []string{"Ops"}}},
		"before 1950":  {Subject: pkix.Name{CommonName: "old"}, NotBefore: time.Date(1949, 5, 1, 1, 2, 3, 400, time.UTC)},
		"after 2049":   {Subject: pkix.Name{CommonName: "late"}, NotAfter: time.Date(2051, 1, 1, 0, 0, 0, 999999999, time.UTC)},
		"other offset": {Subject: pkix.Name{CommonName: "tz"}, NotBefore: now.In(time.FixedZone("x", 5*3600+1800))},
	} {
		t.Run(name, func(t *testing.T) {
			if tmpl.NotBefore.IsZero() {
				tmpl.NotBefore = now.Add(-time.Minute)
			}
			if tmpl.NotAfter.IsZero() {
				tmpl.NotAfter = now.Add(90 * 24 * time.Hour).Add(123 * time.Millisecond)
			}
			der, err := issuance.SignCertificate(tmpl, caCert, leaf.Public(), caKey, issuance.KeyIDSHA1)
			require.NoError(t, err)
			cert, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			var cr certRecord
			rec, err := certStoreRecord("t1", "c1", is, &cr, tmpl, der, "SHA256", now)
			require.NoError(t, err)
			assert.Equal(t, encoding.SerialHex(cert.SerialNumber), cr.Serial)
			assert.Equal(t, cert.NotBefore.UnixMilli(), cr.NotBefore)
			assert.Equal(t, cert.NotAfter.UnixMilli(), cr.NotAfter)
			assert.Equal(t, issuance.NameOf(cert.Subject), cr.DN)
			var stored certRecord
			require.NoError(t, json.Unmarshal(rec.Data, &stored))
			assert.Equal(t, cr, stored)
		})
	}
}
