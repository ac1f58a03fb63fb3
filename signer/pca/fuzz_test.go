package pca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
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
		csr, alg, bits, err := readCSR(s)
		if err != nil {
			if signer.ReasonOf(err) == "" {
				t.Fatalf("refusal without a reason: %v", err)
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
		certs, err := readCertificates("certificate_chain", s)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		if err != nil && signer.ReasonOf(err) != ReasonBadCert {
			t.Fatalf("refusal without its reason: %v", err)
		}
	})
}

func randomSerialForFuzz() *big.Int {
	n, _ := issuance.NewSerial()
	return n
}
