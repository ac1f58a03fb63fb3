package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnsafeText(t *testing.T) {
	for _, s := range []string{"a\x00b", "a\x1bb", "a\x7fb", "a\u0085b", "a\u009bb", "a\u202eb", "a\u202ab", "a\u2066b",
		"a\u2069b", "a\u200eb", "a\u200fb", "a\u200bb", "a\u200db", "\ufeffab", "a\u00adb", "a\u2028b", "a\u2029b",
		"a\ufffdb", "a\xffb"} {
		assert.True(t, UnsafeText(s), "%q", s)
	}
	for _, s := range []string{"www.example.com", "Müller GmbH", "東京", "O'Brien (Ltd.)", "a b", "Ελληνικά"} {
		assert.False(t, UnsafeText(s), "%q", s)
	}
}

func TestWildcardOverSuffix(t *testing.T) {
	for name, bad := range map[string]bool{
		"*.com": true, "*.COM": true, "*.co.uk": true, "*.github.io": true, "*.s3.amazonaws.com": true,
		"*.internal": true, "*.localhost": true, "*.home.arpa": true,
		"*.example.com": false, "*.example.co.uk": false, "*.me.github.io": false, "*.dev.internal": false,
		"com": false, "co.uk": false, "www.example.com": false, "*.bench.hsmca.test": false,
	} {
		_, got := wildcardOverSuffix(name)
		assert.Equal(t, bad, got, name)
	}
}

func TestValidDNSName(t *testing.T) {
	for name, ok := range map[string]bool{
		"example.com": true, "*.example.com": true, "a-b.example": true, "localhost": true,
		"example.com.": false, "*.*.example.com": false, "a*.example.com": false, "-a.example": false,
		"under_score.example": false, "a..b": false, "": false, "*.": false, strings.Repeat("a", 64) + ".com": false,
	} {
		assert.Equal(t, ok, validDNSName(name), name)
	}
}

func rawSubject(t *testing.T, atvs ...pkix.AttributeTypeAndValue) []byte {
	var seq pkix.RDNSequence
	for _, a := range atvs {
		seq = append(seq, pkix.RelativeDistinguishedNameSET{a})
	}
	der, err := asn1.Marshal(seq)
	require.NoError(t, err)
	return der
}

func atv(oid asn1.ObjectIdentifier, v any) pkix.AttributeTypeAndValue {
	return pkix.AttributeTypeAndValue{Type: oid, Value: v}
}

var (
	oidCN    = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidC     = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidO     = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU    = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidTitle = asn1.ObjectIdentifier{2, 5, 4, 12}
	oidEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidDC    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
)

// rawRDNSET is an RDN read with its values' string types.
type rawRDNSET []struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

const csrDNField = "csr.distinguished_name"

func TestCheckSubject(t *testing.T) {
	s, err := CheckSubject(csrDNField, rawSubject(t, atv(oidC, "DE"), atv(oidO, "Müller GmbH"), atv(oidOU, "A"), atv(oidOU, "B"),
		atv(oidDC, "corp"), atv(oidEmail, "ops@example.com"), atv(oidCN, "svc.example.com")))
	require.NoError(t, err)
	assert.Equal(t, DistinguishedName{CommonName: "svc.example.com", Country: "DE", Organization: "Müller GmbH",
		OrganizationalUnit: "A"}, s.DN)
	assert.Equal(t, []string{"ops@example.com"}, s.Emails)
	assert.False(t, s.Empty)
	var seq pkix.RDNSequence
	_, err = asn1.Unmarshal(s.Raw, &seq)
	require.NoError(t, err)
	require.Len(t, seq, 7, "one attribute per RDN, in the CSR's order")
	var name pkix.Name
	name.FillFromRDNSequence(&seq)
	assert.Equal(t, []string{"A", "B"}, name.OrganizationalUnit)
	// The string types: PrintableString where it fits, UTF8String
	// otherwise, IA5String for email and domain component.
	var raw []rawRDNSET
	_, err = asn1.Unmarshal(s.Raw, &raw)
	require.NoError(t, err)
	tags := []int{}
	for _, r := range raw {
		tags = append(tags, r[0].Value.Tag)
	}
	assert.Equal(t, []int{asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagPrintableString,
		asn1.TagIA5String, asn1.TagIA5String, asn1.TagPrintableString}, tags)

	s, err = CheckSubject(csrDNField, rawSubject(t))
	require.NoError(t, err)
	assert.True(t, s.Empty)

	for name, raw := range map[string][]byte{
		"NUL in CN":            rawSubject(t, atv(oidCN, "www.bank.com\x00.evil.com")),
		"RLO in CN":            rawSubject(t, atv(oidCN, "moc.\u202eevil.com")),
		"1000-character CN":    rawSubject(t, atv(oidCN, strings.Repeat("a", 1000))),
		"65-character CN":      rawSubject(t, atv(oidCN, strings.Repeat("a", 65))),
		"C1 control in O":      rawSubject(t, atv(oidO, "a\u0085b")),
		"zero-width in O":      rawSubject(t, atv(oidO, "a\u200bb")),
		"two CNs":              rawSubject(t, atv(oidCN, "a"), atv(oidCN, "b")),
		"country":              rawSubject(t, atv(oidC, "Germany")),
		"title not accepted":   rawSubject(t, atv(oidTitle, "CEO")),
		"integer value":        rawSubject(t, atv(oidCN, 42)),
		"empty value":          rawSubject(t, atv(oidCN, "")),
		"leading space":        rawSubject(t, atv(oidCN, " a")),
		"bad email":            rawSubject(t, atv(oidEmail, "not an address")),
		"bad domain component": rawSubject(t, atv(oidDC, "a.b")),
		"17 attributes": rawSubject(t, func() []pkix.AttributeTypeAndValue {
			var out []pkix.AttributeTypeAndValue
			for range 17 {
				out = append(out, atv(oidOU, "x"))
			}
			return out
		}()...),
		"not DER": {0x30, 0x05, 0x01},
	} {
		_, err := CheckSubject(csrDNField, raw)
		require.Error(t, err, name)
		assert.Equal(t, BadName, ReasonOf(err), name)
		assert.True(t, strings.HasPrefix(err.(*Error).Field, csrDNField), name)
	}
}

// BenchmarkSubjectRDNs: the RDNs of a checked subject, kept by
// CheckSubject, against its DER read back (what name constraints were
// given before).
func BenchmarkSubjectRDNs(b *testing.B) {
	der, err := asn1.Marshal(pkix.Name{Country: []string{"DE"}, Organization: []string{"Example"},
		OrganizationalUnit: []string{"Ops"}, CommonName: "svc.example.com"}.ToRDNSequence())
	if err != nil {
		b.Fatal(err)
	}
	s, err := CheckSubject("csr.distinguished_name", der)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("read back", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			SubjectOf(&x509.Certificate{RawSubject: s.Raw})
		}
	})
}
