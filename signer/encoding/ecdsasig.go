package encoding

import (
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"math/big"
)

// An ECDSA signature has two forms: DER (ASN.1 SEQUENCE{r, s}), what
// X.509, CMS, openssl and the HSM layer produce, and raw r||s, each
// left-padded to the curve size, what JWS (RFC 7518 section 3.4) wants.

// ECDSARawFromDER turns a DER signature by pub into its raw form.
func ECDSARawFromDER(der []byte, pub *ecdsa.PublicKey) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) > 0 {
		return nil, errors.New("ECDSA signature is not DER")
	}
	size := curveBytes(pub)
	if sig.R.Sign() < 0 || sig.S.Sign() < 0 || sig.R.BitLen() > 8*size || sig.S.BitLen() > 8*size {
		return nil, errors.New("ECDSA signature does not fit its curve")
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}

// ECDSAFromRaw splits a raw signature by pub into r and s; ok is false
// when it has not the curve's length.
func ECDSAFromRaw(raw []byte, pub *ecdsa.PublicKey) (r, s *big.Int, ok bool) {
	size := curveBytes(pub)
	if len(raw) != 2*size {
		return nil, nil, false
	}
	return new(big.Int).SetBytes(raw[:size]), new(big.Int).SetBytes(raw[size:]), true
}

func curveBytes(pub *ecdsa.PublicKey) int { return (pub.Curve.Params().BitSize + 7) / 8 }
