package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// digestInfoPrefix is the DER of a PKCS#1 v1.5 DigestInfo up to the
// digest (RFC 8017 section 9.2, note 1): CKM_RSA_PKCS signs what it is
// given, so the prefix is added here. Tokens without the hash-and-sign
// mechanisms (CKM_SHA256_RSA_PKCS ...) sign this way too.
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// pssHash maps a hash to the CKM_ and CKG_MGF1_ values of RSA-PSS.
var pssHash = map[crypto.Hash][2]uint{
	crypto.SHA1:   {pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1},
	crypto.SHA224: {pkcs11.CKM_SHA224, pkcs11.CKG_MGF1_SHA224},
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// signMechanism picks the mechanism and the bytes to sign for a key of
// pub's type: CKM_ECDSA over the digest, CKM_RSA_PKCS over DigestInfo,
// CKM_RSA_PKCS_PSS over the digest, CKM_EDDSA over the message.
func signMechanism(pub crypto.PublicKey, digest []byte, opts crypto.SignerOpts) (*pkcs11.Mechanism, []byte, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), digest, nil
	case ed25519.PublicKey:
		return pkcs11.NewMechanism(ckmEdDSA, nil), digest, nil
	case *rsa.PublicKey:
		if o, ok := opts.(*rsa.PSSOptions); ok {
			h, ok := pssHash[o.Hash]
			if !ok {
				return nil, nil, fmt.Errorf("RSA-PSS with %s is not supported", o.Hash)
			}
			salt := o.SaltLength
			switch {
			case salt == rsa.PSSSaltLengthEqualsHash:
				salt = o.Hash.Size()
			case salt < 0:
				return nil, nil, fmt.Errorf("RSA-PSS salt length %d is not supported", salt)
			case salt > (k.N.BitLen()+6)/8-o.Hash.Size()-2:
				return nil, nil, fmt.Errorf("RSA-PSS salt length %d is too long for a %d-bit key", salt, k.N.BitLen())
			}
			return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(h[0], h[1], uint(salt))), digest, nil
		}
		prefix, ok := digestInfoPrefix[opts.HashFunc()]
		if !ok {
			return nil, nil, fmt.Errorf("RSA PKCS#1 v1.5 with %s is not supported", opts.HashFunc())
		}
		in := make([]byte, 0, len(prefix)+len(digest))
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), append(append(in, prefix...), digest...), nil
	}
	return nil, nil, fmt.Errorf("unsupported key type %T", pub)
}

// ecdsaDER turns CKM_ECDSA's r || s into the ASN.1 signature
// crypto.Signer callers expect.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, errors.New("hsm: the token returned a malformed ECDSA signature")
	}
	r := new(big.Int).SetBytes(raw[:len(raw)/2])
	s := new(big.Int).SetBytes(raw[len(raw)/2:])
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.Bytes()
}
