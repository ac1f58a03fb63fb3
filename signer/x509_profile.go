package signer

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
)

// The DTS family's serial numbers and key identifier bits; the PCA family
// uses issuance.RandomSerial and issuance.KeyID, which replace them.

// randomSerial is a positive serial number of at most 20 octets (RFC 5280
// 4.1.2.2) with 159 random bits: the top bit of the first octet is cleared
// so the DER integer needs no sign octet.
func randomSerial() (*big.Int, error) {
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
