package pca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"testing"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
)

// The CSR and certificate-bundle readers take untrusted input: they must
// never panic, and whatever they accept must hold up to their promises.
func FuzzPCAParseCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "fuzz"}}, key)
	f.Add(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	f.Add("MIIB")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		csr, alg, bits, err := parseCSR(s)
		if err != nil {
			if signer.ReasonOf(err) == "" {
				t.Fatalf("refusal without a PCA code: %v", err)
			}
			return
		}
		if csr.CheckSignature() != nil || alg == "" || bits < 256 {
			t.Fatalf("accepted a CSR that does not hold: %q %d", alg, bits)
		}
	})
}

func FuzzPCAParseCerts(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: randomSerialForFuzz(), Subject: pkix.Name{CommonName: "fuzz"}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	f.Add(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	f.Add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
	f.Fuzz(func(t *testing.T, s string) {
		certs, err := parseCerts("certificate_chain", s)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
	})
}

func randomSerialForFuzz() *big.Int {
	n, _ := issuance.RandomSerial()
	return n
}

// The subject reader takes any bytes a CSR may carry as its subject: it
// never panics, refuses with a PCA code, and what it builds reads back to
// the same subject.
func FuzzPCACheckCSRSubject(f *testing.F) {
	for _, n := range []pkix.Name{{CommonName: "fuzz"}, {}, {Country: []string{"DE"}, Organization: []string{"Müller"},
		OrganizationalUnit: []string{"a", "b"}, CommonName: "*.example.com"}} {
		der, _ := asn1.Marshal(n.ToRDNSequence())
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := checkCSRSubject(raw)
		if err != nil {
			if signer.ReasonOf(err) == "" {
				t.Fatalf("refusal without a PCA code: %v", err)
			}
			return
		}
		again, err := checkCSRSubject(s.raw)
		if err != nil {
			t.Fatalf("the subject built does not read back: %v", err)
		}
		if again.dn != s.dn || string(again.raw) != string(s.raw) {
			t.Fatalf("the subject changed on reading back: %+v, %+v", s.dn, again.dn)
		}
	})
}
