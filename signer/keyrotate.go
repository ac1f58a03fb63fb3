package signer

import (
	"context"
	"crypto"
	"errors"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/store"
)

// RotateKey gives an existing record a new key generated in the HSM,
// crash-safely, as ReplaceKey does for an imported one: one intent names
// the new key and the record's current one (if any), the key is
// generated, apply makes the record's new content from it (a certificate
// for the new key, say), the record is updated to name it
// (version-checked), and only then is the old key destroyed and the
// intent retired. Whatever the point of a crash, the reconciler keeps the
// key the record names and destroys the other. apply gets a copy of rec
// and the new key's signer; RotateKey sets the copy's KeyField. On
// success rec holds the record as stored. A failed update returns the
// store's error as it is; apply's error is returned as it is, the new key
// destroyed.
//
// An RSA key pair takes its turn in the heavy-work pool first.
func (e *Core) RotateKey(ctx context.Context, rec *store.Record, alg hsm.Algorithm,
	apply func(next *store.Record, s crypto.Signer) error) error {
	if err := e.Supports(alg); err != nil {
		return err
	}
	if isRSAAlgorithm(alg) {
		release, err := e.heavyWork.acquire(ctx, heavyTenant(rec.Tenant), HeavyHSMRSAKey)
		if err != nil {
			return err
		}
		defer release()
	}
	h, err := e.HSM()
	if err != nil {
		return err
	}
	if err := h.Supports(alg); err != nil {
		return HSMError(err, "key")
	}
	oldID := rec.Fields[KeyField]
	nk := &NewKey{ID: NewKeyID(), Tenant: rec.Tenant}
	ids := []string{nk.ID}
	if oldID != "" {
		ids = append(ids, oldID)
	}
	if nk.Intent, err = e.putIntent(ctx, rec.Tenant, rec.Kind, rec.ID, "rotate", ids...); err != nil {
		return err
	}
	s, err := h.Generate(ctx, nk.ID, KeyLabel(rec.Tenant, rec.ID), alg)
	if err != nil {
		// The old key stays: the record still names it.
		e.abandonCreated(nk, err)
		return HSMError(err, "key")
	}
	next := *rec
	next.Fields = make(map[string]string, len(rec.Fields)+1)
	for k, v := range rec.Fields {
		next.Fields[k] = v
	}
	if err := apply(&next, s); err != nil {
		e.AbandonKey(nk)
		return err
	}
	next.Fields[KeyField] = nk.ID
	if err := e.store.Update(ctx, &next, store.WriteOpts{}); err != nil {
		e.SettleUncommitted(nk, err)
		return err
	}
	*rec = next
	if oldID != "" {
		if err := h.Delete(ctx, oldID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			e.log.Warn("rotated-out key left for the reconciler", "key_id", oldID, "err", err)
			return nil
		}
	}
	if err := e.store.DeleteIntent(context.WithoutCancel(ctx), nk.Intent); err != nil {
		e.log.Warn("intent left for the reconciler", "intent", nk.Intent, "err", err)
	}
	return nil
}
