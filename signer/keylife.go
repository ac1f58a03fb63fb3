package signer

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/store"
)

// Crash consistency of HSM objects.
//
// Every operation that creates or destroys an HSM key first writes an
// intent naming the key (by CKA_ID) and the resource record that will own
// it. A record that owns a key says so in Fields[KeyField]. After a crash,
// the reconciler settles each leftover intent by one rule: a key that the
// named record owns is kept, any other key of the intent is destroyed.
// That one rule covers creation (crash before commit: no record, key
// destroyed), deletion (crash after the record is gone: key destroyed;
// before: key kept) and replacement (whichever key the record names
// survives).

// KeyField is the record field naming the CKA_ID of the key it owns.
const KeyField = "key_id"

type intentData struct {
	Resource string `json:"resource"`
	Op       string `json:"op"`
	// Owner is the Instance of the engine that wrote the intent.
	Owner string `json:"owner,omitempty"`
}

// NewKey is a key created under an intent, not yet owned by a record.
type NewKey struct {
	ID     string // CKA_ID
	Intent string
	Tenant string
	Signer crypto.Signer
}

// NewKeyID returns a fresh CKA_ID: 16 random bytes, hex.
func NewKeyID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// KeyLabel is the CKA_LABEL of a resource's key.
func KeyLabel(tenant, resourceID string) string { return hsm.LabelPrefix + tenant + "/" + resourceID }

func (e *Core) putIntent(ctx context.Context, tenant, kind, resource, op string, keyIDs ...string) (string, error) {
	data, _ := json.Marshal(intentData{Resource: resource, Op: op, Owner: e.instance})
	in := &store.Intent{ID: "i-" + NewKeyID(), Tenant: tenant, Kind: kind, KeyIDs: keyIDs,
		Created: e.now().UTC(), Data: data}
	if err := e.store.PutIntent(ctx, in); err != nil {
		return "", StoreErr(err, "intent")
	}
	return in.ID, nil
}

// GenerateKey creates a key in the HSM for the resource record (kind,
// tenant, resourceID) about to be created. Commit it by creating the record
// with Fields[KeyField] = nk.ID and WriteOpts{Intent: nk.Intent}; on any
// failure before that, call AbandonKey.
//
// An RSA key pair takes its turn in the heavy-work pool (heavy.go) first.
func (e *Core) GenerateKey(ctx context.Context, tenant, kind, resourceID string, alg hsm.Algorithm) (*NewKey, error) {
	// A token without the algorithm's mechanisms is refused before the
	// turn in the pool and the intent (again in newKeyOnce, against the
	// HSM it then uses).
	if err := e.Supports(alg); err != nil {
		return nil, err
	}
	if isRSAAlgorithm(alg) {
		release, err := e.heavyWork.acquire(ctx, heavyTenant(tenant), HeavyHSMRSAKey)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	return e.newKey(ctx, tenant, kind, resourceID, func(h HSM) error { return h.Supports(alg) },
		func(h HSM, id, label string) (crypto.Signer, error) { return h.Generate(ctx, id, label, alg) })
}

// ImportKey is GenerateKey for a private key supplied by the caller, which
// becomes a sensitive, non-extractable HSM object.
func (e *Core) ImportKey(ctx context.Context, tenant, kind, resourceID string, key crypto.PrivateKey) (*NewKey, error) {
	return e.newKey(ctx, tenant, kind, resourceID, func(h HSM) error { return supportsPrivate(h, key) },
		func(h HSM, id, label string) (crypto.Signer, error) { return h.Import(ctx, id, label, key) })
}

// supportsPrivate checks the token takes key; a key that is no signer is
// left to the import, which refuses it.
func supportsPrivate(h HSM, key crypto.PrivateKey) error {
	if s, ok := key.(crypto.Signer); ok {
		return h.SupportsKey(s.Public())
	}
	return nil
}

// newKey creates a key with create under an intent; check, run first,
// refuses what the token cannot do before the intent is written.
func (e *Core) newKey(ctx context.Context, tenant, kind, resourceID string, check func(HSM) error, create func(HSM, string, string) (crypto.Signer, error)) (*NewKey, error) {
	// SoftHSM2 fails an object creation now and then after a crash of an
	// earlier process on the token (CKR_GENERAL_ERROR, even
	// CKR_TEMPLATE_INCONSISTENT for a template that works otherwise;
	// internal/chaos finds them at about one creation in a hundred, now and
	// then twice in a row). A failed attempt's key is already abandoned, so
	// another, under a fresh CKA_ID and intent, is safe.
	delay := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		nk, err := e.newKeyOnce(ctx, tenant, kind, resourceID, check, create)
		if err == nil || !transientCreateError(err) || attempt == maxCreateAttempts {
			return nk, err
		}
		e.log.Warn("HSM key creation failed; trying again", "attempt", attempt, "err", err.Error())
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
		delay *= 4
	}
}

// maxCreateAttempts bounds the tries of one key creation.
const maxCreateAttempts = 4

// transientCreateError says whether a key creation failed with a module's
// generic failure rather than for a reason a retry cannot change (a bad
// key, an unavailable HSM).
func transientCreateError(err error) bool {
	switch hsm.ErrorCode(err) {
	case "CKR_GENERAL_ERROR", "CKR_FUNCTION_FAILED", "CKR_TEMPLATE_INCONSISTENT":
		return true
	}
	return false
}

func (e *Core) newKeyOnce(ctx context.Context, tenant, kind, resourceID string, check func(HSM) error, create func(HSM, string, string) (crypto.Signer, error)) (*NewKey, error) {
	h, err := e.HSM()
	if err != nil {
		return nil, err
	}
	if err := check(h); err != nil {
		return nil, HSMError(err, "key")
	}
	// A token known to be away is refused before anything is written:
	// during an outage every request would otherwise leave an intent.
	if r, ok := h.(interface{ Ready() error }); ok {
		if err := r.Ready(); err != nil {
			return nil, HSMError(err, "key")
		}
	}
	id := NewKeyID()
	intent, err := e.putIntent(ctx, tenant, kind, resourceID, "create", id)
	if err != nil {
		return nil, err
	}
	s, err := create(h, id, KeyLabel(tenant, resourceID))
	if err != nil && hsm.NotSent(err) {
		// The token never saw the creation: only the intent goes.
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if derr := e.store.DeleteIntent(dctx, intent); derr != nil {
			e.log.Warn("intent of a key never created left for the reconciler", "intent", intent, "err", derr)
		}
		cancel()
		return nil, HSMError(err, "key")
	}
	if hsm.StillRunning(err) {
		// The creation may still complete in the token after its
		// deadline: a destroy now could find nothing and drop the intent
		// before the key appears. The reconciler settles it later.
		e.log.Warn("key creation unanswered in time; left for the reconciler", "key_id", id, "intent", intent)
		return nil, HSMError(err, "key")
	}
	if err != nil {
		// The key may exist if the HSM failed after creating it; the
		// destroy below or the reconciler settles it.
		e.AbandonKey(&NewKey{ID: id, Intent: intent, Tenant: tenant})
		return nil, HSMError(err, "key")
	}
	return &NewKey{ID: id, Intent: intent, Tenant: tenant, Signer: s}, nil
}

// AbandonKey destroys a key whose record was never committed. If the HSM
// or store does not answer, the intent stays for the reconciler.
func (e *Core) AbandonKey(nk *NewKey) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := e.HSM()
	if err == nil {
		err = h.Delete(ctx, nk.ID)
		if errors.Is(err, hsm.ErrKeyNotFound) {
			err = nil
		}
	}
	if err == nil {
		err = e.store.DeleteIntent(ctx, nk.Intent)
	}
	if err != nil {
		e.log.Warn("abandoned key left for the reconciler", "key_id", nk.ID, "intent", nk.Intent, "err", err)
	}
}

// abandonCreated disposes of a key whose creation failed with err, as
// AbandonKey does, except when the call may still complete in the token
// (hsm.StillRunning): a destroy now could find nothing and drop the intent
// before the key appears, so the intent is left to the reconciler.
func (e *Core) abandonCreated(nk *NewKey, err error) {
	if hsm.StillRunning(err) {
		e.log.Warn("key creation unanswered in time; left for the reconciler", "key_id", nk.ID, "intent", nk.Intent)
		return
	}
	e.AbandonKey(nk)
}

// CommitKey creates rec as the owner of nk: it names the key
// (Fields[KeyField]) and retires the key's intent in the same store write
// (opts.Intent). When the write fails the key is settled
// (SettleUncommitted) and the store's error is returned as it is, for the
// family to word (quota, name taken).
func (e *Core) CommitKey(ctx context.Context, rec *store.Record, nk *NewKey, opts store.WriteOpts) error {
	if rec.Fields == nil {
		rec.Fields = map[string]string{}
	}
	rec.Fields[KeyField] = nk.ID
	opts.Intent = nk.Intent
	if err := e.store.Create(ctx, rec, opts); err != nil {
		e.SettleUncommitted(nk, err)
		return err
	}
	return nil
}

// SettleUncommitted disposes of a key whose record write failed with
// err: destroyed when the store certainly refused the write, else left to
// the reconciler, which keeps it if the write did commit after all (a
// timeout may have committed).
func (e *Core) SettleUncommitted(nk *NewKey, err error) {
	if RefusedWrite(err) {
		e.AbandonKey(nk)
		return
	}
	e.log.Warn("key of an unconfirmed write left for the reconciler", "key_id", nk.ID, "intent", nk.Intent, "err", err)
}

// RefusedWrite reports a write the store certainly refused (nothing was
// written), as opposed to one whose outcome is unknown (a timeout, a lost
// answer: it may have committed).
func RefusedWrite(err error) bool {
	for _, s := range []error{store.ErrExists, store.ErrQuotaExceeded, store.ErrVersionConflict, store.ErrNotFound, store.ErrInvalid} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// keySettled is the error of a failed CommitKey as the family words it:
// the key is settled already (SettleUncommitted).
type keySettled struct{ err error }

func (e *keySettled) Error() string { return e.err.Error() }
func (e *keySettled) Unwrap() error { return e.err }

// KeySettled marks err, a family's wording of a failed CommitKey, so that
// AbandonUnlessSettled leaves the key alone: CommitKey destroyed it when
// the write was refused, and must not when it may have committed.
func KeySettled(err error) error {
	if err == nil {
		return nil
	}
	return &keySettled{err: err}
}

// AbandonUnlessSettled is AbandonKey after a failure err between
// GenerateKey and the end of the commit, except after a failed CommitKey
// (KeySettled), which settled the key itself.
func (e *Core) AbandonUnlessSettled(nk *NewKey, err error) {
	var ks *keySettled
	if errors.As(err, &ks) {
		return
	}
	e.AbandonKey(nk)
}

// ReplaceKey gives a record a new key, crash-safely: one intent names the
// new key and the old one, the new key is imported, the record is updated
// to name it (version-checked), and only then is the old key destroyed and
// the intent retired. Whatever the point of a crash, the reconciler keeps
// the key the record names and destroys the other. apply changes the
// record's content; ReplaceKey sets its KeyField. On success rec holds the
// record as stored. A failed update returns the store's error as it is;
// other errors are the engine's.
func (e *Core) ReplaceKey(ctx context.Context, rec *store.Record, key crypto.PrivateKey, apply func(*store.Record)) error {
	h, err := e.HSM()
	if err != nil {
		return err
	}
	if err := supportsPrivate(h, key); err != nil {
		return HSMError(err, "key")
	}
	oldID := rec.Fields[KeyField]
	nk := &NewKey{ID: NewKeyID(), Tenant: rec.Tenant}
	ids := []string{nk.ID}
	if oldID != "" {
		ids = append(ids, oldID)
	}
	if nk.Intent, err = e.putIntent(ctx, rec.Tenant, rec.Kind, rec.ID, "replace", ids...); err != nil {
		return err
	}
	if _, err := h.Import(ctx, nk.ID, KeyLabel(rec.Tenant, rec.ID), key); err != nil {
		// The old key stays: the record still names it.
		e.abandonCreated(nk, err)
		return HSMError(err, "key")
	}
	next := *rec
	apply(&next)
	fields := make(map[string]string, len(next.Fields)+1)
	for k, v := range next.Fields {
		fields[k] = v
	}
	fields[KeyField] = nk.ID
	next.Fields = fields
	if err := e.store.Update(ctx, &next, store.WriteOpts{}); err != nil {
		e.SettleUncommitted(nk, err)
		return err
	}
	*rec = next
	if oldID != "" {
		if err := h.Delete(ctx, oldID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			e.log.Warn("replaced key left for the reconciler", "key_id", oldID, "err", err)
			return nil
		}
	}
	if err := e.store.DeleteIntent(context.WithoutCancel(ctx), nk.Intent); err != nil {
		e.log.Warn("intent left for the reconciler", "intent", nk.Intent, "err", err)
	}
	return nil
}

// DeleteWithKey deletes a record and destroys the HSM key it owns, safe
// against a crash at any point (see the rule above).
func (e *Core) DeleteWithKey(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	keyID := rec.Fields[KeyField]
	if keyID == "" {
		return StoreErr(e.store.Delete(ctx, rec.Kind, rec.Tenant, rec.ID, opts), rec.Kind)
	}
	h, err := e.HSM()
	if err != nil {
		return err
	}
	intent, err := e.putIntent(ctx, rec.Tenant, rec.Kind, rec.ID, "delete", keyID)
	if err != nil {
		return err
	}
	if err := e.store.Delete(ctx, rec.Kind, rec.Tenant, rec.ID, opts); err != nil {
		_ = e.store.DeleteIntent(context.WithoutCancel(ctx), intent)
		return StoreErr(err, rec.Kind)
	}
	if err := h.Delete(ctx, keyID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
		e.log.Warn("key of a deleted resource left for the reconciler", "key_id", keyID, "err", err)
		return nil
	}
	if err := e.store.DeleteIntent(context.WithoutCancel(ctx), intent); err != nil {
		e.log.Warn("intent left for the reconciler", "intent", intent, "err", err)
	}
	return nil
}

// Signer returns the cached signer of a key.
func (e *Core) Signer(ctx context.Context, keyID string) (crypto.Signer, error) {
	h, err := e.HSM()
	if err != nil {
		return nil, err
	}
	s, err := h.Signer(ctx, keyID)
	if err != nil {
		return nil, HSMError(err, "key")
	}
	return s, nil
}

// HSMError maps an HSM layer error to the engine's kinds.
func HSMError(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hsm.ErrUnavailable):
		return &Error{Kind: KindUnavailable, Msg: "the HSM is unavailable", Err: err}
	case errors.Is(err, hsm.ErrUnsupported):
		// The token's limit is the caller's to work around: another
		// algorithm or feature. The message names only the mechanism.
		var u *hsm.UnsupportedError
		if errors.As(err, &u) {
			return &Error{Kind: KindInvalid, Msg: u.Error(), Err: err}
		}
		return &Error{Kind: KindInvalid, Msg: "the HSM token does not support this", Err: err}
	case errors.Is(err, hsm.ErrKeyNotFound):
		return &Error{Kind: KindNotFound, Msg: what + " not found in the HSM", Err: err}
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: KindInternal, Msg: "internal error", Err: fmt.Errorf("hsm: %w", err)}
}

// ReconcileReport says what a reconciler run did.
type ReconcileReport struct {
	Intents   int // intents settled
	Destroyed int // keys destroyed
	Kept      int // keys kept (owned by their record)
	Skipped   int // intents younger than the grace period
	// Late counts the keys found only when looked for again: creations
	// the crashed life had sent, which the token completed after the
	// first look (see ReconcileAtStart).
	Late int
}

// DefaultLateKeyWindow is how long after its intent was written a key
// creation sent before a crash may still land in the token, as far as the
// start-up reconciliation waits for it (Options.LateKeyWindow).
const DefaultLateKeyWindow = 3 * time.Second

// lateKeyPoll is how often the start-up reconciliation looks again for
// the keys of recent creation intents.
const lateKeyPoll = 100 * time.Millisecond

// Reconcile settles leftover intents older than grace. With one daemon per
// store (bolt) every intent found at start-up is a crash's leftover: pass
// 0. With replicas sharing Redis, another replica may be mid-operation:
// pass a grace longer than any operation. The daemon runs it with the
// freshly opened HSM before installing it, so no request of its own can be
// mid-operation; h nil means the installed HSM.
func (e *Core) Reconcile(ctx context.Context, h HSM, grace time.Duration) (ReconcileReport, error) {
	return e.reconcile(ctx, h, grace, false)
}

// ReconcileAtStart is Reconcile for an engine that has not served a
// request yet: the intents its own Instance wrote (in the life a crash
// ended) are settled whatever their age, since no operation of that
// instance can still be running in it; other replicas' intents wait out
// grace. Without an Instance it is Reconcile.
//
// A key creation that life sent may still be running in the token,
// though: a token behind a socket (a network HSM, a p11-kit server)
// carries out a call it has received to the end after its client is
// gone, and the key appears after a first look found nothing. Such an
// intent is not taken for "nothing created" while it is younger than the
// late-key window (Options.LateKeyWindow): its key is looked for again
// every little while until it appears (and is destroyed) or the window
// has passed, and only then is the intent settled. Start-up waits for
// that, so the daemon serves with no key left over from its crash.
func (e *Core) ReconcileAtStart(ctx context.Context, h HSM, grace time.Duration) (ReconcileReport, error) {
	return e.reconcile(ctx, h, grace, e.instance != "")
}

func (e *Core) reconcile(ctx context.Context, h HSM, grace time.Duration, own bool) (ReconcileReport, error) {
	var rep ReconcileReport
	if h == nil {
		var err error
		if h, err = e.HSM(); err != nil {
			return rep, err
		}
	}
	// The wait is bounded in real time as well: a test clock may stand
	// still.
	until := time.Now().Add(e.lateKeys)
	looked := map[string]bool{} // intents whose new key was not found at a first look
	for {
		waitFor := own && e.lateKeys > 0 && time.Now().Before(until)
		pending, err := e.reconcilePass(ctx, h, grace, own, waitFor, looked, &rep)
		if err != nil || pending == 0 {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(lateKeyPoll):
		}
	}
}

// reconcilePass settles the intents once. With waitFor, an own creation
// intent younger than the late-key window whose new key is not there yet
// is left for the next pass: it returns how many were.
func (e *Core) reconcilePass(ctx context.Context, h HSM, grace time.Duration, own, waitFor bool, looked map[string]bool, rep *ReconcileReport) (int, error) {
	intents, err := e.store.ListIntents(ctx)
	if err != nil {
		return 0, StoreErr(err, "intent")
	}
	now := e.now()
	rep.Skipped = 0
	pending := 0
	for _, in := range intents {
		var d intentData
		_ = json.Unmarshal(in.Data, &d)
		mine := own && d.Owner == e.instance
		if now.Sub(in.Created) < grace && !mine {
			rep.Skipped++
			continue
		}
		owner := ""
		if d.Resource != "" {
			rec, err := e.store.Get(ctx, in.Kind, in.Tenant, d.Resource)
			switch {
			case err == nil:
				owner = rec.Fields[KeyField]
			case !errors.Is(err, store.ErrNotFound):
				return pending, StoreErr(err, in.Kind)
			}
		}
		keys := in.KeyIDs
		// The first key of an intent other than a deletion's is the one
		// being created (create, replace, rotate).
		if mine && d.Op != "delete" && len(keys) > 0 && keys[0] != owner {
			err := h.Delete(ctx, keys[0])
			switch {
			case errors.Is(err, hsm.ErrKeyNotFound):
				if waitFor && now.Sub(in.Created) < e.lateKeys {
					looked[in.ID] = true
					pending++
					continue
				}
			case err != nil:
				return pending, HSMError(err, "key")
			default:
				if looked[in.ID] {
					rep.Late++
					e.log.Warn("a key whose creation was sent before the crash appeared in the HSM after a first look; destroyed",
						"key_id", keys[0], "intent", in.ID)
				}
			}
			rep.Destroyed++
			keys = keys[1:]
		}
		for _, k := range keys {
			if k == owner {
				rep.Kept++
				continue
			}
			if err := h.Delete(ctx, k); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
				return pending, HSMError(err, "key")
			}
			rep.Destroyed++
		}
		if err := e.store.DeleteIntent(ctx, in.ID); err != nil {
			return pending, StoreErr(err, "intent")
		}
		rep.Intents++
	}
	return pending, nil
}
