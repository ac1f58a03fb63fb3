package signer

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// The core declares its own indexes (credentials by tenant, access tokens
// by client); every other index comes from a registered family.
// internal/families checks the full list the daemon opens the store with.
func TestStoreIndexes(t *testing.T) {
	own := []store.Index{{Kind: "apitoken", Field: "tenant"}, {Kind: "apitoken", Field: "client"},
		{Kind: "accesskey", Field: "tenant"}, {Kind: "oauthclient", Field: "tenant"}}
	assert.Equal(t, own, StoreIndexes(), "no family: the core's own indexes only")
	fam := Family{Name: "things", Indexes: []store.Index{{Kind: "thing", Field: "colour"}}}
	assert.Equal(t, append(own, store.Index{Kind: "thing", Field: "colour"}), StoreIndexes(fam))
}

// What a family declares is what the core reads: key owners in order,
// CA-expiry sources, quota resources.
func TestRegisteredFamilies(t *testing.T) {
	active := func(*store.Record) (time.Time, bool) { return time.Time{}, false }
	a := Family{Name: "a", KeyOwners: []KeyOwner{{RecordKind: "a_key"}},
		Quotas: []QuotaDefault{{Resource: "a_things", Default: 5}}}
	b := Family{Name: "b", KeyOwners: []KeyOwner{{RecordKind: "b_cert", Describe: "a b certificate"}},
		CAExpiry: []CAExpirySource{{Label: "b_root", RecordKind: "b_ca", Active: active}}}
	e := New(Options{Families: []Family{a, b}})
	t.Cleanup(func() { e.Close() })

	var owners []string
	for _, o := range e.KeyOwners() {
		owners = append(owners, o.RecordKind)
	}
	assert.Equal(t, []string{"a_key", "b_cert"}, owners, "registration order")
	var expiry []string
	for _, s := range e.caExpiry() {
		expiry = append(expiry, s.Label+"/"+s.RecordKind)
	}
	assert.Equal(t, []string{"b_root/b_ca"}, expiry)
	assert.Equal(t, []string{"a_things"}, e.QuotaResources())
	var names []string
	for _, f := range e.Families() {
		names = append(names, f.Name)
	}
	assert.Equal(t, []string{"a", "b"}, names)
}

func TestQuotaLimits(t *testing.T) {
	fixed := Family{Name: "fixed", Quotas: []QuotaDefault{{Resource: "fixed", Default: 3, Fixed: true}}}
	plain := Family{Name: "plain", Quotas: []QuotaDefault{{Resource: "keys", Default: 1000},
		{Resource: "certs", Default: 100000}}}
	e := New(Options{Quotas: map[string]int64{"keys": 7, "fixed": 50, "other": 4},
		Families: []Family{plain, fixed}})
	t.Cleanup(func() { e.Close() })
	for res, want := range map[string]int64{
		"keys":    7,      // configured
		"fixed":   3,      // fixed: configuration cannot raise it
		"certs":   100000, // default
		"other":   4,      // configured, declared by no family
		"unknown": -1,     // neither: unlimited
	} {
		assert.Equal(t, want, e.QuotaLimit(res), res)
	}
}

func TestQuotaFree(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	e := New(Options{Store: st, Families: []Family{{Name: "things", Quotas: []QuotaDefault{
		{Resource: "things", Default: 2}, {Resource: "free", Default: -1}}}}})
	t.Cleanup(func() { e.Close(); st.Close() })
	ctx := context.Background()

	limit, err := e.QuotaFree(ctx, "acme", "things")
	require.NoError(t, err)
	assert.Equal(t, int64(2), limit)
	require.NoError(t, st.ReserveQuota(ctx, "acme", "things", 2, -1))
	limit, err = e.QuotaFree(ctx, "acme", "things")
	assert.Equal(t, int64(2), limit)
	assert.Equal(t, KindQuotaExceeded, KindOf(err))
	assert.Equal(t, ReasonQuota, ReasonOf(err))
	_, err = e.QuotaFree(ctx, "globex", "things")
	assert.NoError(t, err, "quotas are per tenant")

	limit, err = e.QuotaFree(ctx, "acme", "free")
	assert.NoError(t, err)
	assert.Equal(t, int64(-1), limit)
}

func TestQuotaFreeIfFullReadsOnlyAfterAFullQuota(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	now := time.Unix(1_800_000_000, 0)
	e := New(Options{Store: st, Now: func() time.Time { return now },
		Families: []Family{{Name: "things", Quotas: []QuotaDefault{{Resource: "things", Default: 2}}}}})
	t.Cleanup(func() { e.Close(); st.Close() })
	ctx := context.Background()
	require.NoError(t, st.ReserveQuota(ctx, "acme", "things", 2, -1))

	limit, err := e.QuotaFreeIfFull(ctx, "acme", "things")
	require.NoError(t, err, "never found full: no read, the commit decides")
	assert.Equal(t, int64(2), limit)

	e.NoteQuotaFull("acme", "things") // a commit was refused
	_, err = e.QuotaFreeIfFull(ctx, "acme", "things")
	assert.Equal(t, KindQuotaExceeded, KindOf(err), "found full: read before the work")
	_, err = e.QuotaFreeIfFull(ctx, "globex", "things")
	assert.NoError(t, err, "per tenant")

	now = now.Add(quotaFullMemory - time.Millisecond)
	_, err = e.QuotaFreeIfFull(ctx, "acme", "things")
	assert.Equal(t, KindQuotaExceeded, KindOf(err), "each refusal renews the memory")
	now = now.Add(quotaFullMemory + time.Millisecond)
	_, err = e.QuotaFreeIfFull(ctx, "acme", "things")
	assert.NoError(t, err, "forgotten after quiet: the commit decides again")

	_, err = e.QuotaFree(ctx, "acme", "things")
	assert.Equal(t, KindQuotaExceeded, KindOf(err))
	require.NoError(t, st.ReleaseQuota(ctx, "acme", "things", 1))
	_, err = e.QuotaFreeIfFull(ctx, "acme", "things")
	assert.NoError(t, err, "QuotaFree's refusal is remembered; the read then finds room")
	require.NoError(t, st.ReserveQuota(ctx, "acme", "things", 1, -1))
	_, err = e.QuotaFreeIfFull(ctx, "acme", "things")
	assert.NoError(t, err, "room found: no more reads until the next refusal")
}

func TestFamiliesAreRegisteredOnce(t *testing.T) {
	assert.Panics(t, func() { New(Options{Families: []Family{{Name: "a"}, {Name: "a"}}}) })
	assert.Panics(t, func() { New(Options{Families: []Family{{Name: "core"}}}) }, "the core's own name")
	assert.Panics(t, func() {
		New(Options{Families: []Family{{Name: "a", Quotas: []QuotaDefault{{Resource: "q"}}},
			{Name: "b", Quotas: []QuotaDefault{{Resource: "q"}}}}})
	})
}

func TestRunJanitors(t *testing.T) {
	var rounds, failures atomic.Int32
	var got atomic.Pointer[Core]
	fam := Family{Name: "test", Janitors: []Janitor{
		{Name: "count", Run: func(ctx context.Context, c *Core) (int, error) {
			got.Store(c)
			rounds.Add(1)
			return 1, nil
		}},
		{Name: "fail", Run: func(ctx context.Context, c *Core) (int, error) {
			failures.Add(1)
			return 0, E(KindUnavailable, "not now")
		}},
	}}
	e := New(Options{Families: []Family{fam}})
	t.Cleanup(func() { e.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.RunJanitors(ctx, 5*time.Millisecond); close(done) }()
	require.Eventually(t, func() bool { return rounds.Load() >= 3 }, 5*time.Second, time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunJanitors did not stop with its context")
	}
	assert.Same(t, e, got.Load(), "a janitor runs with its core")
	assert.GreaterOrEqual(t, failures.Load(), int32(2), "a failing janitor is retried next round, and does not stop the others")
}
