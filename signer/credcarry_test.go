package signer_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/redisstore"
)

// countedLookups is a Redis store (every capability kept) that counts
// its token lookups: a check carried by an event record makes none.
type countedLookups struct {
	*redisstore.Store
	lookups atomic.Int64
	// held, when set, holds the lookups until it is closed.
	held atomic.Pointer[chan struct{}]
}

func (c *countedLookups) GetByUniqueThrottled(ctx context.Context, kind, tenant, key string, t store.ThrottleRequest) (*store.Record, store.ThrottleResult, error) {
	c.lookups.Add(1)
	if h := c.held.Load(); h != nil {
		<-*h
	}
	return c.Store.GetByUniqueThrottled(ctx, kind, tenant, key, t)
}

func newCarriedCore(t *testing.T, now func() time.Time) (*signer.Core, *metrics.Metrics, *countedLookups) {
	t.Helper()
	return newCarriedCoreOn(t, testenv.StartRedis(t), now)
}

func newCarriedCoreOn(t *testing.T, r *testenv.Redis, now func() time.Time) (*signer.Core, *metrics.Metrics, *countedLookups) {
	t.Helper()
	st, err := redisstore.Open(context.Background(), r.URL(), redisstore.Options{Indexes: signer.StoreIndexes()})
	require.NoError(t, err)
	c := &countedLookups{Store: st}
	core, m := coreOn(t, c, st, now)
	return core, m, c
}

// carriedToken makes a token the core knows, its first use recorded (a
// record that no longer changes under the next checks), and checked in
// full since.
func carriedToken(t *testing.T, c *signer.Core, st store.Store, rate float64, burst int64) (string, *signer.Token) {
	t.Helper()
	secret, tok := knownToken(t, c, rate, burst)
	require.Eventually(t, func() bool {
		rec, err := st.Get(t.Context(), "apitoken", store.PlatformTenant, tok.ID)
		require.NoError(t, err)
		var stored signer.Token
		require.NoError(t, json.Unmarshal(rec.Data, &stored))
		return stored.LastUsed != nil
	}, 5*time.Second, 10*time.Millisecond, "the first use is recorded")
	_, check, _, err := c.AuthenticateTokenCarried(t.Context(), secret, rate, burst)
	require.NoError(t, err)
	require.NotNil(t, check)
	_, err = check.Wait() // nothing carried it: checked in full
	require.NoError(t, err)
	return secret, tok
}

func aheadCaller(t *testing.T, c *signer.Core, secret string, tok *signer.Token, rate float64, burst int64) (context.Context, *signer.CredentialCheck) {
	t.Helper()
	_, check, _, err := c.AuthenticateTokenCarried(t.Context(), secret, rate, burst)
	require.NoError(t, err)
	require.NotNil(t, check, "a known token runs beside its check")
	return signer.WithCaller(t.Context(), signer.Caller{Tenant: tok.Tenant, Principal: "token:" + tok.ID, Check: check}), check
}

func recorded(t *testing.T, c *signer.Core, tenant, op string) []string {
	t.Helper()
	evs, err := c.ListEvents(t.Context(), tenant, 0, 0)
	require.NoError(t, err)
	var got []string
	for _, e := range evs {
		if e.Operation == op {
			got = append(got, e.Resource+" "+e.Outcome)
		}
	}
	return got
}

// TestCheckCarriedByTheRecord: on Redis the check of a known token goes
// with its request's event record (Op.Done, Op.DoneIf): no lookup of its
// own, and the request counted against the token's limit in the same
// script. A token changed meanwhile (its roles, revoked) or over its
// limit fails that guard: nothing is written, the full check runs and
// its refusal is the answer.
func TestCheckCarriedByTheRecord(t *testing.T) {
	c, m, st := newCarriedCore(t, nil)
	ctx := t.Context()
	secret, tok := carriedToken(t, c, st, 100, 100)
	before := st.lookups.Load()

	cctx, check := aheadCaller(t, c, secret, tok, 100, 100)
	require.NoError(t, c.Start(cctx, "acme", "THING_SIGN").Done("thing-1", nil))
	_, err := check.Wait()
	require.NoError(t, err)
	assert.Equal(t, before, st.lookups.Load(), "no lookup: the check went with the record")
	assert.Equal(t, 1.0, checksAhead(t, m, "carried"))

	// With a record's own guard (a key known): both in one append; the
	// key changed meanwhile fails it, the credential still holds.
	thing := &store.Record{Kind: "thing", Tenant: "acme", ID: "k1", Data: []byte(`{}`)}
	require.NoError(t, c.Store().Create(ctx, thing, store.WriteOpts{}))
	cctx, _ = aheadCaller(t, c, secret, tok, 100, 100)
	held, err := c.Start(cctx, "acme", "THING_SIGN").DoneIf("k1", store.Guard{Kind: "thing", ID: "k1", Version: thing.Version})
	require.NoError(t, err)
	assert.True(t, held)
	assert.Equal(t, 2.0, checksAhead(t, m, "carried"))
	cctx, _ = aheadCaller(t, c, secret, tok, 100, 100)
	op := c.Start(cctx, "acme", "THING_SIGN")
	held, err = op.DoneIf("k1", store.Guard{Kind: "thing", ID: "k1", Version: thing.Version + 1})
	require.NoError(t, err)
	assert.False(t, held, "the key's record changed: the work is done again")
	assert.Equal(t, 2.0, checksAhead(t, m, "confirmed"), "the failed append's check was made in full (and carriedToken's)")
	require.NoError(t, op.Done("k1", nil))
	assert.Equal(t, before+1, st.lookups.Load())
	assert.Equal(t, []string{"thing-1 SUCCESS", "k1 SUCCESS", "k1 SUCCESS"}, recorded(t, c, "acme", "THING_SIGN"))

	// The token's roles changed through another replica: refused.
	setTokenRoles(t, st, tok.ID, signer.RoleAuditor)
	cctx, _ = aheadCaller(t, c, secret, tok, 100, 100)
	err = c.Start(cctx, "acme", "THING_SIGN").Done("thing-2", nil)
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
	assert.Equal(t, 1.0, checksAhead(t, m, "refused"))
	assert.Equal(t, 1.0, eventCount(t, m, "THING_SIGN", metrics.StageFail))
	_, check, _, err = c.AuthenticateTokenAhead(ctx, secret, 100, 100)
	require.NoError(t, err)
	assert.Nil(t, check, "refused: checked first again")

	// Revoked through another replica: the record is gone.
	secret2, tok2 := carriedToken(t, c, st, 100, 100)
	require.NoError(t, st.Delete(ctx, "apitoken", store.PlatformTenant, tok2.ID, store.WriteOpts{}))
	cctx, _ = aheadCaller(t, c, secret2, tok2, 100, 100)
	op = c.Start(cctx, "acme", "THING_SIGN")
	held, err = op.DoneIf("k1", store.Guard{Kind: "thing", ID: "k1", Version: thing.Version})
	assert.True(t, held)
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
	assert.Equal(t, 2.0, checksAhead(t, m, "refused"))
	assert.Equal(t, []string{"thing-1 SUCCESS", "k1 SUCCESS", "k1 SUCCESS"}, recorded(t, c, "acme", "THING_SIGN"),
		"nothing recorded for a refused credential")
}

// TestCarriedCheckRateLimit: the request over its token's limit fails
// the carried guard, is refused with the limiter's wait and recorded
// nowhere; a request is counted once, by the append or by the check.
func TestCarriedCheckRateLimit(t *testing.T) {
	c, m, st := newCarriedCore(t, nil)
	const rate, burst = 0.001, 4
	secret, tok := carriedToken(t, c, st, rate, burst) // two counted
	cctx, _ := aheadCaller(t, c, secret, tok, rate, burst)
	require.NoError(t, c.Start(cctx, "acme", "THING_SIGN").Done("a", nil))
	cctx, _ = aheadCaller(t, c, secret, tok, rate, burst)
	require.NoError(t, c.Start(cctx, "acme", "THING_SIGN").Done("b", nil))
	assert.Equal(t, 2.0, checksAhead(t, m, "carried"))

	cctx, check := aheadCaller(t, c, secret, tok, rate, burst)
	err := c.Start(cctx, "acme", "THING_SIGN").Done("c", nil)
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
	assert.Greater(t, signer.AsError(err).RetryAfter, 900*time.Second)
	lim, err := check.Wait()
	require.NoError(t, err)
	assert.Greater(t, lim.Wait, 900*time.Second)
	assert.Equal(t, 1.0, checksAhead(t, m, "throttled"))
	assert.Equal(t, []string{"a SUCCESS", "b SUCCESS"}, recorded(t, c, "acme", "THING_SIGN"))
}

// TestCarriedCheckFreshness: a token not checked in full for a while has
// its check run beside its request again (which also records its use).
func TestCarriedCheckFreshness(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, m, st := newCarriedCore(t, clock)
	secret, tok := carriedToken(t, c, st, 100, 100)

	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	n := st.lookups.Load()
	cctx, check := aheadCaller(t, c, secret, tok, 100, 100)
	_, err := check.Wait()
	require.NoError(t, err)
	assert.Equal(t, n+1, st.lookups.Load(), "checked in full beside the request")
	require.NoError(t, c.Start(cctx, "acme", "THING_SIGN").Done("x", nil))
	assert.Zero(t, checksAhead(t, m, "carried"))
}

// TestCheckCarriedByACreate: a Create (an issued certificate) carries the
// check as the event record does; a token revoked meanwhile writes
// nothing, and the Create answers the refusal.
func TestCheckCarriedByACreate(t *testing.T) {
	c, m, st := newCarriedCore(t, nil)
	ctx := t.Context()
	secret, tok := carriedToken(t, c, st, 100, 100)
	before := st.lookups.Load()

	cctx, check := aheadCaller(t, c, secret, tok, 100, 100)
	op := c.Start(cctx, "acme", "THING_CREATE")
	rec := &store.Record{Kind: "thing", Tenant: "acme", ID: "w1", Data: []byte(`{}`)}
	require.NoError(t, c.Store().Create(cctx, rec, op.WithEvent("w1", rec, store.WriteOpts{})))
	require.NoError(t, op.Done("w1", nil))
	_, err := check.Wait()
	require.NoError(t, err)
	assert.Equal(t, 1.0, checksAhead(t, m, "carried"))
	assert.Equal(t, before, st.lookups.Load(), "no lookup: the check went with the create")
	assert.Equal(t, []string{"w1 SUCCESS"}, recorded(t, c, "acme", "THING_CREATE"))

	require.NoError(t, st.Delete(ctx, "apitoken", store.PlatformTenant, tok.ID, store.WriteOpts{}))
	cctx, _ = aheadCaller(t, c, secret, tok, 100, 100)
	op = c.Start(cctx, "acme", "THING_CREATE")
	rec = &store.Record{Kind: "thing", Tenant: "acme", ID: "w2", Data: []byte(`{}`)}
	err = c.Store().Create(cctx, rec, op.WithEvent("w2", rec, store.WriteOpts{}))
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(op.Done("w2", err)))
	_, err = st.Get(ctx, "thing", "acme", "w2")
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.Equal(t, 1.0, checksAhead(t, m, "refused"))
	assert.Equal(t, []string{"w1 SUCCESS"}, recorded(t, c, "acme", "THING_CREATE"), "nothing recorded for a refused credential")
}

// TestCarriedCheckStoreDown: a write carrying the check whose store does
// not answer fails as unavailable, and the check, made when the answer
// waits for it, refuses as unavailable too; the token's next request is
// checked first (and the store still does not answer).
func TestCarriedCheckStoreDown(t *testing.T) {
	r := testenv.StartRedis(t)
	c, m, st := newCarriedCoreOn(t, r, nil)
	secret, tok := carriedToken(t, c, st, 100, 100)

	cctx, check := aheadCaller(t, c, secret, tok, 100, 100)
	r.Stop()
	err := c.Start(cctx, "acme", "THING_SIGN").Done("x", nil)
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
	_, err = check.Wait()
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
	assert.Zero(t, checksAhead(t, m, "carried"))
	assert.Equal(t, 1.0, checksAhead(t, m, "refused"))
	_, check, _, err = c.AuthenticateTokenCarried(t.Context(), secret, 100, 100)
	assert.Nil(t, check, "checked first after a refusal")
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
}

// TestKnownTokenCheckedByAGuard: on Redis a token checked in full lately
// is checked before its request's work by a guard alone (its record at
// the version then, and its rate-limit count, in one script): no lookup.
// Over its limit, changed or revoked through another replica, the guard
// fails and the full check decides; a token not checked in full for a
// while is checked in full again.
func TestKnownTokenCheckedByAGuard(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, m, st := newCarriedCore(t, clock)
	ctx := t.Context()
	const rate, burst = 0.001, 5
	secret, tok := carriedToken(t, c, st, rate, burst) // two requests counted
	n := st.lookups.Load()

	for i := 3; i <= burst; i++ {
		got, ans, err := c.AuthenticateTokenThrottled(ctx, secret, rate, burst)
		require.NoError(t, err, "request %d", i)
		assert.Zero(t, ans.Wait)
		assert.Equal(t, tok.ID, got.ID)
		assert.Equal(t, []string{signer.RoleSigner}, got.Roles)
	}
	assert.Equal(t, n, st.lookups.Load(), "no lookup: checked by a guard")
	assert.Equal(t, 3.0, guardChecks(t, m, "held"))
	got, err := c.AuthenticateToken(ctx, secret) // no rate limit: nothing counted
	require.NoError(t, err)
	assert.Equal(t, tok.ID, got.ID)
	assert.Equal(t, 4.0, guardChecks(t, m, "held"))
	_, ans, err := c.AuthenticateTokenThrottled(ctx, secret, rate, burst)
	require.NoError(t, err)
	assert.Greater(t, ans.Wait, 900*time.Second, "over the limit: the full check answers with the wait")
	assert.Equal(t, n+1, st.lookups.Load())
	assert.Equal(t, 1.0, guardChecks(t, m, "failed"))

	// Changed through another replica (its roles): the full check reads
	// it afresh, and the guard holds again at the new version.
	secret2, tok2 := carriedToken(t, c, st, 100, 100)
	setTokenRoles(t, st, tok2.ID, signer.RoleAuditor)
	got, _, err = c.AuthenticateTokenThrottled(ctx, secret2, 100, 100)
	require.NoError(t, err)
	assert.Equal(t, []string{signer.RoleAuditor}, got.Roles)
	assert.Equal(t, 2.0, guardChecks(t, m, "failed"))
	held := guardChecks(t, m, "held")
	got, _, err = c.AuthenticateTokenThrottled(ctx, secret2, 100, 100)
	require.NoError(t, err)
	assert.Equal(t, []string{signer.RoleAuditor}, got.Roles)
	assert.Equal(t, held+1, guardChecks(t, m, "held"))
	n = st.lookups.Load()
	hold := make(chan struct{})
	st.held.Store(&hold)
	_, check, _, err := c.AuthenticateTokenAhead(ctx, secret2, 100, 100)
	require.NoError(t, err)
	require.NotNil(t, check, "one request at a time runs beside its check")
	got, check2, _, err := c.AuthenticateTokenAhead(ctx, secret2, 100, 100)
	require.NoError(t, err)
	assert.Nil(t, check2, "the second is checked first")
	assert.Equal(t, tok2.ID, got.ID)
	assert.Equal(t, held+2, guardChecks(t, m, "held"), "by the guard")
	st.held.Store(nil)
	close(hold)
	_, err = check.Wait()
	require.NoError(t, err)
	assert.Equal(t, n+1, st.lookups.Load(), "the first's check beside it was made in full")

	// Not checked in full for a minute: in full again.
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	n = st.lookups.Load()
	_, _, err = c.AuthenticateTokenThrottled(ctx, secret2, 100, 100)
	require.NoError(t, err)
	assert.Equal(t, n+1, st.lookups.Load())
	assert.Equal(t, held+2, guardChecks(t, m, "held"))

	// Revoked through another replica: refused.
	require.NoError(t, st.Delete(ctx, "apitoken", store.PlatformTenant, tok2.ID, store.WriteOpts{}))
	_, _, err = c.AuthenticateTokenThrottled(ctx, secret2, 100, 100)
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
	assert.Equal(t, 3.0, guardChecks(t, m, "failed"))
	_, _, err = c.AuthenticateTokenThrottled(ctx, secret2, 100, 100)
	assert.Equal(t, signer.KindUnauthenticated, signer.KindOf(err))
	assert.Equal(t, 3.0, guardChecks(t, m, "failed"), "a refused token is checked in full from then on")
}

// TestKnownTokenGuardStoreDown: a known token's guard whose store does not
// answer fails, and the full check it leads to answers unavailable, with
// or without a rate limit.
func TestKnownTokenGuardStoreDown(t *testing.T) {
	r := testenv.StartRedis(t)
	c, m, st := newCarriedCoreOn(t, r, nil)
	secret, _ := carriedToken(t, c, st, 100, 100)
	_, _, err := c.AuthenticateTokenThrottled(t.Context(), secret, 100, 100)
	require.NoError(t, err)
	require.Equal(t, 1.0, guardChecks(t, m, "held"))

	r.Stop()
	_, _, err = c.AuthenticateTokenThrottled(t.Context(), secret, 100, 100)
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err))
	assert.Equal(t, 1.0, guardChecks(t, m, "failed"))
	assert.NotContains(t, err.Error(), secret)
	_, err = c.AuthenticateToken(t.Context(), secret)
	assert.Equal(t, signer.KindUnavailable, signer.KindOf(err), "without a rate limit too")
	assert.Equal(t, 2.0, guardChecks(t, m, "failed"))
}
