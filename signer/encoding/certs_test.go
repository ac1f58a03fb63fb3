package encoding

import (
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCertificatesKeepsOrder(t *testing.T) {
	a, aDER := certPEM(t, "a")
	b, bDER := certPEM(t, "b")
	certs, err := ParseCertificates([]byte(a+b), RefuseOthers)
	require.NoError(t, err)
	require.Len(t, certs, 2)
	assert.Equal(t, aDER, certs[0].Raw)
	assert.Equal(t, bDER, certs[1].Raw)
}

// A key beside the certificates is skipped where bundles are taken as
// tools export them, refused where a misplaced key must be reported.
func TestParseCertificatesOtherBlocks(t *testing.T) {
	cert, der := certPEM(t, "a")
	key, _ := pkcs8PEM(t, ecKey(t))
	certs, err := ParseCertificates([]byte(key+cert), SkipOthers)
	require.NoError(t, err)
	require.Len(t, certs, 1)
	assert.Equal(t, der, certs[0].Raw)

	_, err = ParseCertificates([]byte(cert+key), RefuseOthers)
	require.Error(t, err)
	assert.Equal(t, WrongBlock, ReasonOf(err))
	assert.Equal(t, "PRIVATE KEY", err.(*Error).Value)
	assert.NotContains(t, err.Error(), "MI", "a refusal never quotes the block")
}

func TestParseCertificatesRefusals(t *testing.T) {
	good, _ := certPEM(t, "a")
	key, _ := pkcs8PEM(t, ecKey(t))
	for name, tc := range map[string]struct {
		in     string
		others Others
		reason Reason
		msg    string
	}{
		"empty":          {"", SkipOthers, Malformed, "holds no PEM CERTIFICATE block"},
		"not PEM":        {"hello", SkipOthers, Malformed, "holds no PEM CERTIFICATE block"},
		"only a key":     {key, SkipOthers, Malformed, "holds no PEM CERTIFICATE block"},
		"broken PEM":     {"-----BEGIN CERTIFICATE-----\nAAAA\n", SkipOthers, Malformed, "is not PEM: "},
		"empty body":     {"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", SkipOthers, Malformed, "certificate 1 is not valid X.509"},
		"second is junk": {good + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", RefuseOthers, Malformed, "certificate 2 is not valid X.509"},
	} {
		t.Run(name, func(t *testing.T) {
			certs, err := ParseCertificates([]byte(tc.in), tc.others)
			require.Error(t, err)
			assert.Nil(t, certs)
			assert.Equal(t, tc.reason, ReasonOf(err))
			assert.Contains(t, err.Error(), tc.msg)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestParseCertificateTakesExactlyOne(t *testing.T) {
	a, der := certPEM(t, "a")
	b, _ := certPEM(t, "b")
	c, err := ParseCertificate([]byte("\n  " + a + "\n"))
	require.NoError(t, err)
	assert.Equal(t, der, c.Raw)

	_, err = ParseCertificate([]byte(a + b))
	assert.Equal(t, Count, ReasonOf(err))
	_, err = ParseCertificate([]byte(strings.Replace(a, "CERTIFICATE", "CERTIFICATE REQUEST", 2)))
	assert.Equal(t, WrongBlock, ReasonOf(err))
}

// The forms of a client certificate in a header or a JSON field.
func TestParseCertificateText(t *testing.T) {
	a, raw := certPEM(t, "a")
	b, _ := certPEM(t, "b")
	key, _ := pkcs8PEM(t, ecKey(t))
	std := base64.StdEncoding.EncodeToString(raw)
	for name, in := range map[string]string{
		"std base64":    std,
		"raw base64":    base64.RawStdEncoding.EncodeToString(raw),
		"url base64":    base64.URLEncoding.EncodeToString(raw),
		"raw url":       base64.RawURLEncoding.EncodeToString(raw),
		"wrapped":       std[:64] + "\n" + std[64:128] + "\r\n" + std[128:],
		"pem":           a,
		"pem bundle":    key + a + b,
		"folded header": strings.ReplaceAll(strings.TrimSpace(a), "\n", " "),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCertificateText(in)
			require.NoError(t, err)
			assert.Equal(t, raw, got.Raw)
		})
	}
	for name, in := range map[string]string{
		"empty":     "",
		"garbage":   "!!!",
		"not DER":   base64.StdEncoding.EncodeToString([]byte("certificate")),
		"empty pem": "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
		"key only":  key,
		"half PEM":  "-----BEGIN CERTIFICATE-----",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCertificateText(in)
			require.Error(t, err)
			assert.Equal(t, Malformed, ReasonOf(err))
		})
	}
}

func TestFingerprintAndSerial(t *testing.T) {
	assert.Equal(t, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Fingerprint(nil))
	assert.Equal(t, "1f", SerialHex(big.NewInt(31)))
	assert.Equal(t, "", SerialHex(nil))
}

// FuzzParseCertificates: what the certificate readers accept is a
// certificate that parses again from its bytes, and a refusal is one line
// with a reason.
func FuzzParseCertificates(f *testing.F) {
	a, _ := certPEM(f, "a")
	key, _ := pkcs8PEM(f, ecKey(f))
	for _, seed := range []string{a, a + a, key + a, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "MIIB", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, o := range []Others{SkipOthers, RefuseOthers} {
			certs, err := ParseCertificates([]byte(s), o)
			if err != nil {
				assert.NotZero(t, ReasonOf(err))
				assert.NotContains(t, err.Error(), "\n")
				continue
			}
			require.NotEmpty(t, certs)
		}
		if c, err := ParseCertificateText(s); err == nil {
			require.NotNil(t, c)
		} else {
			assert.NotZero(t, ReasonOf(err))
		}
	})
}
