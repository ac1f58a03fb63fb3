package hsm

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// A wrapped blob starts with its version:
//
//	1: 1 || nonce (12) || AES-GCM ciphertext || tag (16)
//	2: 2 || IV (16) || AES-CTR ciphertext || HMAC-SHA256 (32)
//
// Version 2 serves tokens without CKM_AES_GCM: the AES key (CKA_ID id)
// turns counter blocks into the keystream with CKM_AES_ECB, and a generic
// secret key (CKA_ID id + "#mac") computes the HMAC, encrypt-then-MAC over
// a domain string, the length of the AAD, the AAD, the IV and the
// ciphertext. Both keys stay in the token.
const (
	wrapVersion    = 1
	wrapVersionCTR = 2
	gcmTagSize     = 16
	ctrIVSize      = 16
	macSize        = 32
	macSuffix      = "#mac"
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
	scheme, err := h.caps.Load().wrapScheme()
	if err != nil {
		return fmt.Errorf("hsm: wrapping key %q: %w", id, err)
	}
	keyMu.Lock()
	defer keyMu.Unlock()
	b, err := h.acquire(ctx)
	if err != nil {
		return err
	}
	if err := h.ensureSecret(ctx, b, id, label, pkcs11.CKK_AES, pkcs11.CKM_AES_KEY_GEN); err != nil {
		return err
	}
	if scheme == wrapVersionCTR {
		return h.ensureSecret(ctx, b, id+macSuffix, label+macSuffix, pkcs11.CKK_GENERIC_SECRET, pkcs11.CKM_GENERIC_SECRET_KEY_GEN)
	}
	return nil
}

// ensureSecret creates a 256-bit secret key of keyType with CKA_ID id
// unless one exists: an AES key usable to encrypt and decrypt, or an HMAC
// key usable to sign and verify; sensitive and not extractable.
func (h *HSM) ensureSecret(ctx context.Context, b *backend, id, label string, keyType, mech uint) error {
	secrets, err := h.findByID(ctx, b, id, classPtr(pkcs11.CKO_SECRET_KEY))
	if err != nil {
		return h.check(b, fmt.Sprintf("find wrapping key %q", id), err)
	}
	if len(secrets) > 0 {
		a, err := h.attrs(ctx, b, secrets[0], pkcs11.CKA_KEY_TYPE)
		if err != nil {
			return h.check(b, fmt.Sprintf("read wrapping key %q", id), err)
		}
		if bytesToUint(a[0].Value) != keyType {
			return fmt.Errorf("hsm: wrapping key %q exists but is not of the expected type", id)
		}
		return nil
	}
	if err := h.refuseExisting(ctx, b, id); err != nil {
		return err
	}
	cipher := keyType == pkcs11.CKK_AES
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id)),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, cipher),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, cipher),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, !cipher),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, !cipher),
	}
	err = b.run(ctx, h.cfg.KeygenTimeout, "C_GenerateKey", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		_, err := p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, tmpl)
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

// withSecret runs f with the object of secret key id. A stale key handle
// is looked up once more, after checking the login is still there.
func (h *HSM) withSecret(ctx context.Context, b *backend, id, fn string, f func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error) error {
	for attempt := 0; ; attempt++ {
		key, err := h.aesHandle(ctx, b, id)
		if err != nil {
			return err
		}
		err = b.run(ctx, h.cfg.CallTimeout, fn, func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error { return f(p, s, key) })
		if err == nil || !isHandleInvalid(err) || attempt > 0 {
			return err
		}
		if perr := h.loggedIn(ctx, b); perr != nil {
			return perr
		}
		h.cacheMu.Lock()
		delete(h.aeads, id)
		h.cacheMu.Unlock()
	}
}

// gcm runs one AES-GCM encryption or decryption with wrapping key id.
func (h *HSM) gcm(ctx context.Context, b *backend, id, fn string, encrypt bool, nonce, in, aad []byte) ([]byte, error) {
	var out []byte
	err := h.withSecret(ctx, b, id, fn, func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
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
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ctrXOR encrypts or decrypts in place with AES-CTR from iv: the counter
// blocks are encrypted by the token with CKM_AES_ECB under key id.
func (h *HSM) ctrXOR(ctx context.Context, b *backend, id string, iv, data []byte) error {
	n := (len(data) + 15) / 16
	blocks := make([]byte, 16*n)
	ctr := new(big.Int).SetBytes(iv)
	one, mod := big.NewInt(1), new(big.Int).Lsh(big.NewInt(1), 128)
	for i := range n {
		ctr.FillBytes(blocks[16*i : 16*i+16])
		ctr.Add(ctr, one).Mod(ctr, mod)
	}
	var ks []byte
	err := h.withSecret(ctx, b, id, "C_Encrypt", func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) (err error) {
		if err = p.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, key); err != nil {
			return err
		}
		if ks, err = p.Encrypt(s, blocks); err != nil {
			return operationLeft{err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer clear(ks)
	if len(ks) != len(blocks) {
		return fmt.Errorf("the token returned %d keystream bytes for %d", len(ks), len(blocks))
	}
	subtle.XORBytes(data, data, ks[:len(data)])
	return nil
}

// mac is the HMAC-SHA256, computed by the token with key id+"#mac", of
// the authenticated part of a version 2 blob.
func (h *HSM) mac(ctx context.Context, b *backend, id string, aad, iv, ct []byte) ([]byte, error) {
	const domain = "hsmca wrap v2\x00"
	in := make([]byte, 0, len(domain)+8+len(aad)+len(iv)+len(ct))
	in = append(in, domain...)
	in = binary.BigEndian.AppendUint64(in, uint64(len(aad)))
	in = append(append(append(in, aad...), iv...), ct...)
	var out []byte
	err := h.withSecret(ctx, b, id+macSuffix, "C_Sign", func(p *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle) (err error) {
		if err = p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, key); err != nil {
			return err
		}
		if out, err = p.Sign(s, in); err != nil {
			return operationLeft{err}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) != macSize {
		return nil, fmt.Errorf("the token returned a %d-byte HMAC", len(out))
	}
	return out, nil
}

// Wrap encrypts plaintext under the wrapping key wrapID, authenticating
// aad too: AES-GCM in the token, or AES-CTR with HMAC-SHA256 on a token
// without AES-GCM (see the blob versions above). The random nonce travels
// in the blob.
func (h *HSM) Wrap(ctx context.Context, wrapID string, plaintext, aad []byte) ([]byte, error) {
	if err := checkID(wrapID); err != nil {
		return nil, err
	}
	scheme, err := h.caps.Load().wrapScheme()
	if err != nil {
		return nil, fmt.Errorf("hsm: wrapping key %q: %w", wrapID, err)
	}
	b, err := h.acquire(ctx)
	if err != nil {
		return nil, err
	}
	var blob []byte
	if scheme == wrapVersion {
		nonce := make([]byte, gcmNonceSize)
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("hsm: wrap: nonce: %w", err)
		}
		var ct []byte
		ct, err = h.gcm(ctx, b, wrapID, "C_Encrypt", true, nonce, plaintext, aad)
		if err == nil && len(ct) != len(plaintext)+gcmTagSize {
			err = fmt.Errorf("the token returned %d bytes for %d", len(ct), len(plaintext))
		}
		if err == nil {
			blob = make([]byte, 0, 1+gcmNonceSize+len(ct))
			blob = append(append(append(blob, wrapVersion), nonce...), ct...)
		}
	} else {
		blob = make([]byte, 1+ctrIVSize+len(plaintext), 1+ctrIVSize+len(plaintext)+macSize)
		blob[0] = wrapVersionCTR
		iv, ct := blob[1:1+ctrIVSize], blob[1+ctrIVSize:]
		if _, err := rand.Read(iv); err != nil {
			return nil, fmt.Errorf("hsm: wrap: IV: %w", err)
		}
		copy(ct, plaintext)
		if err = h.ctrXOR(ctx, b, wrapID, iv, ct); err == nil {
			var tag []byte
			if tag, err = h.mac(ctx, b, wrapID, aad, iv, ct); err == nil {
				blob = append(blob, tag...)
			}
		}
	}
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		return nil, h.check(b, fmt.Sprintf("wrap with key %q", wrapID), err)
	}
	return blob, nil
}

// Unwrap decrypts a blob made by Wrap. A blob that was altered, or aad
// that differs from the one given to Wrap, makes it fail.
func (h *HSM) Unwrap(ctx context.Context, wrapID string, blob, aad []byte) ([]byte, error) {
	if err := checkID(wrapID); err != nil {
		return nil, err
	}
	switch {
	case len(blob) == 0:
		return nil, errors.New("hsm: unwrap: empty blob")
	case blob[0] == wrapVersion && len(blob) < 1+gcmNonceSize+gcmTagSize,
		blob[0] == wrapVersionCTR && len(blob) < 1+ctrIVSize+macSize:
		return nil, errors.New("hsm: unwrap: blob too short")
	case blob[0] != wrapVersion && blob[0] != wrapVersionCTR:
		return nil, fmt.Errorf("hsm: unwrap: unknown blob version %d", blob[0])
	}
	if blob[0] == wrapVersion {
		if err := h.caps.Load().need(FeatureWrap, pkcs11.CKM_AES_GCM, pkcs11.CKF_DECRYPT); err != nil {
			return nil, fmt.Errorf("hsm: unwrap with key %q: an AES-GCM blob: %w", wrapID, err)
		}
	}
	b, err := h.acquire(ctx)
	if err != nil {
		return nil, err
	}
	var pt []byte
	if blob[0] == wrapVersion {
		pt, err = h.gcm(ctx, b, wrapID, "C_Decrypt", false, blob[1:1+gcmNonceSize], blob[1+gcmNonceSize:], aad)
	} else {
		iv, ct, tag := blob[1:1+ctrIVSize], blob[1+ctrIVSize:len(blob)-macSize], blob[len(blob)-macSize:]
		var want []byte
		if want, err = h.mac(ctx, b, wrapID, aad, iv, ct); err == nil {
			if subtle.ConstantTimeCompare(want, tag) != 1 {
				return nil, fmt.Errorf("hsm: unwrap with key %q: the blob does not authenticate (altered, other key or other AAD)", wrapID)
			}
			pt = append([]byte(nil), ct...)
			if err = h.ctrXOR(ctx, b, wrapID, iv, pt); err != nil {
				clear(pt)
				pt = nil
			}
		}
	}
	switch {
	case err == nil:
		return pt, nil
	case errors.Is(err, ErrKeyNotFound), errors.Is(err, ErrUnavailable):
		return nil, err
	case isSessionFault(err), blob[0] == wrapVersionCTR:
		return nil, h.check(b, fmt.Sprintf("unwrap with key %q", wrapID), err)
	}
	return nil, fmt.Errorf("hsm: unwrap with key %q: the blob does not authenticate (altered, other key or other AAD): %w", wrapID, err)
}
