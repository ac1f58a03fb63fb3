package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"strings"
)

// Algorithm names a key type and size the HSM layer can generate.
type Algorithm string

// The algorithms Generate accepts.
const (
	EC256   Algorithm = "EC256"
	EC384   Algorithm = "EC384"
	EC521   Algorithm = "EC521"
	RSA2048 Algorithm = "RSA2048"
	RSA3072 Algorithm = "RSA3072"
	RSA4096 Algorithm = "RSA4096"
	ED25519 Algorithm = "ED25519"
)

// algorithms lists every supported algorithm.
var algorithms = []Algorithm{EC256, EC384, EC521, RSA2048, RSA3072, RSA4096, ED25519}

// ParseAlgorithm accepts an algorithm name, case-insensitively.
func ParseAlgorithm(s string) (Algorithm, error) {
	a := Algorithm(strings.ToUpper(strings.TrimSpace(s)))
	for _, known := range algorithms {
		if a == known {
			return a, nil
		}
	}
	return "", fmt.Errorf("hsm: unknown key algorithm %q (want one of EC256, EC384, EC521, RSA2048, RSA3072, RSA4096, ED25519)", s)
}

func (a Algorithm) String() string { return string(a) }

// curve is the NIST curve of an EC algorithm, nil for the others.
func (a Algorithm) curve() elliptic.Curve {
	switch a {
	case EC256:
		return elliptic.P256()
	case EC384:
		return elliptic.P384()
	case EC521:
		return elliptic.P521()
	}
	return nil
}

// rsaBits is the modulus size of an RSA algorithm, 0 for the others.
func (a Algorithm) rsaBits() int {
	switch a {
	case RSA2048:
		return 2048
	case RSA3072:
		return 3072
	case RSA4096:
		return 4096
	}
	return 0
}

// AlgorithmOf names the algorithm of a public key in the vocabulary of
// Generate: EC256, RSA2048, ED25519 and so on; RSA keys of other sizes
// (imported ones) get "RSA<bits>", which ParseAlgorithm does not accept,
// and other curves "EC-<curve>"; a key of another type "". It is the one
// place hsmca names a key: the HSM layer needs it for the keys it finds,
// so it lives here, and the families above decide which names they accept.
func AlgorithmOf(pub crypto.PublicKey) Algorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return EC256
		case elliptic.P384():
			return EC384
		case elliptic.P521():
			return EC521
		}
		return Algorithm("EC-" + k.Curve.Params().Name)
	case *rsa.PublicKey:
		return Algorithm(fmt.Sprintf("RSA%d", k.N.BitLen()))
	case ed25519.PublicKey:
		return ED25519
	}
	return ""
}

var (
	oidP256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384    = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521    = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// ecParams is the DER CKA_EC_PARAMS (a named-curve OID) of a NIST curve.
func ecParams(c elliptic.Curve) ([]byte, error) {
	var oid asn1.ObjectIdentifier
	switch c {
	case elliptic.P256():
		oid = oidP256
	case elliptic.P384():
		oid = oidP384
	case elliptic.P521():
		oid = oidP521
	default:
		return nil, fmt.Errorf("hsm: unsupported curve %s", c.Params().Name)
	}
	return asn1.Marshal(oid)
}

// curveOf is the inverse of ecParams.
func curveOf(params []byte) (elliptic.Curve, error) {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(params, &oid); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("hsm: CKA_EC_PARAMS is not a named curve")
	}
	switch {
	case oid.Equal(oidP256):
		return elliptic.P256(), nil
	case oid.Equal(oidP384):
		return elliptic.P384(), nil
	case oid.Equal(oidP521):
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("hsm: unsupported curve %s", oid)
}

// ecPoint decodes CKA_EC_POINT, which tokens give either DER-wrapped in an
// OCTET STRING (as PKCS#11 requires) or bare; size is the bare length,
// which tells the two apart without guessing from the first bytes.
func ecPoint(v []byte, size int) ([]byte, error) {
	if len(v) == size {
		return v, nil
	}
	var inner []byte
	if rest, err := asn1.Unmarshal(v, &inner); err == nil && len(rest) == 0 && len(inner) == size {
		return inner, nil
	}
	return nil, fmt.Errorf("hsm: CKA_EC_POINT has an unexpected encoding (%d bytes)", len(v))
}
