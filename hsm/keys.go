package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// KeyInfo describes a key pair on the token.
type KeyInfo struct {
	ID        string
	Label     string
	Algorithm Algorithm
	// Public is nil when the token holds no readable public half.
	Public crypto.PublicKey
}

func checkID(id string) error {
	if id == "" {
		return errors.New("hsm: empty key id")
	}
	return nil
}

// Generate creates a key pair in the token. id becomes CKA_ID (its bytes)
// and must be new; label becomes CKA_LABEL of both halves.
func (h *HSM) Generate(ctx context.Context, id, label string, alg Algorithm) (crypto.Signer, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if label == "" {
		return nil, errors.New("hsm: generate: empty label")
	}
	if alg.canonical() == "" {
		return nil, fmt.Errorf("hsm: generate: unknown algorithm %q", alg)
	}
	if err := h.Supports(alg); err != nil {
		return nil, fmt.Errorf("hsm: generate: %w", err)
	}
	keyMu.Lock()
	defer keyMu.Unlock()
	b, err := h.acquire(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.refuseExisting(ctx, b, id); err != nil {
		return nil, err
	}
	k := &keySigner{h: h, id: id, alg: alg}
	priv, pub, err := b.generatePair(ctx, id, label, alg)
	if err != nil {
		return nil, h.check(b, fmt.Sprintf("generate %s key %q", alg, id), err)
	}
	k.pub = pub
	k.res.Store(&resolved{gen: b.gen, priv: priv})
	h.cacheMu.Lock()
	h.signers[id] = k
	h.cacheMu.Unlock()
	return k, nil
}

// canonical is the algorithm's exact constant, "" if unknown.
func (a Algorithm) canonical() Algorithm {
	for _, k := range algorithms {
		if a == k {
			return k
		}
	}
	return ""
}

// refuseExisting keeps CKA_ID unique.
func (h *HSM) refuseExisting(ctx context.Context, b *backend, id string) error {
	found, err := h.findByID(ctx, b, id, nil)
	if err != nil {
		return h.check(b, fmt.Sprintf("look up key %q", id), err)
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %q", ErrKeyExists, id)
	}
	return nil
}

// findByID finds the objects with CKA_ID id, of one class if class is set.
func (h *HSM) findByID(ctx context.Context, b *backend, id string, class *uint) ([]pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id))}
	if class != nil {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_CLASS, *class))
	}
	var out []pkcs11.ObjectHandle
	err := b.run(ctx, h.cfg.CallTimeout, "C_FindObjects", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) (err error) {
		out, err = find(p, s, tmpl)
		return err
	})
	if err != nil {
		// A call past its deadline may still write out: never read it then.
		return nil, err
	}
	return out, nil
}

func classPtr(c uint) *uint { return &c }

// find runs one object search on session s and always ends it, even
// after a failed C_FindObjectsInit: SoftHSM2 2.6 marks the search active
// before it scans the objects and leaves it so when the scan fails
// (CKR_GENERAL_ERROR on an object it cannot decrypt, which a crash can
// leave behind), after which the session answers CKR_OPERATION_ACTIVE to
// every other call. A module that started no search answers that
// C_FindObjectsFinal with CKR_OPERATION_NOT_INITIALIZED, which is fine;
// any other failure of it may leave the search active.
func find(p *pkcs11.Ctx, s pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) (out []pkcs11.ObjectHandle, err error) {
	err = p.FindObjectsInit(s, tmpl)
	defer func() {
		ferr := p.FindObjectsFinal(s)
		switch {
		case ferr == nil, errors.Is(ferr, pkcs11.Error(pkcs11.CKR_OPERATION_NOT_INITIALIZED)):
		case err == nil:
			out, err = nil, operationLeft{ferr}
		default:
			err = operationLeft{err}
		}
	}()
	if err != nil {
		return nil, err
	}
	for {
		hs, _, err := p.FindObjects(s, 64)
		if err != nil {
			return nil, err
		}
		if len(hs) == 0 {
			return out, nil
		}
		out = append(out, hs...)
	}
}

// attrs reads attributes of one object.
func (h *HSM) attrs(ctx context.Context, b *backend, o pkcs11.ObjectHandle, types ...uint) ([]*pkcs11.Attribute, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, t := range types {
		tmpl[i] = pkcs11.NewAttribute(t, nil)
	}
	var out []*pkcs11.Attribute
	err := b.run(ctx, h.cfg.CallTimeout, "C_GetAttributeValue", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) (err error) {
		out, err = p.GetAttributeValue(s, o, tmpl)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Signer returns the signer of the key pair with CKA_ID id, from the cache
// when it has been resolved before; ErrKeyNotFound if there is none.
func (h *HSM) Signer(ctx context.Context, id string) (crypto.Signer, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	h.cacheMu.Lock()
	k := h.signers[id]
	h.cacheMu.Unlock()
	if k != nil {
		return k, nil
	}
	b, err := h.acquire(ctx)
	if err != nil {
		return nil, err
	}
	k, err = h.load(ctx, b, id)
	if errors.Is(err, ErrKeyNotFound) {
		err = h.confirmAbsent(ctx, b, fmt.Sprintf("find key %q", id), err)
	}
	if err != nil {
		return nil, err
	}
	h.cacheMu.Lock()
	defer h.cacheMu.Unlock()
	if prev := h.signers[id]; prev != nil {
		return prev, nil
	}
	h.signers[id] = k
	return k, nil
}

// load resolves the key pair with CKA_ID id in backend b.
func (h *HSM) load(ctx context.Context, b *backend, id string) (*keySigner, error) {
	privs, err := h.findByID(ctx, b, id, classPtr(pkcs11.CKO_PRIVATE_KEY))
	if err != nil {
		return nil, h.check(b, fmt.Sprintf("find key %q", id), err)
	}
	if len(privs) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, id)
	}
	a, err := h.attrs(ctx, b, privs[0], pkcs11.CKA_KEY_TYPE)
	if err != nil {
		return nil, h.check(b, fmt.Sprintf("read key %q", id), err)
	}
	pub, alg, err := h.publicOf(ctx, b, privs[0], id, bytesToUint(a[0].Value))
	if err != nil {
		return nil, h.check(b, fmt.Sprintf("read public key %q", id), err)
	}
	if pub == nil {
		return nil, fmt.Errorf("%w: %q (no key pair with both halves)", ErrKeyNotFound, id)
	}
	k := &keySigner{h: h, id: id, alg: alg, pub: pub}
	k.res.Store(&resolved{gen: b.gen, priv: privs[0]})
	return k, nil
}

// bytesToUint decodes a CK_ULONG attribute, which the module returns in
// native byte order.
func bytesToUint(v []byte) uint {
	switch len(v) {
	case 8:
		return uint(binary.NativeEndian.Uint64(v))
	case 4:
		return uint(binary.NativeEndian.Uint32(v))
	}
	return ^uint(0)
}

// keySigner is the crypto.Signer handed out for a key. It outlives
// rebuilds of the sessions: when the backend generation changed it finds
// its key again by CKA_ID.
type keySigner struct {
	h       *HSM
	id      string
	alg     Algorithm
	pub     crypto.PublicKey
	deleted atomic.Bool

	mu  sync.Mutex // serialises lookups; signing reads res without it
	res atomic.Pointer[resolved]
	// noCopyGen is the backend generation in which a session copy of
	// this key stopped working: the key signs with its token object for
	// the rest of that generation.
	noCopyGen atomic.Uint64
}

// resolved is where a key lives in one backend generation.
type resolved struct {
	gen  uint64
	priv pkcs11.ObjectHandle
	// copy is the key's session copy (copies.go), 0 if none; copied says
	// whether one was tried in this generation; seen is when priv was
	// last found on the token.
	copy   pkcs11.ObjectHandle
	copied bool
	seen   time.Time
}

// object is what signatures use: the session copy, else the token object.
func (r *resolved) object() pkcs11.ObjectHandle {
	if r.copy != 0 {
		return r.copy
	}
	return r.priv
}

// settled says whether r can be used as it is in backend b.
func (r *resolved) settled(b *backend, k *keySigner) bool {
	if r == nil || r.gen != b.gen {
		return false
	}
	if r.copy != 0 {
		return time.Since(r.seen) < copyRecheck
	}
	return r.copied || !b.copies || k.noCopyGen.Load() == b.gen
}

func (k *keySigner) Public() crypto.PublicKey { return k.pub }

// Sign signs digest (for Ed25519: the message itself, with
// crypto.Hash(0)). For RSA-PSS, PSSSaltLengthAuto is signed as
// PSSSaltLengthEqualsHash, which any verifier using Auto accepts. Errors
// wrap ErrUnavailable while the HSM is being reconnected or does not
// answer in time, and ErrKeyNotFound once the key has been deleted.
func (k *keySigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.deleted.Load() {
		return nil, fmt.Errorf("hsm: sign with key %q: %w", k.id, ErrKeyNotFound)
	}
	if opts == nil {
		return nil, fmt.Errorf("hsm: sign with key %q: nil signer options", k.id)
	}
	opts, err := k.checkOpts(digest, opts)
	if err != nil {
		return nil, err
	}
	if _, pss := opts.(*rsa.PSSOptions); pss {
		if err := k.h.SupportsFeature(FeaturePSS); err != nil {
			return nil, fmt.Errorf("hsm: sign with key %q: %w", k.id, err)
		}
	}
	ctx := context.Background()
	b, err := k.h.acquire(ctx)
	if err != nil {
		return nil, err
	}
	op := func() string { return fmt.Sprintf("sign with key %q", k.id) }
	sig, err := k.sign(ctx, b, digest, opts)
	if isHandleInvalid(err) || errors.Is(err, ErrKeyNotFound) {
		// Either the token dropped our login (the key is invisible, not
		// gone), or the handle went stale: the object was re-created or
		// renumbered. Tell them apart, and in the second case look again.
		if perr := k.h.loggedIn(ctx, b); perr != nil {
			return nil, k.h.check(b, op(), perr)
		}
		if isHandleInvalid(err) {
			k.forget()
			sig, err = k.sign(ctx, b, digest, opts)
		}
	}
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) {
			return nil, fmt.Errorf("hsm: %s: %w", op(), err)
		}
		return nil, k.h.check(b, op(), err)
	}
	return sig, nil
}

func (k *keySigner) checkOpts(digest []byte, opts crypto.SignerOpts) (crypto.SignerOpts, error) {
	hash := opts.HashFunc()
	if k.alg == ED25519 {
		if hash != 0 {
			return nil, fmt.Errorf("hsm: sign with Ed25519 key %q: Ed25519ph is not supported; pass crypto.Hash(0) and the message", k.id)
		}
		if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
			return nil, fmt.Errorf("hsm: sign with Ed25519 key %q: Ed25519ctx is not supported", k.id)
		}
		return opts, nil
	}
	if hash == 0 {
		return nil, fmt.Errorf("hsm: sign with key %q: a hash function is required", k.id)
	}
	if len(digest) != hash.Size() {
		return nil, fmt.Errorf("hsm: sign with key %q: digest is %d bytes, %s needs %d", k.id, len(digest), hash, hash.Size())
	}
	if o, ok := opts.(*rsa.PSSOptions); ok && o.SaltLength == rsa.PSSSaltLengthAuto {
		// EqualsHash is what crypto/x509 uses.
		return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: o.Hash}, nil
	}
	return opts, nil
}

func (k *keySigner) sign(ctx context.Context, b *backend, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	r, err := k.resolve(ctx, b)
	if err != nil {
		return nil, err
	}
	mech, input, err := signMechanism(k.pub, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("hsm: sign with key %q: %w", k.id, err)
	}
	var sig []byte
	obj := r.object()
	err = b.run(ctx, k.h.cfg.CallTimeout, "C_Sign", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) (err error) {
		if err = p.SignInit(s, []*pkcs11.Mechanism{mech}, obj); err != nil {
			return err
		}
		if sig, err = p.Sign(s, input); err != nil {
			return operationLeft{err}
		}
		return nil
	})
	if err != nil {
		if r.copy != 0 && isHandleInvalid(err) {
			// The copy went with its session: the token object signs
			// for the rest of this generation (Sign looks the key up
			// again).
			k.noCopyGen.Store(b.gen)
		}
		return nil, err
	}
	if _, ok := k.pub.(*ecdsa.PublicKey); ok {
		return ecdsaDER(sig)
	}
	return sig, nil
}

// resolve returns where the key lives in backend b, finding it again
// after a rebuild.
func (k *keySigner) resolve(ctx context.Context, b *backend) (*resolved, error) {
	if r := k.res.Load(); r.settled(b, k) {
		return r, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.res.Load()
	if old.settled(b, k) {
		return old, nil
	}
	if old != nil && old.gen != b.gen {
		old = nil // its copy went with its sessions
	}
	priv := pkcs11.ObjectHandle(0)
	if old != nil && old.copy == 0 {
		priv = old.priv // found in this generation; only the copy is to make
	} else {
		privs, err := k.h.findByID(ctx, b, k.id, classPtr(pkcs11.CKO_PRIVATE_KEY))
		if err != nil {
			return nil, err
		}
		if len(privs) == 0 || (old != nil && privs[0] != old.priv) {
			// Gone (or re-created under the same id): its copy goes too.
			if old != nil && old.copy != 0 {
				k.h.dropCopy(ctx, b, old.copy)
			}
			k.res.Store(nil)
			if len(privs) == 0 {
				return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, k.id)
			}
			old = nil
		}
		priv = privs[0]
	}
	r := &resolved{gen: b.gen, priv: priv, seen: time.Now()}
	switch {
	case old != nil && old.copy != 0:
		r.copy, r.copied = old.copy, true // still there: the copy stays
	case b.copies && k.noCopyGen.Load() != b.gen:
		r.copy, r.copied = k.h.makeCopy(ctx, b, k.id, priv), true
	}
	k.res.Store(r)
	return r, nil
}

// forget drops where the key was found; a session copy made then is left
// to its session (forget follows a handle that stopped working).
func (k *keySigner) forget() { k.res.Store(nil) }

// dropCopy destroys the key's session copy, if it has one in b.
func (k *keySigner) dropCopy(ctx context.Context, b *backend) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r := k.res.Load(); r != nil && r.gen == b.gen && r.copy != 0 {
		k.h.dropCopy(ctx, b, r.copy)
		k.res.Store(&resolved{gen: b.gen, priv: r.priv, copied: true, seen: r.seen})
	}
}

// Exists reports whether any object carries CKA_ID id.
func (h *HSM) Exists(ctx context.Context, id string) (bool, error) {
	if err := checkID(id); err != nil {
		return false, err
	}
	b, err := h.acquire(ctx)
	if err != nil {
		return false, err
	}
	op := fmt.Sprintf("look up key %q", id)
	found, err := h.findByID(ctx, b, id, nil)
	if err != nil {
		return false, h.check(b, op, err)
	}
	if len(found) == 0 {
		return false, h.confirmAbsent(ctx, b, op, nil)
	}
	return true, nil
}

// Delete destroys the private, public and secret key objects with CKA_ID
// id and drops the cached signer (which then fails with ErrKeyNotFound).
// It returns ErrKeyNotFound when there was nothing to destroy.
func (h *HSM) Delete(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	keyMu.Lock()
	defer keyMu.Unlock()
	b, err := h.acquire(ctx)
	if err != nil {
		return err
	}
	var objs []pkcs11.ObjectHandle
	private := false
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_SECRET_KEY} {
		found, err := h.findByID(ctx, b, id, classPtr(class))
		if err != nil {
			return h.check(b, fmt.Sprintf("find key %q", id), err)
		}
		if class == pkcs11.CKO_PRIVATE_KEY && len(found) > 0 {
			private = true
		}
		objs = append(objs, found...)
		if class == pkcs11.CKO_SECRET_KEY && len(found) > 0 {
			// A wrapping key may have its HMAC key beside it.
			mac, err := h.findByID(ctx, b, id+macSuffix, classPtr(class))
			if err != nil {
				return h.check(b, fmt.Sprintf("find key %q", id+macSuffix), err)
			}
			objs = append(objs, mac...)
		}
	}
	if !private {
		// Private and secret objects are visible to a logged-in session
		// only: a token that dropped the login (its sessions closed under
		// us) shows the public half alone, and destroying that and calling
		// the key gone would orphan the private half.
		if err := h.confirmAbsent(ctx, b, fmt.Sprintf("find key %q", id), nil); err != nil {
			return err
		}
	}
	h.cacheMu.Lock()
	k := h.signers[id]
	if k != nil {
		k.deleted.Store(true)
		delete(h.signers, id)
	}
	delete(h.aeads, id)
	delete(h.aeads, id+macSuffix)
	h.cacheMu.Unlock()
	if k != nil {
		// Its session copy before the key: nothing may sign with the key
		// once it is gone from the token.
		k.dropCopy(ctx, b)
	}
	if len(objs) == 0 {
		return fmt.Errorf("%w: %q", ErrKeyNotFound, id)
	}
	for _, o := range objs {
		err := b.run(ctx, h.cfg.CallTimeout, "C_DestroyObject", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
			return p.DestroyObject(s, o)
		})
		if err != nil {
			return h.check(b, fmt.Sprintf("destroy key %q", id), err)
		}
	}
	return nil
}

// List describes every key pair on the token (private keys and their
// public halves; wrapping keys are not listed), ordered by id.
func (h *HSM) List(ctx context.Context) ([]KeyInfo, error) {
	b, err := h.acquire(ctx)
	if err != nil {
		return nil, err
	}
	var privs []pkcs11.ObjectHandle
	err = b.run(ctx, h.cfg.CallTimeout, "C_FindObjects", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) (err error) {
		privs, err = find(p, s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)})
		return err
	})
	if err != nil {
		return nil, h.check(b, "list keys", err)
	}
	out := make([]KeyInfo, 0, len(privs))
	for _, o := range privs {
		a, err := h.attrs(ctx, b, o, pkcs11.CKA_ID, pkcs11.CKA_LABEL, pkcs11.CKA_KEY_TYPE)
		if err != nil {
			if isSessionFault(err) || errors.Is(err, ErrUnavailable) {
				return nil, h.check(b, "list keys", err)
			}
			continue // destroyed while listing
		}
		if isCopyID(a[0].Value) {
			continue // a session copy (copies.go), not a key of its own
		}
		ki := KeyInfo{ID: string(a[0].Value), Label: string(a[1].Value)}
		ki.Public, ki.Algorithm, err = h.publicOf(ctx, b, o, ki.ID, bytesToUint(a[2].Value))
		if err != nil && (isSessionFault(err) || errors.Is(err, ErrUnavailable)) {
			return nil, h.check(b, "list keys", err)
		}
		out = append(out, ki)
	}
	// An empty or short list may only mean the login is gone.
	if err := h.loggedIn(ctx, b); err != nil {
		return nil, h.check(b, "list keys", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// publicOf reads the public key of a private key object: RSA from the
// private object itself, EC and Ed25519 from the public object. A key
// without a readable public half gives a nil key.
func (h *HSM) publicOf(ctx context.Context, b *backend, priv pkcs11.ObjectHandle, id string, keyType uint) (crypto.PublicKey, Algorithm, error) {
	switch keyType {
	case pkcs11.CKK_RSA:
		a, err := h.attrs(ctx, b, priv, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return nil, "", err
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(a[0].Value), E: int(new(big.Int).SetBytes(a[1].Value).Int64())}
		return pub, AlgorithmOf(pub), nil
	case pkcs11.CKK_EC:
		pubs, err := h.findByID(ctx, b, id, classPtr(pkcs11.CKO_PUBLIC_KEY))
		if err != nil || len(pubs) == 0 {
			return nil, "", err
		}
		a, err := h.attrs(ctx, b, pubs[0], pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
		if err != nil {
			return nil, "", err
		}
		pub, err := ecPublic(a[0].Value, a[1].Value)
		if err != nil {
			return nil, "", err
		}
		return pub, AlgorithmOf(pub), nil
	case ckkECEdwards:
		pub, err := h.edwardsPublic(ctx, b, id)
		if errors.Is(err, ErrKeyNotFound) {
			return nil, ED25519, nil
		}
		if err != nil {
			return nil, ED25519, err
		}
		return pub, ED25519, nil
	}
	return nil, Algorithm(fmt.Sprintf("CKK_0x%X", keyType)), nil
}

// ecPublic decodes an EC public key from CKA_EC_PARAMS and CKA_EC_POINT.
func ecPublic(params, point []byte) (*ecdsa.PublicKey, error) {
	curve, err := curveOf(params)
	if err != nil {
		return nil, err
	}
	size := (curve.Params().BitSize + 7) / 8
	pt, err := ecPoint(point, 1+2*size)
	if err != nil {
		return nil, err
	}
	return ecdsa.ParseUncompressedPublicKey(curve, pt)
}

// KeyAttributes reads CKA_SENSITIVE and CKA_EXTRACTABLE of the private
// key (or, for a wrapping key, the secret key) with CKA_ID id.
func (h *HSM) KeyAttributes(ctx context.Context, id string) (sensitive, extractable bool, err error) {
	if err := checkID(id); err != nil {
		return false, false, err
	}
	b, err := h.acquire(ctx)
	if err != nil {
		return false, false, err
	}
	var objs []pkcs11.ObjectHandle
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY} {
		objs, err = h.findByID(ctx, b, id, classPtr(class))
		if err != nil {
			return false, false, h.check(b, fmt.Sprintf("find key %q", id), err)
		}
		if len(objs) > 0 {
			break
		}
	}
	if len(objs) == 0 {
		return false, false, h.confirmAbsent(ctx, b, fmt.Sprintf("find key %q", id), fmt.Errorf("%w: %q", ErrKeyNotFound, id))
	}
	a, err := h.attrs(ctx, b, objs[0], pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE)
	if err != nil {
		return false, false, h.check(b, fmt.Sprintf("read attributes of key %q", id), err)
	}
	return boolAttr(a[0]), boolAttr(a[1]), nil
}

func boolAttr(a *pkcs11.Attribute) bool { return len(a.Value) > 0 && a.Value[0] != 0 }

// ecPublicBytes is the uncompressed point of an EC public key.
func ecPublicBytes(pub *ecdsa.PublicKey) ([]byte, error) {
	switch pub.Curve {
	case elliptic.P256(), elliptic.P384(), elliptic.P521():
	default:
		return nil, fmt.Errorf("hsm: unsupported curve %s", pub.Curve.Params().Name)
	}
	return pub.Bytes()
}
