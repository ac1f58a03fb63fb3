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

// The indexes of the core and of the families still in package signer
// (the PCA family's are its own, signer/pca); internal/families checks
// that every process declares the indexes declared before families
// registered them: a store opened without one drops it. (The store reads
// them as a set; the order is not kept.)
func TestStoreIndexesUnchanged(t *testing.T) {
	before := []store.Index{
		{Kind: "apitoken", Field: "tenant"},
		{Kind: "dts_root_index", Field: "crl_due"},
	}
	assert.ElementsMatch(t, before, StoreIndexes())
	assert.ElementsMatch(t, before, StoreIndexes(BuiltinFamilies()...))
	assert.Equal(t, []store.Index{{Kind: "apitoken", Field: "tenant"}}, StoreIndexes([]Family{}...),
		"no family: the core's own index only")
}

// The builtin families declare what the family files still declare
// themselves, so that nothing is lost while both exist.
func TestBuiltinFamiliesMatchTheFamilyFiles(t *testing.T) {
	e := New(Options{})
	t.Cleanup(func() { e.Close() })

	var owners []string
	for _, o := range e.KeyOwners() {
		owners = append(owners, o.RecordKind)
	}
	assert.Equal(t, keyOwnerKinds, owners, "the keys API's resolution order")

	var declared, registered []string
	for _, s := range caExpirySources {
		declared = append(declared, s.label+"/"+s.kind)
	}
	for _, s := range e.caExpiry() {
		registered = append(registered, s.Label+"/"+s.RecordKind)
	}
	assert.ElementsMatch(t, declared, registered)
	assert.Len(t, registered, 1, "dts_root")

	assert.ElementsMatch(t, []string{QuotaKeys, QuotaDTSRootCAs, QuotaDTSSigners, QuotaAPIGCerts},
		e.QuotaResources())
	assert.ElementsMatch(t, e.QuotaResources(), QuotaResources())

	var names []string
	for _, f := range e.Families() {
		names = append(names, f.Name)
	}
	assert.Equal(t, []string{"keys", "apig", "dts", "admins"}, names)
	assert.ElementsMatch(t, StoreIndexes(), StoreIndexes(e.Families()...))
}

func TestQuotaLimits(t *testing.T) {
	e := New(Options{Quotas: map[string]int64{QuotaKeys: 7, QuotaDTSRootCAs: 50, "other": 4}})
	t.Cleanup(func() { e.Close() })
	for res, want := range map[string]int64{
		QuotaKeys:       7,    // configured
		QuotaDTSRootCAs: 3,    // fixed: configuration cannot raise it
		QuotaDTSSigners: 5,    // fixed
		QuotaAPIGCerts:  1000, // default
		"other":         4,    // configured, declared by no family
		"unknown":       -1,   // neither: unlimited
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
