package issuance

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"reflect"
	"testing"
)

// The subject reader takes any bytes a CSR may carry as its subject: it
// never panics, refuses with a reason, and what it builds reads back to
// the same subject.
func FuzzCheckSubject(f *testing.F) {
	for _, n := range []pkix.Name{{CommonName: "fuzz"}, {}, {Country: []string{"DE"}, Organization: []string{"Müller"},
		OrganizationalUnit: []string{"a", "b"}, CommonName: "*.example.com"}} {
		der, _ := asn1.Marshal(n.ToRDNSequence())
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := CheckSubject("csr.distinguished_name", raw)
		if err != nil {
			if ReasonOf(err) != BadName {
				t.Fatalf("refusal without its reason: %v", err)
			}
			return
		}
		again, err := CheckSubject("csr.distinguished_name", s.Raw)
		if err != nil {
			t.Fatalf("the subject built does not read back: %v", err)
		}
		if again.DN != s.DN || string(again.Raw) != string(s.Raw) {
			t.Fatalf("the subject changed on reading back: %+v, %+v", s.DN, again.DN)
		}
		if read := SubjectOf(&x509.Certificate{RawSubject: s.Raw}); !reflect.DeepEqual(read, s.RDNs) {
			t.Fatalf("the subject's RDNs are not its DER read back: %#v, %#v", s.RDNs, read)
		}
	})
}
