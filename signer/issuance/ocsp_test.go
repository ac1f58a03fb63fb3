package issuance

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// ocspPKI is a CA and a leaf it issued, in memory.
func ocspPKI(t *testing.T, caKey crypto.Signer) (ca, leaf *x509.Certificate) {
	t.Helper()
	caTmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "OCSP Test CA", Organization: []string{"hsmca"}},
		NotBefore: t0, NotAfter: t1, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	der, err := SignCertificate(caTmpl, nil, caKey.Public(), caKey, KeyIDSHA1)
	require.NoError(t, err)
	ca, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	lk := ecKey(t)
	der, err = SignCertificate(&x509.Certificate{Subject: pkix.Name{CommonName: "leaf"}, NotBefore: t0,
		NotAfter: t0.AddDate(1, 0, 0)}, ca, lk.Public(), caKey, KeyIDSHA1)
	require.NoError(t, err)
	leaf, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	return ca, leaf
}

// nonceRequest writes an OCSP request for leaf with a nonce extension, as
// openssl sends it (the x/crypto client sends none).
func nonceRequest(t *testing.T, ca, leaf *x509.Certificate, nonce []byte) []byte {
	t.Helper()
	id, err := CertIDFor(OCSPHashes[0], ca, leaf.SerialNumber)
	require.NoError(t, err)
	inner, err := asn1.Marshal(nonce)
	require.NoError(t, err)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(id) })
			})
			b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidOCSPNonce)
						b.AddASN1OctetString(inner)
					})
				})
			})
		})
	})
	der, err := b.Bytes()
	require.NoError(t, err)
	return der
}

func TestOCSPRequestParse(t *testing.T) {
	caKey := ecKey(t)
	ca, leaf := ocspPKI(t, caKey)
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		der, err := ocsp.CreateRequest(leaf, ca, &ocsp.RequestOptions{Hash: h})
		require.NoError(t, err)
		req, err := ParseOCSPRequest(der)
		require.NoError(t, err, "hash %v", h)
		assert.Equal(t, h, req.Hash.Hash)
		assert.Zero(t, leaf.SerialNumber.Cmp(req.Serial))
		kh, err := OCSPKeyHash(ca, h)
		require.NoError(t, err)
		assert.Equal(t, kh, req.KeyHash)
		assert.Equal(t, OCSPNameHash(ca, h), req.NameHash)
		assert.True(t, req.Canonical, "Go's client writes the CertID as CertIDFor does")
		assert.Nil(t, req.Nonce)
	}

	nonce := []byte("0123456789abcdef")
	req, err := ParseOCSPRequest(nonceRequest(t, ca, leaf, nonce))
	require.NoError(t, err)
	inner, _ := asn1.Marshal(nonce)
	assert.Equal(t, inner, req.Nonce, "the extension's value, as it is echoed")

	for name, der := range map[string][]byte{
		"empty":    nil,
		"garbage":  []byte("not DER"),
		"trailing": append(nonceRequest(t, ca, leaf, nonce), 0),
		"nonce":    nonceRequest(t, ca, leaf, make([]byte, 100)),
	} {
		_, err := ParseOCSPRequest(der)
		assert.ErrorIs(t, err, ErrOCSPMalformed, name)
	}
}

func TestOCSPResponseSigned(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		key crypto.Signer
		alg x509.SignatureAlgorithm
	}{
		"EC":  {ecKey(t), x509.ECDSAWithSHA256},
		"RSA": {rk, x509.SHA384WithRSA},
	} {
		t.Run(name, func(t *testing.T) {
			ca, leaf := ocspPKI(t, tc.key)
			id, err := CertIDFor(OCSPHashes[0], ca, leaf.SerialNumber)
			require.NoError(t, err)
			now := time.Now().UTC().Truncate(time.Second)
			revokedAt := now.Add(-time.Hour)
			der, err := SignOCSPResponse(OCSPResponse{CertID: id, Status: OCSPRevoked, RevokedAt: revokedAt, Reason: 1,
				ProducedAt: now, ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour)}, tc.key, tc.alg)
			require.NoError(t, err)
			resp, err := ocsp.ParseResponseForCert(der, leaf, ca)
			require.NoError(t, err, "Go's OCSP client verifies the CA's signature")
			assert.Equal(t, ocsp.Revoked, resp.Status)
			assert.Equal(t, revokedAt, resp.RevokedAt)
			assert.Equal(t, 1, resp.RevocationReason)
			assert.Equal(t, now, resp.ThisUpdate)
			assert.Equal(t, now.Add(24*time.Hour), resp.NextUpdate)
			assert.Equal(t, now, resp.ProducedAt)
			assert.Equal(t, tc.alg, resp.SignatureAlgorithm)
			kh := sha1Of(t, tc.key)
			assert.Equal(t, kh, resp.ResponderKeyHash, "ResponderID byKey")
		})
	}
}

func sha1Of(t *testing.T, k crypto.Signer) []byte {
	bits, err := subjectPublicKeyBits(k.Public())
	require.NoError(t, err)
	return hashOf(crypto.SHA1, bits)
}

func TestOCSPDelegatedResponder(t *testing.T) {
	caKey := ecKey(t)
	ca, leaf := ocspPKI(t, caKey)
	rk := ecKey(t)
	tmpl := OCSPResponderTemplate(ca, t0, t0.AddDate(0, 0, 30))
	der, err := SignCertificate(tmpl, ca, rk.Public(), caKey, KeyIDSHA1)
	require.NoError(t, err)
	rc, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, rc.ExtKeyUsage)
	assert.True(t, HasOCSPNoCheck(rc))
	assert.False(t, rc.IsCA)
	assert.Equal(t, "OCSP Test CA OCSP Responder", rc.Subject.CommonName)

	id, err := CertIDFor(OCSPHashes[1], ca, leaf.SerialNumber)
	require.NoError(t, err)
	now := t0.Add(time.Hour)
	nonce := []byte{4, 2, 1, 2}
	resp, err := SignOCSPResponse(OCSPResponse{CertID: id, Status: OCSPGood, ProducedAt: now, ThisUpdate: now,
		NextUpdate: now.Add(time.Hour), Nonce: nonce, ResponderCert: der}, rk, x509.ECDSAWithSHA256)
	require.NoError(t, err)
	parsed, err := ocsp.ParseResponseForCert(resp, leaf, ca)
	require.NoError(t, err, "Go checks the responder certificate against the CA, then the answer against it")
	assert.Equal(t, ocsp.Good, parsed.Status)
	assert.Equal(t, crypto.SHA256, parsed.IssuerHash)
	require.NotNil(t, parsed.Certificate)
	assert.Equal(t, der, parsed.Certificate.Raw)

	unknown, err := SignOCSPResponse(OCSPResponse{CertID: id, Status: OCSPUnknown, ProducedAt: now, ThisUpdate: now},
		rk, x509.ECDSAWithSHA256)
	require.NoError(t, err)
	parsed, err = ocsp.ParseResponse(unknown, nil)
	require.NoError(t, err)
	assert.Equal(t, ocsp.Unknown, parsed.Status)
	assert.True(t, parsed.NextUpdate.IsZero())

	_, err = SignOCSPResponse(OCSPResponse{CertID: id}, rk, x509.SHA256WithRSA)
	assert.Error(t, err, "an RSA algorithm with an EC key")
	long := ocspResponderCN(string(make([]rune, 80)))
	assert.Len(t, []rune(long), 64)
}

func TestOCSPErrorResponse(t *testing.T) {
	for _, st := range []int{OCSPMalformedRequest, OCSPInternalError, OCSPTryLater, OCSPUnauthorized} {
		_, err := ocsp.ParseResponse(OCSPErrorResponse(st), nil)
		var re ocsp.ResponseError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, ocsp.ResponseStatus(st), re.Status)
	}
}
