package apig

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// Names follow Huawei's CertificateForm rule: 4 to 50 characters (not
// bytes) of Chinese characters (U+4E00..U+9FA5), English letters, digits
// and '_', starting with an English letter or a Chinese character.
func TestValidName(t *testing.T) {
	for _, ok := range []string{
		"cert", "cert_demo", "Cert_01", "证书名称", "证书_1", "a证书_", "证a_1",
		strings.Repeat("证", 50), "a" + strings.Repeat("_", 49),
		"\u4e00abc", "\u9fa5abc", // the range's ends
	} {
		assert.True(t, validName(ok), "%q", ok)
	}
	for _, bad := range []string{
		"", "abc", "证书名", // under four characters
		strings.Repeat("证", 51), "a" + strings.Repeat("b", 50), // over fifty
		"_cert", "1cert", "１cert", // first character not a letter
		"cert-one", "cert one", "cert.one", "证书\u3000名称", // not in the rule
		"сертификат", "café_cert", "Ωmega", "しょうめい", "증명서이름", // letters outside Huawei's rule
		"ｃｅｒｔ", "cert１２", // full-width letters and digits
		"\u9fa6abc", "\u3400abc", "\U00020000abc", // Han outside U+4E00..U+9FA5
		"cert\u200b", "cert\x00", "cert\xff", // format, control, invalid UTF-8
	} {
		assert.False(t, validName(bad), "%q", bad)
	}
}

// algorithm_type and the SM2 signing pair are checked before anything is
// parsed; an algorithm_type other than the certificate key's is refused
// after the key is matched to the certificate.
func TestCheckAlgorithmType(t *testing.T) {
	s := newSeeds(t) // an EC P-256 certificate and its key
	base := func() Input {
		return Input{Name: "cert_demo", CertContent: s.certPEM, PrivateKey: []byte(s.keyPEM)}
	}
	now := time.Unix(1<<31, 0)
	for _, tc := range []struct {
		name  string
		edit  func(in *Input)
		field string // "" when accepted
	}{
		{"absent", func(*Input) {}, ""},
		{"ECC", func(in *Input) { in.AlgorithmType = AlgorithmECC }, ""},
		{"empty pair", func(in *Input) { in.CertContentSign, in.PrivateKeySign = "", []byte{} }, ""},
		{"RSA for an EC key", func(in *Input) { in.AlgorithmType = AlgorithmRSA }, "algorithm_type"},
		{"SM2", func(in *Input) { in.AlgorithmType = AlgorithmSM2 }, "algorithm_type"},
		{"lower case", func(in *Input) { in.AlgorithmType = "ecc" }, "algorithm_type"},
		{"signing certificate", func(in *Input) { in.CertContentSign = s.certPEM }, "cert_content_sign"},
		{"signing key", func(in *Input) { in.PrivateKeySign = []byte(s.keyPEM) }, "private_key_sign"},
		{"SM2 before unparseable input", func(in *Input) { in.AlgorithmType, in.CertContent = AlgorithmSM2, "junk" }, "algorithm_type"},
		{"mismatch after unparseable input", func(in *Input) { in.AlgorithmType, in.CertContent = AlgorithmRSA, "junk" }, "cert_content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.edit(&in)
			sign := in.PrivateKeySign
			c, err := checkInput(&in, now)
			assert.Zero(t, strings.Trim(string(sign), "\x00"), "private_key_sign is cleared")
			if tc.field == "" {
				require.NoError(t, err)
				encoding.WipeKey(c.key)
				return
			}
			require.Error(t, err)
			e := signer.AsError(err)
			assert.Equal(t, signer.KindInvalid, e.Kind)
			require.Len(t, e.Fields, 1)
			assert.Equal(t, tc.field, e.Fields[0].Field)
			if tc.field == "private_key_sign" {
				assert.Nil(t, e.Fields[0].Value, "the key is not echoed")
			}
		})
	}
}

// Each key the family takes has one algorithm type, and the list's store
// filters on the key algorithm (records written before algorithm_type
// existed have only that) select exactly the names of that type.
func TestAlgorithmTypeAndFilters(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	for _, tc := range []struct {
		pub any
		x   x509.PublicKeyAlgorithm
		alg string
	}{{&rk.PublicKey, x509.RSA, AlgorithmRSA}, {&ek.PublicKey, x509.ECDSA, AlgorithmECC}, {edPub, x509.Ed25519, AlgorithmECC}} {
		assert.Equal(t, tc.alg, algorithmTypeOf(tc.x))
		name := string(hsm.AlgorithmOf(tc.pub))
		assert.True(t, inFilters(t, tc.alg, name), "%s in %s", name, tc.alg)
	}
	assert.Empty(t, algorithmTypeOf(x509.DSA))

	names := map[string]string{}
	for _, a := range []hsm.Algorithm{hsm.RSA2048, hsm.RSA3072, hsm.RSA4096, "RSA8192", "RSA2049"} {
		names[string(a)] = AlgorithmRSA
	}
	for _, a := range []hsm.Algorithm{hsm.EC256, hsm.EC384, hsm.EC521, hsm.ED25519} {
		names[string(a)] = AlgorithmECC
	}
	for name, want := range names {
		for _, typ := range []string{AlgorithmRSA, AlgorithmECC} {
			assert.Equal(t, typ == want, inFilters(t, typ, name), "%s under %s", name, typ)
		}
	}
	_, ok := algorithmFilters(AlgorithmSM2)
	assert.False(t, ok)
	_, ok = algorithmFilters("DSA")
	assert.False(t, ok)
}

// inFilters reports whether a key algorithm name passes typ's filters.
func inFilters(t *testing.T, typ, name string) bool {
	t.Helper()
	fs, ok := algorithmFilters(typ)
	require.True(t, ok)
	for _, f := range fs {
		require.Equal(t, signer.KeyAlgorithmField, f.Field)
		switch f.Match {
		case store.AtLeast:
			if name < f.Value {
				return false
			}
		case store.Less:
			if name >= f.Value {
				return false
			}
		default:
			t.Fatalf("unexpected match %v", f.Match)
		}
	}
	return true
}
