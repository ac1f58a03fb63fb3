package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"slices"
	"time"
)

// NewSerial is a positive serial number of 20 octets (RFC 5280 4.1.2.2):
// the first 6 are the time in milliseconds since 1970, big-endian, and
// the other 14 are random (112 bits from crypto/rand; the CA/Browser
// Forum's Baseline Requirements ask for 64, ISO/IEC 18013-5 for 63). With
// the time first, serials issued one after the other sit side by side in
// the stores' serial indexes instead of on a random page each. The time's
// first octet is 0x01 from 2004 to 2039 and its top bit stays clear for
// millennia, so the integer is positive, needs no sign octet and keeps its
// 20 octets.
func NewSerial() (*big.Int, error) {
	return serialAt(time.Now())
}

func serialAt(now time.Time) (*big.Int, error) {
	var b [20]byte
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	if _, err := rand.Read(b[6:]); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b[:]), nil
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
// what key identifiers hash: for the keys CSRs hold, their own encoding
// (RFC 5480 and 8410: the point; RFC 3279: the PKCS #1 key), without
// encoding and reading back a whole SubjectPublicKeyInfo.
func subjectPublicKeyBits(pub crypto.PublicKey) ([]byte, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if b, err := k.Bytes(); err == nil {
			return b, nil
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return slices.Clone(k), nil
		}
	case *rsa.PublicKey:
		if k.N != nil && k.N.Sign() > 0 && k.E > 0 {
			return x509.MarshalPKCS1PublicKey(k), nil
		}
	}
	return spkiBits(pub)
}

// spkiBits is subjectPublicKeyBits read from the key's encoded
// SubjectPublicKeyInfo.
func spkiBits(pub crypto.PublicKey) ([]byte, error) {
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
