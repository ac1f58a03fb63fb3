package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Import stores a software private key in the token as a sensitive,
// non-extractable private key object plus its public key object, both with
// CKA_ID id and CKA_LABEL label, and returns its signer. It takes
// *rsa.PrivateKey (two primes), *ecdsa.PrivateKey (P-256, P-384, P-521)
// and ed25519.PrivateKey. The caller should drop its copy afterwards.
func (h *HSM) Import(ctx context.Context, id, label string, key crypto.PrivateKey) (crypto.Signer, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if label == "" {
		return nil, errors.New("hsm: import: empty label")
	}
	if pub, ok := key.(crypto.Signer); ok {
		if err := h.caps.Load().Key(pub.Public()); err != nil {
			return nil, fmt.Errorf("hsm: import: %w", err)
		}
	}
	pubT, privT, err := importTemplates(id, label, key)
	if err != nil {
		return nil, err
	}
	// The template holds copies of the private key's values; clear them.
	defer func() {
		for _, a := range privT {
			if secretAttribute[a.Type] {
				clear(a.Value)
			}
		}
	}()
	keyMu.Lock()
	defer keyMu.Unlock()
	b, err := h.acquire(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.refuseExisting(ctx, b, id); err != nil {
		return nil, err
	}
	err = b.run(ctx, h.cfg.CallTimeout, "C_CreateObject", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		priv, err := p.CreateObject(s, privT)
		if err != nil {
			return err
		}
		if _, err := p.CreateObject(s, pubT); err != nil {
			_ = p.DestroyObject(s, priv)
			return err
		}
		return nil
	})
	if err != nil {
		// Only the return code: the template's values must not reach a log.
		return nil, h.check(b, fmt.Sprintf("import key %q", id), err)
	}
	k, err := h.load(ctx, b, id)
	if err != nil {
		// The key is on the token: a read-back that never reached it
		// (the sessions were being rebuilt) must not pass for an import
		// that never happened, or its intent would go and the key stay.
		return nil, reached{err}
	}
	h.cacheMu.Lock()
	h.signers[id] = k
	h.cacheMu.Unlock()
	return k, nil
}

var secretAttribute = map[uint]bool{
	pkcs11.CKA_VALUE: true, pkcs11.CKA_PRIVATE_EXPONENT: true, pkcs11.CKA_PRIME_1: true, pkcs11.CKA_PRIME_2: true,
	pkcs11.CKA_EXPONENT_1: true, pkcs11.CKA_EXPONENT_2: true, pkcs11.CKA_COEFFICIENT: true,
}

func importTemplates(id, label string, key crypto.PrivateKey) (pub, priv []*pkcs11.Attribute, err error) {
	common := func(class, keyType uint) []*pkcs11.Attribute { return keyObject(class, keyType, id, label) }
	pubFlags := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
	}
	privFlags := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if len(k.Primes) != 2 {
			return nil, nil, errors.New("hsm: import: only two-prime RSA keys are supported")
		}
		if err := k.Validate(); err != nil {
			return nil, nil, errors.New("hsm: import: the RSA key is not valid")
		}
		p, q := k.Primes[0], k.Primes[1]
		one := big.NewInt(1)
		dp := new(big.Int).Mod(k.D, new(big.Int).Sub(p, one))
		dq := new(big.Int).Mod(k.D, new(big.Int).Sub(q, one))
		qinv := new(big.Int).ModInverse(q, p)
		e := big.NewInt(int64(k.E)).Bytes()
		pub = append(common(pkcs11.CKO_PUBLIC_KEY, pkcs11.CKK_RSA), pubFlags...)
		pub = append(pub,
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, k.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, e))
		priv = append(common(pkcs11.CKO_PRIVATE_KEY, pkcs11.CKK_RSA), privFlags...)
		priv = append(priv,
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, k.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, e),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, k.D.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PRIME_1, p.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PRIME_2, q.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_1, dp.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_2, dq.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_COEFFICIENT, qinv.Bytes()))
		return pub, priv, nil
	case *ecdsa.PrivateKey:
		params, err := ecParams(k.Curve)
		if err != nil {
			return nil, nil, fmt.Errorf("hsm: import: %w", err)
		}
		point, err := ecPublicBytes(&k.PublicKey)
		if err != nil {
			return nil, nil, fmt.Errorf("hsm: import: %w", err)
		}
		derPoint, err := asn1.Marshal(point)
		if err != nil {
			return nil, nil, err
		}
		scalar, err := k.Bytes()
		if err != nil {
			return nil, nil, errors.New("hsm: import: the EC key is not valid")
		}
		pub = append(common(pkcs11.CKO_PUBLIC_KEY, pkcs11.CKK_EC), pubFlags...)
		pub = append(pub,
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
			pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, derPoint))
		priv = append(common(pkcs11.CKO_PRIVATE_KEY, pkcs11.CKK_EC), privFlags...)
		priv = append(priv,
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, scalar))
		return pub, priv, nil
	case ed25519.PrivateKey:
		return ed25519Templates(common, pubFlags, privFlags, k)
	case *ed25519.PrivateKey:
		return ed25519Templates(common, pubFlags, privFlags, *k)
	}
	return nil, nil, fmt.Errorf("hsm: import: unsupported key type %T", key)
}

func ed25519Templates(common func(class, keyType uint) []*pkcs11.Attribute, pubFlags, privFlags []*pkcs11.Attribute, k ed25519.PrivateKey) (pub, priv []*pkcs11.Attribute, err error) {
	if len(k) != ed25519.PrivateKeySize {
		return nil, nil, errors.New("hsm: import: the Ed25519 key is not valid")
	}
	derPoint, err := asn1.Marshal([]byte(k.Public().(ed25519.PublicKey)))
	if err != nil {
		return nil, nil, err
	}
	pub = append(common(pkcs11.CKO_PUBLIC_KEY, ckkECEdwards), pubFlags...)
	pub = append(pub,
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, bytes.Clone(ed25519Params)),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, derPoint))
	priv = append(common(pkcs11.CKO_PRIVATE_KEY, ckkECEdwards), privFlags...)
	priv = append(priv,
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, bytes.Clone(ed25519Params)),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, k.Seed()))
	return pub, priv, nil
}
