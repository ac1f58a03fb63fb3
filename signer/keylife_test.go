package signer_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

func newEngine(t *testing.T) (*signer.Core, *hsm.HSM, store.Store) {
	t.Helper()
	h, st := openTokenAndStore(t)
	e := signer.New(signer.Options{Store: st, HSM: h})
	t.Cleanup(func() { e.Close() })
	return e, h, st
}

// openTokenAndStore opens a fresh token and a bolt store, both closed
// when the test ends, for tests that pass the HSM to the reconciler
// rather than install it in an engine (closing an engine closes its HSM).
func openTokenAndStore(t *testing.T) (*hsm.HSM, store.Store) {
	t.Helper()
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { h.Close(); st.Close() })
	return h, st
}

func exists(t *testing.T, h *hsm.HSM, id string) bool {
	ok, err := h.Exists(context.Background(), id)
	require.NoError(t, err)
	return ok
}

// A crash at each step of create, delete and replace leaves intents that
// the reconciler settles by one rule: keep the key the record owns.
func TestReconcilerSettlesEveryCrashPoint(t *testing.T) {
	e, h, st := newEngine(t)
	ctx := context.Background()
	mkRecord := func(id, keyID string) *store.Record {
		return &store.Record{Kind: "thing", Tenant: "t1", ID: id, Fields: map[string]string{signer.KeyField: keyID}, Data: json.RawMessage(`{}`)}
	}

	// 1. Crash after the key was made, before the record was committed.
	orphan, err := e.GenerateKey(ctx, "t1", "thing", "r1", hsm.EC256)
	require.NoError(t, err)

	// 2. A committed creation: the intent went with the record.
	ok, err := e.GenerateKey(ctx, "t1", "thing", "r2", hsm.EC256)
	require.NoError(t, err)
	require.NoError(t, st.Create(ctx, mkRecord("r2", ok.ID), store.WriteOpts{Intent: ok.Intent}))

	// 3. A committed creation whose record was then deleted, crash before
	// the key was destroyed: simulate with a leftover delete intent.
	gone, err := e.GenerateKey(ctx, "t1", "thing", "r3", hsm.EC256)
	require.NoError(t, err)
	require.NoError(t, st.Create(ctx, mkRecord("r3", gone.ID), store.WriteOpts{Intent: gone.Intent}))
	require.NoError(t, st.PutIntent(ctx, &store.Intent{ID: "del-r3", Tenant: "t1", Kind: "thing", KeyIDs: []string{gone.ID},
		Data: json.RawMessage(`{"resource":"r3","op":"delete"}`)}))
	require.NoError(t, st.Delete(ctx, "thing", "t1", "r3", store.WriteOpts{}))

	// 4. A delete intent written but the record not yet deleted: key kept.
	require.NoError(t, st.PutIntent(ctx, &store.Intent{ID: "del-r2", Tenant: "t1", Kind: "thing", KeyIDs: []string{ok.ID},
		Data: json.RawMessage(`{"resource":"r2","op":"delete"}`)}))

	rep, err := e.Reconcile(ctx, nil, 0)
	require.NoError(t, err)
	assert.Equal(t, 3, rep.Intents)
	assert.Equal(t, 2, rep.Destroyed)
	assert.Equal(t, 1, rep.Kept)
	assert.False(t, exists(t, h, orphan.ID), "uncommitted key destroyed")
	assert.True(t, exists(t, h, ok.ID), "committed key kept")
	assert.False(t, exists(t, h, gone.ID), "key of a deleted record destroyed")
	left, err := st.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, left)
}

func TestReconcilerLeavesRecentIntentsAlone(t *testing.T) {
	e, h, _ := newEngine(t)
	ctx := context.Background()
	nk, err := e.GenerateKey(ctx, "t1", "thing", "r1", hsm.EC256)
	require.NoError(t, err)
	rep, err := e.Reconcile(ctx, nil, 3600e9)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Skipped)
	assert.True(t, exists(t, h, nk.ID))
}

func TestDeleteWithKeyDestroysTheKey(t *testing.T) {
	e, h, st := newEngine(t)
	ctx := context.Background()
	nk, err := e.GenerateKey(ctx, "t1", "thing", "r1", hsm.EC384)
	require.NoError(t, err)
	rec := &store.Record{Kind: "thing", Tenant: "t1", ID: "r1", Fields: map[string]string{signer.KeyField: nk.ID}, Data: json.RawMessage(`{}`)}
	require.NoError(t, st.Create(ctx, rec, store.WriteOpts{Intent: nk.Intent, Quota: &store.Quota{Resource: "thing", Limit: 5}}))
	require.NoError(t, e.DeleteWithKey(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: "thing"}}))
	assert.False(t, exists(t, h, nk.ID))
	used, err := st.QuotaUsage(ctx, "t1", "thing")
	require.NoError(t, err)
	assert.Zero(t, used)
	_, err = e.Signer(ctx, nk.ID)
	assert.Equal(t, signer.KindNotFound, signer.KindOf(err))
	left, err := st.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, left)
}

func TestAbandonKeyDestroysIt(t *testing.T) {
	e, h, st := newEngine(t)
	ctx := context.Background()
	nk, err := e.GenerateKey(ctx, "t1", "thing", "r1", hsm.RSA2048)
	require.NoError(t, err)
	e.AbandonKey(nk)
	assert.False(t, exists(t, h, nk.ID))
	left, err := st.ListIntents(ctx)
	require.NoError(t, err)
	assert.Empty(t, left)
}

// lateHSM plays a token that completes a key creation sent before a crash
// only after the restarted daemon first looked for the key: the key
// appears right after that first look found nothing.
type lateHSM struct {
	signer.HSM
	h    *hsm.HSM
	id   string
	seen int
}

func (l *lateHSM) Delete(ctx context.Context, id string) error {
	err := l.HSM.Delete(ctx, id)
	if id == l.id {
		l.seen++
		if l.seen == 1 {
			if _, gerr := l.h.Generate(ctx, id, "late", hsm.EC256); gerr != nil {
				return gerr
			}
		}
	}
	return err
}

func createIntent(t *testing.T, st store.Store, instance, keyID string) {
	t.Helper()
	data, _ := json.Marshal(map[string]string{"resource": "r1", "op": "create", "owner": instance})
	require.NoError(t, st.PutIntent(context.Background(), &store.Intent{ID: "i-late", Tenant: "t1", Kind: "thing",
		KeyIDs: []string{keyID}, Created: time.Now().UTC(), Data: data}))
}

// A restarted daemon's own creation intent whose key is not there yet is
// looked at again: the key the token completes after the first look is
// destroyed before the intent goes.
func TestReconcileAtStartWaitsForLateKeys(t *testing.T) {
	h, st := openTokenAndStore(t)
	const instance = "host/10.0.0.1:8080"
	keyID := signer.NewKeyID()
	createIntent(t, st, instance, keyID)

	// A window no test machine outlasts: the key appears at once.
	e := signer.New(signer.Options{Store: st, Instance: instance, LateKeyWindow: time.Hour})
	rep, err := e.ReconcileAtStart(context.Background(), &lateHSM{HSM: h, h: h, id: keyID}, 0)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Intents)
	assert.Equal(t, 1, rep.Late, "the key was found at the second look")
	assert.False(t, exists(t, h, keyID), "the late key is destroyed")
	left, err := st.ListIntents(context.Background())
	require.NoError(t, err)
	assert.Empty(t, left)
}

// A key that never appears is taken for "never created" once the window
// has passed; a periodic run (Reconcile) does not wait at all.
func TestReconcileAtStartSettlesAbsentKeysAfterTheWindow(t *testing.T) {
	e, h, st := newEngine(t)
	_ = e
	const instance = "host/10.0.0.1:8080"
	keyID := signer.NewKeyID()
	createIntent(t, st, instance, keyID)
	own := signer.New(signer.Options{Store: st, Instance: instance, LateKeyWindow: 200 * time.Millisecond})
	rep, err := own.ReconcileAtStart(context.Background(), h, 0)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Intents)
	assert.Zero(t, rep.Late)
	left, err := st.ListIntents(context.Background())
	require.NoError(t, err)
	assert.Empty(t, left)

	createIntent(t, st, instance, keyID)
	rep, err = signer.New(signer.Options{Store: st, Instance: instance}).Reconcile(context.Background(), h, 0)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Intents, "a periodic run settles it at once")
}
