package hsm

import (
	"context"
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

// edwardsPublic reads the Ed25519 public key with CKA_ID id.
func (h *HSM) edwardsPublic(ctx context.Context, b *backend, id string) (ed25519.PublicKey, error) {
	pubs, err := h.findByID(ctx, b, id, classPtr(pkcs11.CKO_PUBLIC_KEY))
	if err != nil {
		return nil, err
	}
	if len(pubs) == 0 {
		return nil, fmt.Errorf("%w: %q has no public key object", ErrKeyNotFound, id)
	}
	a, err := h.attrs(ctx, b, pubs[0], pkcs11.CKA_EC_POINT)
	if err != nil {
		return nil, err
	}
	pt, err := ecPoint(a[0].Value, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return ed25519.PublicKey(pt), nil
}
