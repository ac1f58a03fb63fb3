package signer_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer"
)

// A replica that crashed mid-creation and restarts under the same instance
// name settles its own leftover at once, grace or not; another replica's
// recent leftover waits out the grace (it may be an operation in flight),
// and so does the instance's own intent once it serves (periodic runs).
func TestReconcileAtStartSettlesOwnIntentsAtOnce(t *testing.T) {
	h, st := openTokenAndStore(t)
	ctx := context.Background()
	const grace = time.Hour
	engine := func(instance string) *signer.Core {
		// The HSM is passed to Reconcile, not installed: closing these
		// engines must not close the shared handle.
		return signer.New(signer.Options{Store: st, Instance: instance})
	}
	gen := func(instance string) string {
		e := signer.New(signer.Options{Store: st, HSM: h, Instance: instance})
		nk, err := e.GenerateKey(ctx, "t1", "thing", "r-"+instance, hsm.EC256)
		require.NoError(t, err)
		return nk.ID
	}
	mine, theirs := gen("host/10.0.0.1:8080"), gen("host/10.0.0.2:8080")

	rep, err := engine("").ReconcileAtStart(ctx, h, grace)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Skipped, "without an instance name every recent intent waits")

	again := engine("host/10.0.0.1:8080")
	rep, err = again.Reconcile(ctx, h, grace)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Skipped, "a serving replica leaves even its own recent intents alone")

	rep, err = again.ReconcileAtStart(ctx, h, grace)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Intents)
	assert.Equal(t, 1, rep.Destroyed)
	assert.Equal(t, 1, rep.Skipped)
	assert.False(t, exists(t, h, mine), "the restarted replica's uncommitted key is destroyed")
	assert.True(t, exists(t, h, theirs), "another replica's recent key is left")

	rep, err = engine("host/10.0.0.3:8080").ReconcileAtStart(ctx, h, 0)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Destroyed, "past the grace any replica settles it")
	assert.False(t, exists(t, h, theirs))
}
