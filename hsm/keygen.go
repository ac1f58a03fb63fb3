package hsm

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// keyObject is what every key object hsmca makes carries: its class and
// type, a token object, found by CKA_ID, labelled.
func keyObject(class, keyType uint, id, label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id)),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// pairTemplates are the attributes of a generated key pair: token objects
// found by CKA_ID, the private half sensitive and not extractable, usable
// for signing only.
// rsaUsageFixed leaves out the RSA usage restriction a module refuses
// (see quirks): the key can then also decrypt, which hsmca never asks of it.
func pairTemplates(id, label string, alg Algorithm, rsaUsageFixed bool) (mech uint, pub, priv []*pkcs11.Attribute, err error) {
	common := func(class, keyType uint) []*pkcs11.Attribute { return keyObject(class, keyType, id, label) }
	var keyType uint
	switch {
	case alg.curve() != nil:
		params, perr := ecParams(alg.curve())
		if perr != nil {
			return 0, nil, nil, perr
		}
		mech, keyType = pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKK_EC
		pub = append(common(pkcs11.CKO_PUBLIC_KEY, keyType), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params))
	case alg.rsaBits() > 0:
		mech, keyType = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKK_RSA
		pub = append(common(pkcs11.CKO_PUBLIC_KEY, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, alg.rsaBits()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		if !rsaUsageFixed {
			pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false))
		}
	case alg == ED25519:
		mech, keyType = ckmECEdwardsKeyPairGen, ckkECEdwards
		pub = append(common(pkcs11.CKO_PUBLIC_KEY, keyType), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ed25519Params))
	default:
		return 0, nil, nil, fmt.Errorf("hsm: generate: unknown algorithm %q", alg)
	}
	pub = append(pub,
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true))
	priv = append(common(pkcs11.CKO_PRIVATE_KEY, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false))
	if keyType == pkcs11.CKK_RSA {
		if !rsaUsageFixed {
			priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false))
		}
	} else {
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false))
	}
	return mech, pub, priv, nil
}

// generatePair generates a key pair and reads its public key, under the
// key-generation deadline. A pair whose public key cannot be read is
// destroyed: it would be of no use.
func (b *backend) generatePair(ctx context.Context, id, label string, alg Algorithm) (pkcs11.ObjectHandle, crypto.PublicKey, error) {
	h := b.pool.h
	mech, pubT, privT, err := pairTemplates(id, label, alg, h.caps.Load().quirks.rsaUsageFixed)
	if err != nil {
		return 0, nil, err
	}
	var (
		priv pkcs11.ObjectHandle
		pub  crypto.PublicKey
	)
	err = b.run(ctx, h.cfg.KeygenTimeout, "C_GenerateKeyPair", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		pubH, privH, err := p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubT, privT)
		if err != nil {
			return err
		}
		if pub, err = readPublic(p, s, pubH, alg); err == nil {
			priv = privH
			return nil
		}
		_ = p.DestroyObject(s, privH)
		_ = p.DestroyObject(s, pubH)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return priv, pub, nil
}

// readPublic reads the public key of a freshly generated public object.
func readPublic(p *pkcs11.Ctx, s pkcs11.SessionHandle, o pkcs11.ObjectHandle, alg Algorithm) (crypto.PublicKey, error) {
	switch {
	case alg.rsaBits() > 0:
		a, err := p.GetAttributeValue(s, o, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
		if err != nil {
			return nil, err
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(a[0].Value), E: int(new(big.Int).SetBytes(a[1].Value).Int64())}, nil
	case alg == ED25519:
		a, err := p.GetAttributeValue(s, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err != nil {
			return nil, err
		}
		pt, err := ecPoint(a[0].Value, ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		return ed25519.PublicKey(pt), nil
	}
	a, err := p.GetAttributeValue(s, o, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil), pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, err
	}
	return ecPublic(a[0].Value, a[1].Value)
}
