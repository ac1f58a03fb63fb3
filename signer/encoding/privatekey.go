package encoding

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
)

// privateKeyTypes are the unencrypted PEM labels of a private key.
var privateKeyTypes = map[string]bool{"PRIVATE KEY": true, "RSA PRIVATE KEY": true, "EC PRIVATE KEY": true}

// ParsePrivateKey reads the one private key of a PEM text (PKCS#8, PKCS#1
// or SEC1, unencrypted). Blocks of other types are ignored: a certificate
// often travels with its key. Parser errors are not passed on, because
// they describe the key's bytes. The caller clears text and, when done,
// the key (WipeKey).
func ParsePrivateKey(text []byte) (crypto.PrivateKey, error) {
	blocks, err := ReadPEM(text)
	defer ClearBlocks(blocks)
	if err != nil {
		return nil, err
	}
	b, err := onePrivateKeyBlock(blocks)
	if err != nil {
		return nil, err
	}
	for _, parse := range keyParsers(b.Type) {
		if k, err := parse(b.Bytes); err == nil {
			return k, nil
		}
	}
	return nil, refuse(Malformed, "is not a valid PKCS#1, PKCS#8 or SEC1 private key")
}

func onePrivateKeyBlock(blocks []Block) (*Block, error) {
	var found *Block
	for i := range blocks {
		b := &blocks[i]
		switch {
		case b.Type == "ENCRYPTED PRIVATE KEY" || b.Encrypted:
			return nil, refuse(Encrypted, "is encrypted; send the key unencrypted")
		case privateKeyTypes[b.Type]:
			if found != nil {
				return nil, refuse(Count, "must hold exactly one private key")
			}
			found = b
		}
	}
	if found == nil {
		return nil, refuse(Malformed, "holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
	}
	return found, nil
}

// keyParsers tries the label's format first, then the others: mislabelled
// keys are common and the formats cannot be confused with one another.
func keyParsers(label string) []func([]byte) (crypto.PrivateKey, error) {
	pkcs8 := func(b []byte) (crypto.PrivateKey, error) { return x509.ParsePKCS8PrivateKey(b) }
	pkcs1 := func(b []byte) (crypto.PrivateKey, error) { return x509.ParsePKCS1PrivateKey(b) }
	sec1 := func(b []byte) (crypto.PrivateKey, error) { return x509.ParseECPrivateKey(b) }
	switch label {
	case "RSA PRIVATE KEY":
		return []func([]byte) (crypto.PrivateKey, error){pkcs1, pkcs8, sec1}
	case "EC PRIVATE KEY":
		return []func([]byte) (crypto.PrivateKey, error){sec1, pkcs1, pkcs8}
	}
	return []func([]byte) (crypto.PrivateKey, error){pkcs8, pkcs1, sec1}
}

// WipeKey zeroes the secret values of a parsed key in place. Go keeps
// derived copies it does not expose (precomputed values of the FIPS
// module); those go with the garbage collector.
func WipeKey(k crypto.PrivateKey) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		wipeRSA(k)
	case *ecdsa.PrivateKey:
		wipeInt(k.D)
	case ed25519.PrivateKey:
		clear(k)
	}
}

func wipeRSA(k *rsa.PrivateKey) {
	wipeInt(k.D)
	for _, p := range k.Primes {
		wipeInt(p)
	}
	wipeInt(k.Precomputed.Dp)
	wipeInt(k.Precomputed.Dq)
	wipeInt(k.Precomputed.Qinv)
	for _, v := range k.Precomputed.CRTValues {
		wipeInt(v.Exp)
		wipeInt(v.Coeff)
		wipeInt(v.R)
	}
}

func wipeInt(x *big.Int) {
	if x != nil {
		clear(x.Bits())
		x.SetInt64(0)
	}
}
