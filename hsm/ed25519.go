package hsm

import (
	"crypto/ed25519"
	"encoding/asn1"
	"fmt"

	"github.com/miekg/pkcs11"
)

// PKCS#11 3.0 values; miekg/pkcs11 v1.1.2 predates them.
const (
	ckkECEdwards           = 0x00000040
	ckmECEdwardsKeyPairGen = 0x00001055
	ckmEdDSA               = 0x00001057
)

// ed25519Params is CKA_EC_PARAMS for Ed25519: the DER of OID 1.3.101.112
// (SoftHSM2 2.6 takes it; some tokens want the printable string
// "edwards25519" instead).
var ed25519Params = func() []byte {
	b, err := asn1.Marshal(oidEd25519)
	if err != nil {
		panic(err)
	}
	return b
}()

// generateEd25519 makes an Ed25519 key pair with the same attributes as
// the crypto11-generated ones.
func (b *backend) generateEd25519(id, label string) (pkcs11.ObjectHandle, ed25519.PublicKey, error) {
	common := func(class uint) []*pkcs11.Attribute {
		return []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id)),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		}
	}
	pubT := append(common(pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ed25519Params))
	privT := append(common(pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false))
	var (
		priv pkcs11.ObjectHandle
		pub  ed25519.PublicKey
	)
	err := b.withSession(func(s pkcs11.SessionHandle) error {
		pubH, privH, err := b.raw.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pubT, privT)
		if err != nil {
			return err
		}
		a, err := b.raw.GetAttributeValue(s, pubH, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err == nil {
			var pt []byte
			if pt, err = ecPoint(a[0].Value, ed25519.PublicKeySize); err == nil {
				priv, pub = privH, ed25519.PublicKey(pt)
				return nil
			}
		}
		// Without a readable public key the pair is useless; do not leave it behind.
		_ = b.raw.DestroyObject(s, privH)
		_ = b.raw.DestroyObject(s, pubH)
		return err
	})
	return priv, pub, err
}

// edwardsPublic reads the Ed25519 public key with CKA_ID id.
func (h *HSM) edwardsPublic(b *backend, id string) (ed25519.PublicKey, error) {
	pubs, err := h.findByID(b, id, classPtr(pkcs11.CKO_PUBLIC_KEY))
	if err != nil {
		return nil, err
	}
	if len(pubs) == 0 {
		return nil, fmt.Errorf("%w: %q has no public key object", ErrKeyNotFound, id)
	}
	a, err := h.attrs(b, pubs[0], pkcs11.CKA_EC_POINT)
	if err != nil {
		return nil, err
	}
	pt, err := ecPoint(a[0].Value, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return ed25519.PublicKey(pt), nil
}

// signEd25519 signs the whole message with CKM_EDDSA.
func (b *backend) signEd25519(key pkcs11.ObjectHandle, msg []byte) ([]byte, error) {
	var sig []byte
	err := b.withSession(func(s pkcs11.SessionHandle) (err error) {
		if err = b.raw.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, key); err != nil {
			return err
		}
		if sig, err = b.raw.Sign(s, msg); err != nil {
			return operationLeft{err}
		}
		return nil
	})
	return sig, err
}
