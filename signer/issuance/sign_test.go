package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
)

// observations records what a Timed signer reports.
type observations struct {
	mu  sync.Mutex
	got []string
}

func (o *observations) observe(op, alg string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, op+"/"+alg)
}

// root is a self-signed CA certificate of key.
func root(tb testing.TB, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	tmpl := CATemplate(pkix.Name{CommonName: "root"}, t0, t1, UnlimitedPathLength, 0)
	der, err := SignCertificate(tmpl, nil, key.Public(), key, KeyIDSHA1)
	require.NoError(tb, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(tb, err)
	return c
}

func TestSignCertificateChain(t *testing.T) {
	rootKey, subKey, leafKey := ecKey(t), ecKey(t), ecKey(t)
	var obs observations
	r := root(t, Timed(rootKey, "ca", "EC256", obs.observe))
	assert.True(t, r.IsCA)
	assert.Equal(t, -1, r.MaxPathLen)

	subTmpl := CATemplate(pkix.Name{CommonName: "sub"}, t0, t1, 0, 0)
	subTmpl.SignatureAlgorithm = SignatureAlgorithm("EC256", SHA384)
	der, err := SignCertificate(subTmpl, r, subKey.Public(), Timed(rootKey, "ca", "EC256", obs.observe), KeyIDSHA1)
	require.NoError(t, err)
	sub, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.Equal(t, x509.ECDSAWithSHA384, sub.SignatureAlgorithm)
	assert.True(t, sub.MaxPathLenZero)
	ski, err := KeyID(subKey.Public(), KeyIDSHA1)
	require.NoError(t, err)
	assert.Equal(t, ski, sub.SubjectKeyId)
	assert.Equal(t, r.SubjectKeyId, sub.AuthorityKeyId)

	leafTmpl := EntityTemplate(t0, t1, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	require.NoError(t, AddSANs("subject_alternative_names", []SAN{{"DNS", "leaf.example"}}, leafTmpl))
	der, err = SignCertificate(leafTmpl, sub, leafKey.Public(), subKey, KeyIDSHA1)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.False(t, leaf.IsCA)

	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(r)
	inter.AddCert(sub)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: t0.Add(time.Hour), DNSName: "leaf.example"})
	require.NoError(t, err)
	assert.Equal(t, []string{"ca/EC256", "ca/EC256"}, obs.got, "one observation per HSM signature")
}

// A second signature of the same template gets a new serial: what lets a
// caller sign again after a serial collision.
func TestSignCertificateDrawsAFreshSerial(t *testing.T) {
	k := ecKey(t)
	tmpl := CATemplate(pkix.Name{CommonName: "x"}, t0, t1, 1, 0)
	a, err := SignCertificate(tmpl, nil, k.Public(), k, KeyIDSHA1)
	require.NoError(t, err)
	b, err := SignCertificate(tmpl, nil, k.Public(), k, KeyIDSHA1)
	require.NoError(t, err)
	ca, _ := x509.ParseCertificate(a)
	cb, _ := x509.ParseCertificate(b)
	assert.NotEqual(t, 0, ca.SerialNumber.Cmp(cb.SerialNumber))
}

// A signer whose key is not the parent's never yields a certificate.
func TestSignCertificateRefusesAWrongKey(t *testing.T) {
	r := root(t, ecKey(t))
	_, err := SignCertificate(EntityTemplate(t0, t1, x509.KeyUsageDigitalSignature, nil), r, ecKey(t).Public(), ecKey(t), KeyIDSHA1)
	assert.Error(t, err)
}

func TestDTSProfiles(t *testing.T) {
	ian, err := IssuerAltNameExtension("https://dts.example.com/iaca")
	require.NoError(t, err)
	rootKey, signerKey := ecKey(t), ecKey(t)
	tmpl := IACARootTemplate(pkix.Name{CommonName: "IACA", Country: []string{"NZ"}}, t0, t1, ian)
	der, err := SignCertificate(tmpl, nil, rootKey.Public(), rootKey, KeyIDSHA256)
	require.NoError(t, err)
	r, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.True(t, r.IsCA)
	assert.True(t, r.MaxPathLenZero)
	assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, r.KeyUsage)
	id, err := KeyID(rootKey.Public(), KeyIDSHA256)
	require.NoError(t, err)
	assert.Equal(t, id, r.SubjectKeyId)

	csrDER, err := SignCSR(pkix.Name{CommonName: "VICAL Signer"}, 0, signerKey)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(csrDER)
	require.NoError(t, err)
	st := VICALSignerTemplate(csr.Subject, r, t0, t0.AddDate(1, 0, 0))
	der, err = SignCertificate(st, r, csr.PublicKey, rootKey, KeyIDSHA256)
	require.NoError(t, err)
	s, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.False(t, s.IsCA)
	assert.Equal(t, x509.KeyUsageDigitalSignature, s.KeyUsage)
	var carried bool
	for _, e := range s.Extensions {
		if e.Id.Equal(oidIssuerAltName) {
			carried = string(e.Value) == string(ian.Value)
		}
	}
	assert.True(t, carried, "the signer carries its root's issuer alternative name")
}

func TestIssuerAltNameEncoding(t *testing.T) {
	for _, tc := range []struct {
		in  string
		tag int
	}{{"https://dts.example.com/iaca", 6}, {"urn:example:dts", 6}, {"pki@example.com", 1}} {
		ext, err := IssuerAltNameExtension(tc.in)
		require.NoError(t, err, tc.in)
		assert.True(t, ext.Id.Equal(oidIssuerAltName))
		assert.False(t, ext.Critical)
		var names []asn1.RawValue
		rest, err := asn1.Unmarshal(ext.Value, &names)
		require.NoError(t, err)
		assert.Empty(t, rest)
		require.Len(t, names, 1)
		assert.Equal(t, asn1.ClassContextSpecific, names[0].Class)
		assert.Equal(t, tc.tag, names[0].Tag)
		assert.Equal(t, tc.in, string(names[0].Bytes))
		assert.NoError(t, ValidIssuerAltName(tc.in))
	}
	ext, err := IssuerAltNameExtension("")
	assert.NoError(t, err)
	assert.Nil(t, ext)
	for _, bad := range []string{"not a name", "example.com", "mailto", "Ada <a@example.com>", "https://", "ü@example.com"} {
		assert.Error(t, ValidIssuerAltName(bad), bad)
	}
}

func TestCheckCSR(t *testing.T) {
	k := ecKey(t)
	der, err := SignCSR(pkix.Name{CommonName: "c"}, x509.ECDSAWithSHA256, k)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	alg, bits, err := CheckCSR("csr", csr)
	require.NoError(t, err)
	assert.Equal(t, hsm.EC256, alg)
	assert.Equal(t, 256, bits)

	forged := *csr
	forged.Signature = append([]byte{}, csr.Signature...)
	forged.Signature[len(forged.Signature)-1] ^= 1
	_, _, err = CheckCSR("csr", &forged)
	assert.Equal(t, BadCSR, ReasonOf(err))

	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(t, err)
	der, err = SignCSR(pkix.Name{CommonName: "weak"}, 0, p224)
	require.NoError(t, err)
	weak, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	_, _, err = CheckCSR("csr", weak)
	assert.Equal(t, BadKey, ReasonOf(err))
	assert.Contains(t, err.Error(), "P-224")
}

// failingSigner is an HSM that refuses every signature.
type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("CKR_DEVICE_ERROR")
}

func TestTimedObservesOnlySuccess(t *testing.T) {
	var obs observations
	k := ecKey(t)
	s := Timed(failingSigner{k}, "pca_crl", "EC256", obs.observe)
	_, err := s.Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
	assert.Error(t, err)
	assert.Empty(t, obs.got)
	assert.Equal(t, k.Public(), s.Public(), "the wrapper is the key")
	_, err = Timed(k, "x", "EC256", nil).Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
	assert.NoError(t, err, "no observer is no observation")
}

func TestSignCRL(t *testing.T) {
	k := ecKey(t)
	r := root(t, k)
	var obs observations
	der, err := SignCRL(r, Timed(k, "pca_crl", "EC256", obs.observe), CRL{Number: 42, ThisUpdate: t0, NextUpdate: t0.AddDate(0, 0, 7),
		SignatureAlgorithm: SignatureAlgorithm("EC256", SHA384),
		Revoked:            []Revoked{{SerialHex: "1f", Time: t0, Reason: 1}, {SerialHex: "not hex", Time: t0}, {SerialHex: "0a", Time: t0, Reason: 5}}})
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(r))
	assert.Equal(t, int64(42), crl.Number.Int64())
	assert.Equal(t, x509.ECDSAWithSHA384, crl.SignatureAlgorithm)
	require.Len(t, crl.RevokedCertificateEntries, 2, "the damaged entry is left out")
	assert.Equal(t, int64(31), crl.RevokedCertificateEntries[0].SerialNumber.Int64())
	assert.Equal(t, 1, crl.RevokedCertificateEntries[0].ReasonCode)
	assert.Equal(t, []string{"pca_crl/EC256"}, obs.got)
}

func TestGenerateLeafKey(t *testing.T) {
	for _, alg := range []hsm.Algorithm{hsm.EC256, hsm.EC384, hsm.RSA2048} {
		k, err := GenerateLeafKey(alg)
		require.NoError(t, err, alg)
		assert.Equal(t, alg, hsm.AlgorithmOf(k.Public()))
	}
	_, err := GenerateLeafKey(hsm.ED25519)
	assert.Error(t, err, "the PCA family offers no Ed25519 leaves")
}
