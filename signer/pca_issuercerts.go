package signer

import (
	"crypto/x509"
	"errors"
)

// issuerCerts keeps parsed CA certificates by their DER bytes: every
// issuance reads its CA record afresh but need not parse the same
// certificate again each time. It is PCA's, kept apart from the core's
// cache so that it moves with the PCA family.
var issuerCerts = NewBytesCache(parseCACert)

func parseCACert(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("CA has no certificate")
	}
	return x509.ParseCertificate(der)
}
