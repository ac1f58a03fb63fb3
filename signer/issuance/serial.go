package issuance

import (
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
)

// RandomSerial is a positive serial number of at most 20 octets (RFC 5280
// 4.1.2.2) with 159 random bits: the top bit of the first octet is cleared
// so the DER integer needs no sign octet.
func RandomSerial() (*big.Int, error) {
	var b [20]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		b[0] &= 0x7f
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// KeyIDMethod is how a profile derives a key identifier.
type KeyIDMethod uint8

const (
	// KeyIDSHA1 is RFC 5280's method 1, the SHA-1 of the subjectPublicKey
	// bits: an identifier, not a security property, and the value every
	// other tool computes (the PCA family).
	KeyIDSHA1 KeyIDMethod = iota
	// KeyIDSHA256 is RFC 7093's method 1, the leftmost 160 bits of the
	// SHA-256 of the same bits, as ISO/IEC 18013-5 profiles ask (DTS).
	KeyIDSHA256
)

// KeyID is the key identifier of pub by method m.
func KeyID(pub crypto.PublicKey, m KeyIDMethod) ([]byte, error) {
	bits, err := subjectPublicKeyBits(pub)
	if err != nil {
		return nil, err
	}
	if m == KeyIDSHA256 {
		sum := sha256.Sum256(bits)
		return sum[:20], nil
	}
	sum := sha1.Sum(bits)
	return sum[:], nil
}

// subjectPublicKeyBits is the content of the subjectPublicKey BIT STRING,
// what key identifiers hash.
func subjectPublicKeyBits(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	return spki.PublicKey.Bytes, nil
}
