package storetest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
)

// testEventWithCreate: a store that takes WriteOpts.Event with Create
// appends it to the record's tenant's chain with the record, after the
// events appended before, and appends nothing when the create is refused;
// no other write takes it. A store that does not take it refuses it and
// writes nothing.
func testEventWithCreate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ev := func(n string) json.RawMessage { return json.RawMessage(`{"n":"` + n + `"}`) }
	_, err := s.AppendEvents(ctx, "t1", []json.RawMessage{ev("before")})
	require.NoError(t, err)
	if _, ok := s.(store.EventsWithCreate); !ok {
		err := s.Create(ctx, rec("t1", "a"), store.WriteOpts{Event: ev("a")})
		assert.ErrorIs(t, err, store.ErrInvalid)
		_, err = s.Get(ctx, kind, "t1", "a")
		assert.ErrorIs(t, err, store.ErrNotFound)
		return
	}
	require.NoError(t, s.Create(ctx, rec("t1", "a", "name:a"), store.WriteOpts{Event: ev("a"),
		Quota: &store.Quota{Resource: "things", Limit: 1}}))
	// Refused: the id, a unique key or the quota; nothing is appended.
	assert.ErrorIs(t, s.Create(ctx, rec("t1", "a"), store.WriteOpts{Event: ev("dup")}), store.ErrExists)
	assert.ErrorIs(t, s.Create(ctx, rec("t1", "b", "name:a"), store.WriteOpts{Event: ev("dup-key")}), store.ErrExists)
	assert.ErrorIs(t, s.Create(ctx, rec("t1", "c"), store.WriteOpts{Event: ev("quota"),
		Quota: &store.Quota{Resource: "things", Limit: 1}}), store.ErrQuotaExceeded)
	got, err := s.Get(ctx, kind, "t1", "a")
	require.NoError(t, err)
	assert.EqualValues(t, 1, got.Version)
	r := got
	r.Data = json.RawMessage(`{"v":2}`)
	assert.ErrorIs(t, s.Update(ctx, r, store.WriteOpts{Event: ev("update")}), store.ErrInvalid)
	assert.ErrorIs(t, s.Delete(ctx, kind, "t1", "a", store.WriteOpts{Event: ev("delete")}), store.ErrInvalid)
	assert.ErrorIs(t, s.Create(ctx, rec("t1", "d"), store.WriteOpts{Event: json.RawMessage(`{`)}), store.ErrInvalid)
	_, err = s.AppendEvents(ctx, "t1", []json.RawMessage{ev("after")})
	require.NoError(t, err)

	assert.Equal(t, []string{"before", "a", "after"}, eventNames(t, s, "t1"))
	evs, err := s.ListEvents(ctx, "t1", 0, 0)
	require.NoError(t, err)
	_, err = store.VerifyChain(evs, "", 0)
	assert.NoError(t, err)
	other, err := s.ListEvents(ctx, "t2", 0, 0)
	require.NoError(t, err)
	assert.Empty(t, other)
}

// eventNames lists the n field of tenant's events ({"n": ...}), in order.
func eventNames(t *testing.T, s store.Store, tenant string) []string {
	t.Helper()
	evs, err := s.ListEvents(ctxT(t), tenant, 0, 0)
	require.NoError(t, err)
	var names []string
	for _, e := range evs {
		var v struct{ N string }
		require.NoError(t, json.Unmarshal(e.Data, &v))
		names = append(names, v.N)
	}
	return names
}
