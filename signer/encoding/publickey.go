package encoding

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/hsmca/hsmca/hsm"
)

// RSA sizes hsmca takes from a CSR or an import: smaller keys protect
// nothing, larger ones make every signature cost the HSM far more than it
// is worth.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// KeyAlgorithm names a public key (hsm.AlgorithmOf) with its size in
// bits, refusing the keys hsmca neither certifies nor imports: RSA outside
// MinRSABits..MaxRSABits, curves other than P-256, P-384 and P-521, and
// other key types.
func KeyAlgorithm(pub crypto.PublicKey) (hsm.Algorithm, int, error) {
	alg := hsm.AlgorithmOf(pub)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < MinRSABits || bits > MaxRSABits {
			return "", 0, &Error{Reason: UnsupportedKey, Value: bits,
				Msg: fmt.Sprintf("RSA keys must have %d to %d bits, not %d", MinRSABits, MaxRSABits, bits)}
		}
		return alg, bits, nil
	case *ecdsa.PublicKey:
		switch alg {
		case hsm.EC256, hsm.EC384, hsm.EC521:
			return alg, k.Curve.Params().BitSize, nil
		}
		name := k.Curve.Params().Name
		return "", 0, &Error{Reason: UnsupportedKey, Value: name,
			Msg: "EC keys must be on P-256, P-384 or P-521, not " + name}
	case ed25519.PublicKey:
		return alg, 256, nil
	}
	return "", 0, refuse(UnsupportedKey, "must be an RSA, EC or Ed25519 key")
}

// PublicKeysEqual reports whether a and b are the same key; keys of types
// that cannot compare themselves are never equal.
func PublicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// PublicKeyPEM is the PEM SubjectPublicKeyInfo of a key.
func PublicKeyPEM(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return EncodePEM("PUBLIC KEY", der), nil
}

// ParsePublicKeyPEM reads the first block of PEM text as a
// SubjectPublicKeyInfo. It reads what hsmca stored, not client input, so
// it is the strict encoding/pem reader.
func ParsePublicKeyPEM(text string) (crypto.PublicKey, error) {
	b, _ := pem.Decode([]byte(text))
	if b == nil {
		return nil, errors.New("public key is not PEM")
	}
	return x509.ParsePKIXPublicKey(b.Bytes)
}

// PublicJWK is the RFC 7517 form of a public key, for signing (use sig),
// with kid as its key id.
func PublicJWK(pub crypto.PublicKey, kid string) (map[string]any, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		ek, err := p.ECDH()
		if err != nil {
			return nil, err
		}
		pt := ek.Bytes() // 0x04 || X || Y, each of the curve size
		size := (len(pt) - 1) / 2
		return map[string]any{"kty": "EC", "crv": p.Curve.Params().Name, "kid": kid, "use": "sig",
			"x": b64(pt[1 : 1+size]), "y": b64(pt[1+size:])}, nil
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "use": "sig",
			"n": b64(p.N.Bytes()), "e": b64(big.NewInt(int64(p.E)).Bytes())}, nil
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "x": b64(p)}, nil
	}
	return nil, fmt.Errorf("no JWK form for a %T", pub)
}
