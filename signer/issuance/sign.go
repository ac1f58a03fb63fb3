package issuance

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"time"
)

// SignCertificate completes tmpl with a fresh serial number and the
// subject key identifier of pub (by method m), then signs it with s, the
// key of parent (nil: tmpl signs itself). A fresh serial on every call
// lets a caller sign again after a serial collision. Go verifies the new
// signature against the parent's public key before returning, so an HSM
// fault cannot yield a bad certificate.
func SignCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, s crypto.Signer, m KeyIDMethod) ([]byte, error) {
	serial, err := NewSerial()
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

// Observer receives the time of each signature that succeeded: the
// engine passes its metrics' ObserveSigning, so this package needs no
// metrics registry.
type Observer func(operation, keyAlgorithm string, d time.Duration)

// Timed wraps s so that every signature it makes is timed for observe
// under operation and keyAlgorithm (both bounded label values). Failed
// signatures are not observed: their time says nothing of the HSM's
// speed.
func Timed(s crypto.Signer, operation, keyAlgorithm string, observe Observer) crypto.Signer {
	return timedSigner{Signer: s, operation: operation, keyAlgorithm: keyAlgorithm, observe: observe}
}

type timedSigner struct {
	crypto.Signer
	operation, keyAlgorithm string
	observe                 Observer
}

func (t timedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := t.Signer.Sign(r, digest, opts)
	if err == nil && t.observe != nil {
		t.observe(t.operation, t.keyAlgorithm, time.Since(start))
	}
	return sig, err
}
