package hsm

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// A wrapped blob is version || nonce || AES-GCM ciphertext and tag.
const (
	wrapVersion = 1
	gcmTagSize  = 16
)

// gcmKey is the AEAD of a wrapping key in one backend generation.
type gcmKey struct {
	gen  uint64
	aead cipher.AEAD
}

// EnsureWrappingKey creates the AES-256 key with CKA_ID id (sensitive,
// not extractable, usable to encrypt and decrypt only) unless it exists.
func (h *HSM) EnsureWrappingKey(ctx context.Context, id, label string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if label == "" {
		return errors.New("hsm: wrapping key: empty label")
	}
	if err := h.SupportsFeature(FeatureWrap); err != nil {
		return fmt.Errorf("hsm: wrapping key %q: %w", id, err)
	}
	keyMu.Lock()
	defer keyMu.Unlock()
	b, err := h.acquire(ctx)
	if err != nil {
		return err
	}
	defer b.done()
	secrets, err := h.findByID(b, id, classPtr(pkcs11.CKO_SECRET_KEY))
	if err != nil {
		return h.check(b, fmt.Sprintf("find wrapping key %q", id), err)
	}
	if len(secrets) > 0 {
		a, err := h.attrs(b, secrets[0], pkcs11.CKA_KEY_TYPE)
		if err != nil {
			return h.check(b, fmt.Sprintf("read wrapping key %q", id), err)
		}
		if bytesToUint(a[0].Value) != pkcs11.CKK_AES {
			return fmt.Errorf("hsm: wrapping key %q exists but is not an AES key", id)
		}
		return nil
	}
	if err := h.refuseExisting(b, id); err != nil {
		return err
	}
	t := crypto11.NewAttributeSet()
	for _, a := range []struct {
		t crypto11.AttributeType
		v any
	}{
		{crypto11.CkaId, []byte(id)},
		{crypto11.CkaLabel, []byte(label)},
		{crypto11.CkaToken, true},
		{crypto11.CkaPrivate, true},
		{crypto11.CkaSensitive, true},
		{crypto11.CkaExtractable, false},
		{crypto11.CkaEncrypt, true},
		{crypto11.CkaDecrypt, true},
		{crypto11.CkaSign, false},
		{crypto11.CkaVerify, false},
	} {
		if err := t.Set(a.t, a.v); err != nil {
			return fmt.Errorf("hsm: wrapping key: %w", err)
		}
	}
	start := time.Now()
	_, err = b.c11.GenerateSecretKeyWithAttributes(t, 256, crypto11.CipherAES)
	h.observe("C_GenerateKey", start, err)
	return h.check(b, fmt.Sprintf("generate wrapping key %q", id), err)
}

// gcm returns the AEAD of wrapping key id in backend b.
func (h *HSM) gcm(b *backend, id string) (cipher.AEAD, error) {
	h.cacheMu.Lock()
	k := h.aeads[id]
	h.cacheMu.Unlock()
	if k != nil && k.gen == b.gen {
		return k.aead, nil
	}
	var keys []*crypto11.SecretKey
	err := h.findWithCrypto11(b, fmt.Sprintf("find wrapping key %q", id), id, func() (err error) {
		keys, err = b.c11.FindKeys([]byte(id), nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, h.confirmAbsent(b, fmt.Sprintf("find wrapping key %q", id), fmt.Errorf("%w: wrapping key %q", ErrKeyNotFound, id))
	}
	aead, err := keys[0].NewGCM()
	if err != nil {
		return nil, fmt.Errorf("hsm: wrapping key %q: %w", id, err)
	}
	h.cacheMu.Lock()
	h.aeads[id] = &gcmKey{gen: b.gen, aead: aead}
	h.cacheMu.Unlock()
	return aead, nil
}

// withGCM runs f with the AEAD of wrapping key id. A stale key handle is
// looked up once more, after checking the login is still there.
func (h *HSM) withGCM(ctx context.Context, id, fn string, f func(cipher.AEAD) ([]byte, error)) ([]byte, *backend, error) {
	if err := h.SupportsFeature(FeatureWrap); err != nil {
		return nil, nil, fmt.Errorf("hsm: wrapping key %q: %w", id, err)
	}
	b, err := h.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		aead, err := h.gcm(b, id)
		if err != nil {
			return nil, b, err
		}
		start := time.Now()
		out, err := f(aead)
		h.observe(fn, start, err)
		if err == nil || !isHandleInvalid(err) || attempt > 0 {
			return out, b, err
		}
		if perr := h.loggedIn(b); perr != nil {
			return nil, b, perr
		}
		h.cacheMu.Lock()
		delete(h.aeads, id)
		h.cacheMu.Unlock()
	}
}

// Wrap encrypts plaintext with AES-GCM under the wrapping key wrapID,
// authenticating aad too. The random nonce travels in the blob.
func (h *HSM) Wrap(ctx context.Context, wrapID string, plaintext, aad []byte) ([]byte, error) {
	if err := checkID(wrapID); err != nil {
		return nil, err
	}
	nonce := make([]byte, gcmNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("hsm: wrap: nonce: %w", err)
	}
	blob, b, err := h.withGCM(ctx, wrapID, "C_Encrypt", func(aead cipher.AEAD) ([]byte, error) {
		out := make([]byte, 1+gcmNonceSize, 1+gcmNonceSize+len(plaintext)+gcmTagSize)
		out[0] = wrapVersion
		copy(out[1:], nonce)
		return seal(aead, out, nonce, plaintext, aad)
	})
	if b != nil {
		defer b.done()
	}
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrUnavailable) || b == nil {
			return nil, err
		}
		return nil, h.check(b, fmt.Sprintf("wrap with key %q", wrapID), err)
	}
	return blob, nil
}

// seal calls Seal, which in crypto11 panics when the token fails.
func seal(aead cipher.AEAD, dst, nonce, plaintext, aad []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	return aead.Seal(dst, nonce, plaintext, aad), nil
}

// Unwrap decrypts a blob made by Wrap. A blob that was altered, or aad
// that differs from the one given to Wrap, makes it fail.
func (h *HSM) Unwrap(ctx context.Context, wrapID string, blob, aad []byte) ([]byte, error) {
	if err := checkID(wrapID); err != nil {
		return nil, err
	}
	if len(blob) < 1+gcmNonceSize+gcmTagSize {
		return nil, errors.New("hsm: unwrap: blob too short")
	}
	if blob[0] != wrapVersion {
		return nil, fmt.Errorf("hsm: unwrap: unknown blob version %d", blob[0])
	}
	pt, b, err := h.withGCM(ctx, wrapID, "C_Decrypt", func(aead cipher.AEAD) ([]byte, error) {
		return aead.Open(nil, blob[1:1+gcmNonceSize], blob[1+gcmNonceSize:], aad)
	})
	if b != nil {
		defer b.done()
	}
	switch {
	case err == nil:
		return pt, nil
	case errors.Is(err, ErrKeyNotFound), errors.Is(err, ErrUnavailable), b == nil:
		return nil, err
	case isSessionFault(err), isPoolTimeout(err):
		return nil, h.check(b, fmt.Sprintf("unwrap with key %q", wrapID), err)
	}
	return nil, fmt.Errorf("hsm: unwrap with key %q: the blob does not authenticate (altered, other key or other AAD): %w", wrapID, err)
}
