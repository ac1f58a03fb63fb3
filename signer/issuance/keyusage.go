package issuance

import (
	"crypto/x509"
	"strings"
)

// keyUsages are the key usage bits by their RFC 5280 names, which the
// families use on the wire, in the order of the bits.
var keyUsages = []struct {
	name string
	ku   x509.KeyUsage
}{
	{"digitalSignature", x509.KeyUsageDigitalSignature},
	{"nonRepudiation", x509.KeyUsageContentCommitment},
	{"keyEncipherment", x509.KeyUsageKeyEncipherment},
	{"dataEncipherment", x509.KeyUsageDataEncipherment},
	{"keyAgreement", x509.KeyUsageKeyAgreement},
	{"keyCertSign", x509.KeyUsageCertSign},
	{"cRLSign", x509.KeyUsageCRLSign},
	{"encipherOnly", x509.KeyUsageEncipherOnly},
	{"decipherOnly", x509.KeyUsageDecipherOnly},
}

// ParseKeyUsages reads key usage names, case-insensitively.
func ParseKeyUsages(field string, names []string) (x509.KeyUsage, error) {
	var ku x509.KeyUsage
	for _, n := range names {
		bit, ok := keyUsageBit(n)
		if !ok {
			return 0, refuse(BadValue, field, n, "unknown key usage")
		}
		ku |= bit
	}
	return ku, nil
}

func keyUsageBit(name string) (x509.KeyUsage, bool) {
	for _, k := range keyUsages {
		if strings.EqualFold(name, k.name) {
			return k.ku, true
		}
	}
	return 0, false
}

// KeyUsageNames names the bits of ku in bit order; never nil, so that an
// empty list shows as [].
func KeyUsageNames(ku x509.KeyUsage) []string {
	out := []string{}
	for _, k := range keyUsages {
		if ku&k.ku != 0 {
			out = append(out, k.name)
		}
	}
	return out
}

// EntityKeyUsage is the key usage of an end-entity certificate: the
// requested bits, or by default digitalSignature, with keyEncipherment
// for RSA keys (TLS key transport). The CA bits are refused: an entity
// that may sign certificates is a CA and gets a CA profile.
func EntityKeyUsage(field string, requested x509.KeyUsage, keyAlg string) (x509.KeyUsage, error) {
	ku := requested
	if ku == 0 {
		ku = x509.KeyUsageDigitalSignature
		if strings.HasPrefix(keyAlg, "RSA") {
			ku |= x509.KeyUsageKeyEncipherment
		}
	}
	if ku&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return 0, refuse(BadValue, field, KeyUsageNames(ku), "keyCertSign and cRLSign are for CA certificates")
	}
	return ku, nil
}
