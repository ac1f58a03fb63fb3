package signer

import (
	"context"
	"crypto"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer/issuance"
)

// Using HSM keys: signing through the latency histogram, and sealing
// secrets under an HSM wrapping key.

// TimedSigner returns the signer of an HSM key whose every signature is
// timed for hsmca_signing_duration_seconds under op and keyAlg (both
// bounded label values: an operation name and an algorithm name).
func (c *Core) TimedSigner(ctx context.Context, keyID, keyAlg, op string) (crypto.Signer, error) {
	s, err := c.Signer(ctx, keyID)
	if err != nil {
		return nil, err
	}
	return c.Timed(s, op, keyAlg), nil
}

// Timed wraps a signer the caller already holds (a key just created) the
// way TimedSigner does.
func (c *Core) Timed(s crypto.Signer, op, keyAlg string) crypto.Signer {
	return issuance.Timed(s, op, keyAlg, c.ObserveSigning)
}

// ObserveSigning records one signature's latency; it is the
// issuance.Observer of the core, for signatures timed by hand.
func (c *Core) ObserveSigning(op, keyAlg string, d time.Duration) {
	c.metrics.ObserveSigning(op, keyAlg, d)
}

// wrapKeyOf names one wrapping key in one HSM: after the daemon reopens
// the token (a new HSM), the key is looked up again.
type wrapKeyOf struct {
	h  HSM
	id string
}

// Seal encrypts plaintext under the HSM wrapping key wrapKeyID, bound to
// aad: the blob opens (Unseal) only with the same aad, so a blob copied
// to another record does not. The key is created (with label) if the HSM
// lacks it, and looked up once per HSM, not per call.
func (c *Core) Seal(ctx context.Context, wrapKeyID, label string, plaintext, aad []byte) ([]byte, error) {
	h, err := c.HSM()
	if err != nil {
		return nil, err
	}
	// A token that cannot wrap secrets is refused before any call.
	if err := h.SupportsFeature(hsm.FeatureWrap); err != nil {
		return nil, HSMError(err, "wrapping key")
	}
	k := wrapKeyOf{h: h, id: wrapKeyID}
	if _, ok := c.wrapKnown.Load(k); !ok {
		if err := h.EnsureWrappingKey(ctx, wrapKeyID, label); err != nil {
			return nil, HSMError(err, "wrapping key")
		}
		c.wrapKnown.Store(k, true)
	}
	blob, err := h.Wrap(ctx, wrapKeyID, plaintext, aad)
	if err != nil {
		return nil, HSMError(err, "wrapping key")
	}
	return blob, nil
}

// Unseal decrypts a blob made by Seal with the same wrapKeyID and aad.
// The caller clears the plaintext when done with it.
func (c *Core) Unseal(ctx context.Context, wrapKeyID string, blob, aad []byte) ([]byte, error) {
	h, err := c.HSM()
	if err != nil {
		return nil, err
	}
	pt, err := h.Unwrap(ctx, wrapKeyID, blob, aad)
	if err != nil {
		return nil, HSMError(err, "wrapping key")
	}
	return pt, nil
}
