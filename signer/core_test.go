package signer_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

func newCore(t *testing.T) (*signer.Core, *metrics.Metrics, store.Store) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	m := metrics.New("test")
	c := signer.New(signer.Options{Store: st, Metrics: m})
	t.Cleanup(func() { c.Close(); st.Close() })
	return c, m, st
}

// Start and Done count the event and record it in the tenant's chain with
// the caller's principal and request id, as the run envelope always has.
func TestStartDoneRecordsTheEvent(t *testing.T) {
	c, m, _ := newCore(t)
	ctx := signer.WithCaller(context.Background(), signer.Caller{Tenant: "acme", Principal: "token:t1", RequestID: "req-1"})

	op := c.Start(ctx, "acme", "THING_CREATE")
	assert.Equal(t, 1.0, eventCount(t, m, "THING_CREATE", metrics.StageStart))
	require.NoError(t, op.Done("thing-1", nil))

	refused := signer.E(signer.KindConflict, "taken")
	err := c.Start(ctx, "acme", "THING_CREATE").Done("thing-2", refused)
	assert.Same(t, refused, err, "Done returns the operation's error as it is")

	require.NoError(t, c.Start(ctx, "", "PLATFORM_THING").Done("", nil))

	assert.Equal(t, 2.0, eventCount(t, m, "THING_CREATE", metrics.StageStart))
	assert.Equal(t, 1.0, eventCount(t, m, "THING_CREATE", metrics.StageSuccess))
	assert.Equal(t, 1.0, eventCount(t, m, "THING_CREATE", metrics.StageFail))

	evs, err := c.ListEvents(context.Background(), "acme", 0, 10)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	for i, want := range []signer.EventRecord{
		{Tenant: "acme", Principal: "token:t1", Operation: "THING_CREATE", Outcome: metrics.StageSuccess, Resource: "thing-1", RequestID: "req-1"},
		{Tenant: "acme", Principal: "token:t1", Operation: "THING_CREATE", Outcome: metrics.StageFail, Resource: "thing-2", RequestID: "req-1", ErrorCode: "conflict"},
	} {
		got := evs[i].EventRecord
		assert.NotEmpty(t, got.ID)
		assert.False(t, got.Time.IsZero())
		got.ID, got.Time = "", want.Time
		assert.Equal(t, want, got)
	}
	evs, err = c.ListEvents(context.Background(), store.PlatformTenant, 0, 10)
	require.NoError(t, err)
	require.Len(t, evs, 1, "an empty tenant records in the platform's chain")
	assert.Equal(t, store.PlatformTenant, evs[0].Tenant)
}

// eventCount reads hsmca_events_total{event, stage}.
func eventCount(t *testing.T, m *metrics.Metrics, event, stage string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != "hsmca_events_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range mt.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["event"] == event && l["stage"] == stage {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// An operation whose event cannot be recorded is not acknowledged.
func TestDoneWithoutEventLog(t *testing.T) {
	c, _, _ := newCore(t)
	require.NoError(t, c.Close()) // closes the event log
	ctx := context.Background()
	err := c.Start(ctx, "acme", "THING_CREATE").Done("x", nil)
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
	refused := signer.E(signer.KindInvalid, "bad")
	assert.Same(t, refused, c.Start(ctx, "acme", "THING_CREATE").Done("x", refused), "a failure stays the failure")
}

func TestErrorReasons(t *testing.T) {
	const reasonBadName signer.Reason = "test.bad_name"

	e := signer.Refused(signer.KindInvalid, reasonBadName, "name", "x y", "must be one word")
	assert.Equal(t, signer.KindInvalid, e.Kind)
	assert.Equal(t, "name: must be one word", e.Msg)
	assert.Equal(t, []signer.FieldError{{Field: "name", Value: "x y", Msg: "must be one word", Location: "body"}}, e.Fields)
	assert.Equal(t, reasonBadName, signer.ReasonOf(fmt.Errorf("wrapped: %w", e)))

	e = signer.Refused(signer.KindWrongState, reasonBadName, "", nil, "not now")
	assert.Equal(t, "not now", e.Msg)
	assert.Empty(t, e.Fields)

	w := signer.E(signer.KindConflict, "name %q taken", "a").With(reasonBadName)
	assert.Equal(t, reasonBadName, w.Reason)
	assert.Equal(t, `name "a" taken`, w.Msg)
	assert.Nil(t, (*signer.Error)(nil).With(reasonBadName))
	assert.Empty(t, signer.ReasonOf(errors.New("plain")))
	assert.Empty(t, signer.ReasonOf(nil))

	q := signer.QueryInvalid("limit", 0, "must be positive")
	assert.Equal(t, "query", q.Fields[0].Location)

	var f signer.FieldErrors
	assert.NoError(t, f.Err())
	f.Add("a", 1, "bad")
	f.Add("b", 2, "worse")
	fe := signer.AsError(f.Err())
	assert.Equal(t, signer.KindInvalid, fe.Kind)
	assert.Equal(t, "a: bad; b: worse", fe.Msg)
	assert.Len(t, fe.Fields, 2)

	assert.NoError(t, signer.StoreErr(nil, "CA"))
	for err, kind := range map[error]signer.Kind{
		store.ErrNotFound: signer.KindNotFound, store.ErrExists: signer.KindConflict,
		store.ErrQuotaExceeded: signer.KindQuotaExceeded, store.ErrVersionConflict: signer.KindConflict,
		store.ErrInvalid: signer.KindInvalid, store.ErrUnavailable: signer.KindUnavailable,
		context.DeadlineExceeded: signer.KindUnavailable, errors.New("disk on fire"): signer.KindInternal,
	} {
		assert.Equal(t, kind, signer.KindOf(signer.StoreErr(err, "CA")), "%v", err)
	}
	assert.Equal(t, "CA not found", signer.AsError(signer.StoreErr(store.ErrNotFound, "CA")).Msg)

	assert.Equal(t, "abc", signer.ShortID("abc"))
	assert.Equal(t, `"a b"`, signer.ShortID("a b"))
	assert.Equal(t, `"abc"`, signer.QuoteID("abc"))
}

func TestBytesCache(t *testing.T) {
	decodes := 0
	c := signer.NewBytesCache(func(b []byte) (int, error) {
		decodes++
		if len(b) == 0 {
			return 0, errors.New("empty")
		}
		return len(b), nil
	})
	for range 3 {
		n, err := c.Get([]byte("abcd"))
		require.NoError(t, err)
		assert.Equal(t, 4, n)
	}
	assert.Equal(t, 1, decodes, "identical bytes decode once")
	_, err := c.Get(nil)
	assert.Error(t, err)
	_, err = c.Get(nil)
	assert.Error(t, err)
	assert.Equal(t, 3, decodes, "errors are not cached")

	type doc struct{ A string }
	j := signer.JSONCache[doc]()
	d, err := j.Get([]byte(`{"A":"x"}`))
	require.NoError(t, err)
	assert.Equal(t, "x", d.A)
}
