package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"time"
)

// anyPolicy (RFC 5280 4.2.1.4): the CA does not restrict the policies of
// the certificates under it.
var (
	anyPolicy    = asn1.ObjectIdentifier{2, 5, 29, 32, 0}
	anyPolicyOID = func() x509.OID {
		oid, err := x509.OIDFromInts([]uint64{2, 5, 29, 32, 0})
		if err != nil {
			panic(err) // a constant
		}
		return oid
	}()
)

// SubordinateCATemplate is the profile of a CA certificate signed by
// another CA (a PCA subordinate, signed by the daemon's key or from a
// CSR): CATemplate plus certificatePolicies holding anyPolicy alone. RFC
// 5280 lets a CA certificate carry anyPolicy to pass every policy of its
// issuer on; the CA/Browser Forum requirements (zlint's
// e_sub_ca_certificate_policies_missing) ask every subordinate CA for
// the extension. A root carries none. A DTS intermediate uses the same.
func SubordinateCATemplate(subject pkix.Name, nb, na time.Time, pathLen int, ku x509.KeyUsage) *x509.Certificate {
	t := CATemplate(subject, nb, na, pathLen, ku)
	t.Policies = []x509.OID{anyPolicyOID}
	t.PolicyIdentifiers = []asn1.ObjectIdentifier{anyPolicy} // marshalled under GODEBUG x509usepolicies=0
	return t
}
