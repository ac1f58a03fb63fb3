package signer

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store/boltstore"
)

// Access tokens minted for OAuth clients expire and are purged by the
// core's janitor; tokens an operator made are never purged by it.
func TestExpiredAccessTokensArePurged(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: StoreIndexes()})
	require.NoError(t, err)
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := New(Options{Store: st, Now: clock})
	t.Cleanup(func() { c.Close(); st.Close() })
	ctx := WithCaller(context.Background(), Caller{Principal: "ops:test"})

	secret, cl, err := c.CreateOAuthClient(ctx, "acme", []string{RoleSigner}, "")
	require.NoError(t, err)
	access, tok, err := c.IssueAccessToken(ctx, cl.ID, secret, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, cl.ID, tok.Client)
	opSecret, _, err := c.CreateToken(ctx, "acme", []string{RoleSigner}, nil)
	require.NoError(t, err)

	n, err := purgeExpiredAccessTokens(ctx, c)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing expired yet")
	_, err = c.AuthenticateToken(ctx, access)
	require.NoError(t, err)

	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	_, err = c.AuthenticateToken(ctx, access)
	assert.Equal(t, KindUnauthenticated, KindOf(err), "expired at its hour")
	n, err = purgeExpiredAccessTokens(ctx, c)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	toks, err := c.ListTokens(ctx, "acme")
	require.NoError(t, err)
	require.Len(t, toks, 1, "the operator's token stays")
	_, err = c.AuthenticateToken(ctx, opSecret)
	require.NoError(t, err)
}
