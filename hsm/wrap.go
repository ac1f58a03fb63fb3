package hsm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// A wrapped blob is version || nonce || AES-GCM ciphertext and tag.
const (
	wrapVersion = 1
	gcmTagSize  = 16
)

// aesKey is where a wrapping key lives in one backend generation.
type aesKey struct {
	gen uint64
	obj pkcs11.ObjectHandle
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
	secrets, err := h.findByID(ctx, b, id, classPtr(pkcs11.CKO_SECRET_KEY))
	if err != nil {
		return h.check(b, fmt.Sprintf("find wrapping key %q", id), err)
	}
	if len(secrets) > 0 {
		a, err := h.attrs(ctx, b, secrets[0], pkcs11.CKA_KEY_TYPE)
		if err != nil {
			return h.check(b, fmt.Sprintf("read wrapping key %q", id), err)
		}
		if bytesToUint(a[0].Value) != pkcs11.CKK_AES {
			return fmt.Errorf("hsm: wrapping key %q exists but is not an AES key", id)
		}
		return nil
	}
	if err := h.refuseExisting(ctx, b, id); err != nil {
		return err
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id)),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
	}
	err = b.run(ctx, h.cfg.KeygenTimeout, "C_GenerateKey", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		_, err := p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
		return err
	})
	return h.check(b, fmt.Sprintf("generate wrapping key %q", id), err)
}

// aesHandle returns the object of wrapping key id in backend b.
func (h *HSM) aesHandle(ctx context.Context, b *backend, id string) (pkcs11.ObjectHandle, error) {
	h.cacheMu.Lock()
	k := h.aeads[id]
	h.cacheMu.Unlock()
	if k != nil && k.gen == b.gen {
		return k.obj, nil
	}
	op := fmt.Sprintf("find wrapping key %q", id)
	keys, err := h.findByID(ctx, b, id, classPtr(pkcs11.CKO_SECRET_KEY))
	if err != nil {
		return 0, h.check(b, op, err)
	}
	if len(keys) == 0 {
		return 0, h.confirmAbsent(ctx, b, op, fmt.Errorf("%w: wrapping key %q", ErrKeyNotFound, id))
	}
	h.cacheMu.Lock()
	h.aeads[id] = &aesKey{gen: b.gen, obj: keys[0]}
	h.cacheMu.Unlock()
	return keys[0], nil
}

// gcm runs one AES-GCM encryption or decryption with wrapping key id. A
// stale key handle is looked up once more, after checking the login is
// still there.
func (h *HSM) gcm(ctx context.Context, id, fn string, encrypt bool, nonce, in, aad []byte) ([]byte, *backend, error) {
	if err := h.SupportsFeature(FeatureWrap); err != nil {
		return nil, nil, fmt.Errorf("hsm: wrapping key %q: %w", id, err)
	}
	b, err := h.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		key, err := h.aesHandle(ctx, b, id)
		if err != nil {
			return nil, b, err
		}
		var out []byte
		err = b.run(ctx, h.cfg.CallTimeout, fn, func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
			params := pkcs11.NewGCMParams(nonce, aad, 8*gcmTagSize)
			defer params.Free()
			mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
			var err error
			if encrypt {
				if err = p.EncryptInit(s, mech, key); err != nil {
					return err
				}
				out, err = p.Encrypt(s, in)
			} else {
				if err = p.DecryptInit(s, mech, key); err != nil {
					return err
				}
				out, err = p.Decrypt(s, in)
			}
			if err != nil {
				return operationLeft{err}
			}
			return nil
		})
		if err == nil || !isHandleInvalid(err) || attempt > 0 {
			return out, b, err
		}
		if perr := h.loggedIn(ctx, b); perr != nil {
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
	ct, b, err := h.gcm(ctx, wrapID, "C_Encrypt", true, nonce, plaintext, aad)
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnsupported) || b == nil {
			return nil, err
		}
		return nil, h.check(b, fmt.Sprintf("wrap with key %q", wrapID), err)
	}
	if len(ct) != len(plaintext)+gcmTagSize {
		return nil, fmt.Errorf("hsm: wrap with key %q: the token returned %d bytes for %d", wrapID, len(ct), len(plaintext))
	}
	blob := make([]byte, 0, 1+gcmNonceSize+len(ct))
	blob = append(append(append(blob, wrapVersion), nonce...), ct...)
	return blob, nil
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
	pt, b, err := h.gcm(ctx, wrapID, "C_Decrypt", false, blob[1:1+gcmNonceSize], blob[1+gcmNonceSize:], aad)
	switch {
	case err == nil:
		return pt, nil
	case errors.Is(err, ErrKeyNotFound), errors.Is(err, ErrUnavailable), errors.Is(err, ErrUnsupported), b == nil:
		return nil, err
	case isSessionFault(err):
		return nil, h.check(b, fmt.Sprintf("unwrap with key %q", wrapID), err)
	}
	return nil, fmt.Errorf("hsm: unwrap with key %q: the blob does not authenticate (altered, other key or other AAD): %w", wrapID, err)
}
