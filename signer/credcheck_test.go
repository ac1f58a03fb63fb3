package signer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// heldLookups holds the store's token lookups while held is open, so
// that a check can be caught under way.
type heldLookups struct {
	store.Store
	mu       sync.Mutex
	held     chan struct{}
	fail     error // every lookup's answer, when set
	limitErr error // the rate limiter's failure, when set
}

func (h *heldLookups) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = make(chan struct{})
}

func (h *heldLookups) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.held)
	h.held = nil
}

// failing sets what the next lookups fail with (nil: nothing).
func (h *heldLookups) failing(lookup, limiter error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail, h.limitErr = lookup, limiter
}

func (h *heldLookups) GetByUniqueThrottled(ctx context.Context, kind, tenant, key string, t store.ThrottleRequest) (*store.Record, store.ThrottleResult, error) {
	h.mu.Lock()
	held, fail, limitErr := h.held, h.fail, h.limitErr
	h.mu.Unlock()
	if held != nil {
		<-held
	}
	if fail != nil {
		return nil, store.ThrottleResult{Err: fail}, fail
	}
	rec, tr, err := h.Store.GetByUniqueThrottled(ctx, kind, tenant, key, t)
	if limitErr != nil {
		tr = store.ThrottleResult{Err: limitErr}
	}
	return rec, tr, err
}

func newCheckedCore(t *testing.T, now func() time.Time) (*signer.Core, *metrics.Metrics, *heldLookups) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: signer.StoreIndexes()})
	require.NoError(t, err)
	h := &heldLookups{Store: st}
	c, m := coreOn(t, h, st, now)
	return c, m, h
}

// coreOn is a core on st with metrics of its own; it closes the core,
// then the store under st.
func coreOn(t *testing.T, st store.Store, under io.Closer, now func() time.Time) (*signer.Core, *metrics.Metrics) {
	t.Helper()
	m := metrics.New("test")
	c := signer.New(signer.Options{Store: st, Metrics: m, Now: now})
	t.Cleanup(func() { c.Close(); under.Close() })
	return c, m
}

func checksAhead(t *testing.T, m *metrics.Metrics, outcome string) float64 {
	var d dto.Metric
	require.NoError(t, m.CredentialChecksAhead.WithLabelValues(outcome).Write(&d))
	return d.GetCounter().GetValue()
}

func guardChecks(t *testing.T, m *metrics.Metrics, outcome string) float64 {
	var d dto.Metric
	require.NoError(t, m.CredentialGuardChecks.WithLabelValues(outcome).Write(&d))
	return d.GetCounter().GetValue()
}

// knownToken makes a token and checks it once, so that the core knows
// it (its next request may run beside its check).
func knownToken(t *testing.T, c *signer.Core, rate float64, burst int64) (string, *signer.Token) {
	t.Helper()
	secret, tok, err := c.CreateToken(opsCtx, "acme", []string{signer.RoleSigner}, nil)
	require.NoError(t, err)
	_, check, _, err := c.AuthenticateTokenAhead(t.Context(), secret, rate, burst)
	require.NoError(t, err)
	require.Nil(t, check, "a token not seen yet is checked first")
	return secret, tok
}

var opsCtx = signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})

// TestTokenCheckAhead: a token checked and found valid has its next
// request's check run beside it, one request at a time; a check that
// finds the token gone refuses, and the token's next request is checked
// first again.
func TestTokenCheckAhead(t *testing.T) {
	c, m, h := newCheckedCore(t, nil)
	secret, tok, err := c.CreateToken(opsCtx, "acme", []string{signer.RoleSigner}, nil)
	require.NoError(t, err)
	ctx := t.Context()

	got, check, _, err := c.AuthenticateTokenAhead(ctx, secret, 100, 100)
	require.NoError(t, err)
	require.Nil(t, check, "a token not seen yet is checked first")
	assert.Equal(t, tok.ID, got.ID)

	h.hold()
	got, check, _, err = c.AuthenticateTokenAhead(ctx, secret, 100, 100)
	require.NoError(t, err)
	require.NotNil(t, check, "a token found valid: its check runs beside")
	assert.Equal(t, "acme", got.Tenant)
	assert.Equal(t, []string{signer.RoleSigner}, got.Roles)
	type answer struct {
		check *signer.CredentialCheck
		err   error
	}
	third := make(chan answer)
	go func() {
		_, chk, _, err := c.AuthenticateTokenAhead(ctx, secret, 100, 100)
		third <- answer{chk, err}
	}()
	select {
	case <-third:
		t.Fatal("a second request of the token while one runs beside its check must be checked first")
	case <-time.After(50 * time.Millisecond):
	}
	h.release()
	a := <-third
	require.NoError(t, a.err)
	assert.Nil(t, a.check)
	lim, err := check.Wait()
	require.NoError(t, err)
	assert.Zero(t, lim.Wait)
	assert.Equal(t, 1.0, checksAhead(t, m, "confirmed"))

	// The record changed elsewhere (its roles): the request ran as a
	// caller the store no longer holds.
	setTokenRoles(t, h.Store, tok.ID, signer.RoleAuditor)
	_, check, _, err = c.AuthenticateTokenAhead(ctx, secret, 100, 100)
	require.NoError(t, err)
	require.NotNil(t, check)
	_, err = check.Wait()
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
	got, check, _, err = c.AuthenticateTokenAhead(ctx, secret, 100, 100)
	require.NoError(t, err)
	require.Nil(t, check, "checked first after a refusal")
	assert.Equal(t, []string{signer.RoleAuditor}, got.Roles)

	// Revoked elsewhere (another replica): the record is gone.
	require.NoError(t, h.Store.Delete(ctx, "apitoken", store.PlatformTenant, tok.ID, store.WriteOpts{}))
	_, check, _, err = c.AuthenticateTokenAhead(ctx, secret, 100, 100)
	require.NoError(t, err)
	require.NotNil(t, check)
	_, err = check.Wait()
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
	assert.Equal(t, 2.0, checksAhead(t, m, "refused"))
	_, check, _, err = c.AuthenticateTokenAhead(ctx, secret, 100, 100)
	assert.Nil(t, check, "refused: checked first again")
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
}

// TestWorkWaitsForTheCheck: under a caller whose check runs beside, every
// write of the engine's store and the end of an operation wait for the
// check; a refusal writes nothing, records no event and counts a FAIL.
func TestWorkWaitsForTheCheck(t *testing.T) {
	c, m, _ := newCheckedCore(t, nil)
	secret, tok := knownToken(t, c, 1, 2)
	_, check, _, err := c.AuthenticateTokenAhead(t.Context(), secret, 1, 2)
	require.NoError(t, err)
	require.NotNil(t, check)
	ctx := signer.WithCaller(t.Context(), signer.Caller{Tenant: "acme", Principal: "token:" + tok.ID, Check: check})
	require.NoError(t, c.Start(ctx, "acme", "THING_CREATE").Done("thing-1", nil), "confirmed: the operation ends as usual")

	// The third request of a burst of two is over the limit.
	_, check, _, err = c.AuthenticateTokenAhead(t.Context(), secret, 1, 2)
	require.NoError(t, err)
	require.NotNil(t, check)
	ctx = signer.WithCaller(t.Context(), signer.Caller{Tenant: "acme", Principal: "token:" + tok.ID, Check: check})
	err = c.Store().Create(ctx, &store.Record{Kind: "thing", Tenant: "acme", ID: "thing-2", Data: []byte(`{}`)}, store.WriteOpts{})
	require.Error(t, err)
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
	assert.Positive(t, signer.AsError(err).RetryAfter)
	_, err = c.Store().Get(t.Context(), "thing", "acme", "thing-2")
	assert.ErrorIs(t, err, store.ErrNotFound, "a refused check writes nothing")
	op := c.Start(ctx, "acme", "THING_CREATE")
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(op.Done("thing-2", nil)))
	assert.Equal(t, 1.0, checksAhead(t, m, "throttled"))
	assert.Equal(t, 1.0, eventCount(t, m, "THING_CREATE", metrics.StageFail))
	evs, err := c.ListEvents(t.Context(), "acme", 0, 10)
	require.NoError(t, err)
	var things []string
	for _, e := range evs {
		if e.Operation == "THING_CREATE" {
			things = append(things, e.Resource+" "+e.Outcome)
		}
	}
	assert.Equal(t, []string{"thing-1 SUCCESS"}, things, "only the confirmed operation is recorded")
}

// TestTokenCheckAheadForgets: a token revoked through this process, or
// past its expiry, is checked first.
func TestTokenCheckAheadForgets(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, _, _ := newCheckedCore(t, clock)
	exp := now.Add(time.Hour)
	expiring, _, err := c.CreateToken(opsCtx, "acme", []string{signer.RoleSigner}, &exp)
	require.NoError(t, err)
	kept, _, err := c.CreateToken(opsCtx, "acme", []string{signer.RoleSigner}, nil)
	require.NoError(t, err)
	_, other, err := c.CreateToken(opsCtx, "acme", []string{signer.RoleSigner}, nil)
	require.NoError(t, err)
	for _, s := range []string{expiring, kept} {
		_, _, _, err := c.AuthenticateTokenAhead(t.Context(), s, 0, 0)
		require.NoError(t, err)
	}

	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	_, check, _, err := c.AuthenticateTokenAhead(t.Context(), expiring, 0, 0)
	assert.Nil(t, check, "past its expiry: checked first")
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))

	require.NoError(t, c.RevokeToken(opsCtx, other.ID))
	_, check, _, err = c.AuthenticateTokenAhead(t.Context(), kept, 0, 0)
	require.NoError(t, err)
	assert.Nil(t, check, "a revocation through this process: every token is checked first")
}

// TestTokenCheckAheadStoreDown: a check beside the work whose store does
// not answer refuses as the check alone would (unavailable), and the
// token's next request is checked first.
func TestTokenCheckAheadStoreDown(t *testing.T) {
	c, m, h := newCheckedCore(t, nil)
	secret, _ := knownToken(t, c, 100, 100)

	h.failing(fmt.Errorf("%w: connection refused", store.ErrUnavailable), nil)
	_, check, _, err := c.AuthenticateTokenAhead(t.Context(), secret, 100, 100)
	require.NoError(t, err)
	require.NotNil(t, check)
	ctx := signer.WithCaller(t.Context(), signer.Caller{Tenant: "acme", Check: check})
	err = signer.AwaitCredential(ctx)
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
	assert.NotContains(t, err.Error(), secret)
	assert.Equal(t, 1.0, checksAhead(t, m, "refused"))
	_, check, _, err = c.AuthenticateTokenAhead(t.Context(), secret, 100, 100)
	assert.Nil(t, check, "checked first after a refusal")
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))

	// The token found, the rate limiter failing: admitted, as when checked
	// first, and the limiter's failure told to the caller.
	limiterDown := fmt.Errorf("%w: limiter", store.ErrUnavailable)
	h.failing(nil, limiterDown)
	_, check, _, err = c.AuthenticateTokenAhead(t.Context(), secret, 100, 100)
	require.NoError(t, err)
	require.Nil(t, check, "still checked first: the limiter did not admit it")
	h.failing(nil, nil)
	_, _, _, err = c.AuthenticateTokenAhead(t.Context(), secret, 100, 100)
	require.NoError(t, err)
	h.failing(nil, limiterDown)
	_, check, _, err = c.AuthenticateTokenAhead(t.Context(), secret, 100, 100)
	require.NoError(t, err)
	require.NotNil(t, check)
	lim, err := check.Wait()
	require.NoError(t, err)
	assert.Error(t, lim.Err)
	assert.NoError(t, signer.AwaitCredential(signer.WithCaller(t.Context(), signer.Caller{Tenant: "acme", Check: check})))
	assert.Equal(t, 1.0, checksAhead(t, m, "confirmed"))
}

// setTokenRoles changes a token's roles in the store, as another replica
// would.
func setTokenRoles(t *testing.T, st store.Store, id string, roles ...string) {
	t.Helper()
	rec, err := st.Get(t.Context(), "apitoken", store.PlatformTenant, id)
	require.NoError(t, err)
	var stored map[string]any
	require.NoError(t, json.Unmarshal(rec.Data, &stored))
	stored["roles"] = roles
	rec.Data, err = json.Marshal(stored)
	require.NoError(t, err)
	require.NoError(t, st.Update(t.Context(), rec, store.WriteOpts{}))
}

// boltLookups is a bolt store (every capability kept) that counts its
// token lookups.
type boltLookups struct {
	*boltstore.Store
	lookups atomic.Int64
}

func (b *boltLookups) GetByUniqueThrottled(ctx context.Context, kind, tenant, key string, t store.ThrottleRequest) (*store.Record, store.ThrottleResult, error) {
	b.lookups.Add(1)
	return b.Store.GetByUniqueThrottled(ctx, kind, tenant, key, t)
}

// TestKnownTokenCheckedByAGuardOnBolt: on bolt too a token checked in
// full lately is checked by a guard alone (its record's version read in
// the file, its count in memory); changed, over its limit or revoked, it
// is checked in full.
func TestKnownTokenCheckedByAGuardOnBolt(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: signer.StoreIndexes()})
	require.NoError(t, err)
	bl := &boltLookups{Store: st}
	c, m := coreOn(t, bl, st, nil)
	ctx := t.Context()
	const rate, burst = 0.001, 4
	secret, tok := knownToken(t, c, rate, burst) // one counted
	require.Eventually(t, func() bool {
		rec, err := st.Get(ctx, "apitoken", store.PlatformTenant, tok.ID)
		require.NoError(t, err)
		var stored signer.Token
		require.NoError(t, json.Unmarshal(rec.Data, &stored))
		return stored.LastUsed != nil
	}, 5*time.Second, 10*time.Millisecond, "the first use is recorded")
	_, _, err = c.AuthenticateTokenThrottled(ctx, secret, rate, burst) // two: in full, the record changed
	require.NoError(t, err)
	assert.Equal(t, 1.0, guardChecks(t, m, "failed"))
	n := bl.lookups.Load()
	for range 2 {
		got, ans, err := c.AuthenticateTokenThrottled(ctx, secret, rate, burst)
		require.NoError(t, err)
		assert.Zero(t, ans.Wait)
		assert.Equal(t, tok.ID, got.ID)
	}
	assert.Equal(t, n, bl.lookups.Load(), "no lookup")
	assert.Equal(t, 2.0, guardChecks(t, m, "held"))
	_, ans, err := c.AuthenticateTokenThrottled(ctx, secret, rate, burst)
	require.NoError(t, err)
	assert.Greater(t, ans.Wait, 900*time.Second, "over the limit: refused by the full check")
	assert.Equal(t, 2.0, guardChecks(t, m, "failed"))

	setTokenRoles(t, st, tok.ID, signer.RoleAuditor)
	got, err := c.AuthenticateToken(ctx, secret)
	require.NoError(t, err)
	assert.Equal(t, []string{signer.RoleAuditor}, got.Roles, "changed: read afresh")
	got, err = c.AuthenticateToken(ctx, secret)
	require.NoError(t, err)
	assert.Equal(t, []string{signer.RoleAuditor}, got.Roles)
	assert.Equal(t, 3.0, guardChecks(t, m, "held"))
	require.NoError(t, st.Delete(ctx, "apitoken", store.PlatformTenant, tok.ID, store.WriteOpts{}))
	_, err = c.AuthenticateToken(ctx, secret)
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
}
