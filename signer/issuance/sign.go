package issuance

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
)

// SignCertificate completes tmpl with a fresh serial number and the
// subject key identifier of pub (by method m), then signs it with s, the
// key of parent (nil: tmpl signs itself). A fresh serial on every call
// lets a caller sign again after a serial collision. Go verifies the new
// signature against the parent's public key before returning, so an HSM
// fault cannot yield a bad certificate.
func SignCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, s crypto.Signer, m KeyIDMethod) ([]byte, error) {
	serial, err := RandomSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	if tmpl.SubjectKeyId, err = KeyID(pub, m); err != nil {
		return nil, err
	}
	if parent == nil {
		parent = tmpl
	}
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, s)
}

// SignCSR makes the certificate request of the key behind s for subject;
// alg 0 lets Go pick the key's default.
func SignCSR(subject pkix.Name, alg x509.SignatureAlgorithm, s crypto.Signer) ([]byte, error) {
	return x509.CreateCertificateRequest(rand.Reader,
		&x509.CertificateRequest{Subject: subject, SignatureAlgorithm: alg}, s)
}
