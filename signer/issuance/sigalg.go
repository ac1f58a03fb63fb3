package issuance

import (
	"crypto/x509"
	"strings"
)

// Hash names a request may give for a signature.
const (
	SHA256 = "SHA256"
	SHA384 = "SHA384"
	SHA512 = "SHA512"
)

// CheckHash validates a signature hash name; empty gives SHA256 unless
// the field is required.
func CheckHash(field, s string, required bool) (string, error) {
	switch s {
	case SHA256, SHA384, SHA512:
		return s, nil
	case "":
		if !required {
			return SHA256, nil
		}
		return "", refuse(BadHash, field, s, "is required")
	}
	return "", refuse(BadHash, field, s, "must be SHA256, SHA384 or SHA512")
}

// SignatureAlgorithm combines the signing key's algorithm (an
// hsm.Algorithm name) with a hash name. Ed25519 has its hash built in.
func SignatureAlgorithm(keyAlg, hash string) x509.SignatureAlgorithm {
	switch {
	case keyAlg == "ED25519":
		return x509.PureEd25519
	case strings.HasPrefix(keyAlg, "EC"):
		return pick(hash, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512)
	}
	return pick(hash, x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA)
}

func pick(hash string, s256, s384, s512 x509.SignatureAlgorithm) x509.SignatureAlgorithm {
	switch hash {
	case SHA384:
		return s384
	case SHA512:
		return s512
	}
	return s256
}

// HashName is the hash of a certificate's signature algorithm by the
// names requests use; SHA256 for any other.
func HashName(a x509.SignatureAlgorithm) string {
	switch a {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		return SHA384
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		return SHA512
	}
	return SHA256
}

// DefaultHash is the hash of a signature by a key of keyAlg (an
// hsm.Algorithm name) when a request names none: for an EC key the one
// its curve is paired with (P-256 SHA256, P-384 SHA384, P-521 SHA512, as
// the CA/Browser Forum requirements and Mozilla's root store policy ask
// and zlint checks), SHA256 for any other key.
func DefaultHash(keyAlg string) string {
	switch keyAlg {
	case "EC384":
		return SHA384
	case "EC521":
		return SHA512
	}
	return SHA256
}

// CRLSignatureAlgorithm is the algorithm of a CRL signed by a CA key of
// keyAlg whose certificates are signed with hash: an EC key always signs
// with its curve's hash (a CRL's algorithm is no request's choice), an
// RSA key with hash.
func CRLSignatureAlgorithm(keyAlg, hash string) x509.SignatureAlgorithm {
	if strings.HasPrefix(keyAlg, "EC") {
		hash = DefaultHash(keyAlg)
	}
	return SignatureAlgorithm(keyAlg, hash)
}
