package signer

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// On a store that writes an event with a Create, an operation whose last
// step is that Create records exactly one event: SUCCESS with the record
// (written by the Create), or FAIL when the Create is refused (written by
// Done, the refused Create having written nothing).
func TestOpWithEventRecordsOnce(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	defer st.Close()
	c := New(Options{Store: st})
	defer c.Close()
	ctx := WithCaller(context.Background(), Caller{Principal: "p", RequestID: "r1"})
	create := func(id string) error {
		op := c.Start(ctx, "t1", "THING_CREATE")
		rec := &store.Record{Kind: "thing", Tenant: "t1", ID: id, Data: json.RawMessage(`{}`)}
		opts := op.WithEvent(id, rec, store.WriteOpts{})
		assert.NotNil(t, opts.Event)
		err := c.Store().Create(ctx, rec, opts)
		if errors.Is(err, store.ErrExists) {
			err = E(KindConflict, "exists")
		}
		return op.Done(id, err)
	}
	require.NoError(t, create("a"))
	require.Error(t, create("a"))
	evs, err := c.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.Equal(t, "SUCCESS", evs[0].Outcome)
	assert.Equal(t, "a", evs[0].Resource)
	assert.Equal(t, "p", evs[0].Principal)
	assert.Equal(t, "r1", evs[0].RequestID)
	assert.NotEmpty(t, evs[0].ID)
	assert.Equal(t, "FAIL", evs[1].Outcome)

	// Another tenant's record: the event stays with the operation's chain,
	// written by Done.
	op := c.Start(ctx, "t1", "THING_CREATE")
	rec := &store.Record{Kind: "thing", Tenant: "t2", ID: "b", Data: json.RawMessage(`{}`)}
	opts := op.WithEvent("b", rec, store.WriteOpts{})
	assert.Nil(t, opts.Event)
	require.NoError(t, op.Done("b", c.Store().Create(ctx, rec, opts)))
	evs, err = c.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	assert.Len(t, evs, 3)
}
