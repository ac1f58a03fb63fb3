package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SignCRL writes the CRL x509.CreateRevocationList writes, byte for byte
// up to the signature, for every key and algorithm the families use (and
// Go's default for the key), with every reason, serials of every shape,
// times on both sides of 2050, and no entries at all.
func TestSignCRLMatchesGo(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	var revoked []Revoked
	serials := []string{"1", "7f", "80", "ff", "0100", "abc", "00ff", "0", "DEADBEEF",
		"7fffffffffffffffffffffffffffffffffffffff", "8000000000000000000000000000000000000000", "not hex", ""}
	for i, s := range serials {
		revoked = append(revoked, Revoked{SerialHex: s, Time: t0.Add(time.Duration(i) * 1500 * time.Millisecond), Reason: i % 11})
	}
	revoked = append(revoked,
		Revoked{SerialHex: "1234", Time: time.Date(2049, 12, 31, 23, 59, 59, 0, time.FixedZone("x", 3600)), Reason: 1},
		Revoked{SerialHex: "1235", Time: time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC), Reason: 4},
		Revoked{SerialHex: "1236", Time: time.Date(1999, 5, 6, 7, 8, 9, 0, time.UTC)},
		Revoked{SerialHex: "1237", Time: t0, Reason: 200},
		Revoked{SerialHex: strings.Repeat("ab", 120), Time: t0, Reason: 3})

	for _, k := range []struct {
		name string
		key  crypto.Signer
		algs []x509.SignatureAlgorithm
	}{
		{"P-256", p256, []x509.SignatureAlgorithm{0, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512}},
		{"P-384", p384, []x509.SignatureAlgorithm{0, x509.ECDSAWithSHA384, x509.ECDSAWithSHA256}},
		{"P-521", p521, []x509.SignatureAlgorithm{0, x509.ECDSAWithSHA512}},
		{"RSA", rsaKey, []x509.SignatureAlgorithm{0, x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA, x509.SHA256WithRSAPSS}},
		{"Ed25519", edKey, []x509.SignatureAlgorithm{0, x509.PureEd25519}},
	} {
		issuer := root(t, k.key)
		for _, alg := range k.algs {
			for _, tc := range []struct {
				name                   string
				thisUpdate, nextUpdate time.Time
				entries                []Revoked
			}{
				{"entries", t0, t0.AddDate(0, 0, 7), revoked},
				{"empty", t0, t0.AddDate(0, 0, 7), nil},
				{"only damaged", t0, t0.AddDate(0, 0, 7), []Revoked{{SerialHex: "xyz", Time: t0}}},
				{"across 2050", time.Date(2049, 12, 30, 0, 0, 0, 0, time.UTC), time.Date(2050, 1, 6, 0, 0, 0, 0, time.UTC), revoked[:3]},
			} {
				t.Run(fmt.Sprintf("%s/%v/%s", k.name, alg, tc.name), func(t *testing.T) {
					c := CRL{Number: 1 << 40, ThisUpdate: tc.thisUpdate, NextUpdate: tc.nextUpdate, Revoked: tc.entries, SignatureAlgorithm: alg}
					der, err := SignCRL(issuer, k.key, c)
					require.NoError(t, err)
					mine, err := x509.ParseRevocationList(der)
					require.NoError(t, err)
					require.NoError(t, mine.CheckSignatureFrom(issuer))
					goDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(c.Number),
						ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate, RevokedCertificateEntries: crlEntries(c.Revoked),
						SignatureAlgorithm: alg}, issuer, k.key)
					require.NoError(t, err)
					theirs, err := x509.ParseRevocationList(goDER)
					require.NoError(t, err)
					assert.Equal(t, theirs.RawTBSRevocationList, mine.RawTBSRevocationList)
					assert.Equal(t, theirs.SignatureAlgorithm, mine.SignatureAlgorithm)
				})
			}
		}
	}
}

// Refusals Go makes are made too; a signer that returns a bad signature
// yields no CRL.
func TestSignCRLRefusals(t *testing.T) {
	k := ecKey(t)
	r := root(t, k)
	_, err := SignCRL(r, k, CRL{Number: 1, ThisUpdate: t0, NextUpdate: t0.Add(-time.Second)})
	assert.Error(t, err)
	noSKI := *r
	noSKI.SubjectKeyId = nil
	_, err = SignCRL(&noSKI, k, CRL{Number: 1, ThisUpdate: t0, NextUpdate: t1})
	assert.Error(t, err)
	noCRLSign := *r
	noCRLSign.KeyUsage = x509.KeyUsageCertSign
	_, err = SignCRL(&noCRLSign, k, CRL{Number: 1, ThisUpdate: t0, NextUpdate: t1})
	assert.Error(t, err)
	_, err = SignCRL(r, wrongSigner{k, ecKey(t)}, CRL{Number: 1, ThisUpdate: t0, NextUpdate: t1})
	assert.ErrorContains(t, err, "signature returned by signer is invalid")
}

// wrongSigner claims one key and signs with another.
type wrongSigner struct {
	crypto.Signer
	other crypto.Signer
}

func (w wrongSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return w.other.Sign(r, d, o)
}
