package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// The sentinel topology serves writes on its master, replicates them, and
// promotes a replica when the master is killed.
func TestSentinelTopologyFailsOver(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t)
	ctx := context.Background()
	old, err := s.MasterAddr()
	require.NoError(t, err)
	assert.Equal(t, s.Data[0].Addr, old)
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.SentinelAddrs()})
	defer c.Close()
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	n, err := c.Wait(ctx, 2, time.Second).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)

	start := time.Now()
	s.KillMaster(t)
	now := s.WaitFailover(t, old, testenv.FailoverWait)
	t.Logf("failover to %s in %s", now, time.Since(start).Round(time.Millisecond))
	assert.NotEqual(t, old, now)
	require.Eventually(t, func() bool { return c.Get(ctx, "k").Val() == "v" }, 10*time.Second, 50*time.Millisecond)
}

// The cluster has three masters with slots and a replica each; killing a
// master promotes its replica.
func TestClusterTopologyPromotesReplica(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t)
	masters, err := c.Masters()
	require.NoError(t, err)
	require.Len(t, masters, 3)
	victim := masters[0]
	slots, err := c.SlotsOf(victim)
	require.NoError(t, err)

	start := time.Now()
	c.KillMaster(t, victim)
	now := c.WaitPromotion(t, victim, slots, testenv.FailoverWait)
	t.Logf("promotion of %s in %s", now, time.Since(start).Round(time.Millisecond))
	assert.NotEqual(t, victim, now)
}

// With TLS and ACLs, the servers refuse clients without the password and
// serve those with it.
func TestSecuredTopologies(t *testing.T) {
	t.Parallel()
	opts := testenv.HAOptions{TLS: true, ACL: true}
	for name, start := range map[string]func() (testenv.RedisAuth, []string){
		"sentinel": func() (testenv.RedisAuth, []string) {
			s := testenv.StartSentinel(t, opts)
			return s.Auth, []string{s.Data[0].Addr}
		},
		"cluster": func() (testenv.RedisAuth, []string) {
			c := testenv.StartCluster(t, opts)
			return c.Auth, c.Addrs()
		},
	} {
		t.Run(name, func(t *testing.T) {
			auth, addrs := start()
			ctx := context.Background()
			anon := redis.NewClient(&redis.Options{Addr: addrs[0], TLSConfig: auth.TLSConfig, MaxRetries: -1})
			defer anon.Close()
			assert.Error(t, anon.Ping(ctx).Err())
			ok := redis.NewClient(&redis.Options{Addr: addrs[0], TLSConfig: auth.TLSConfig, MaxRetries: -1,
				Username: auth.Username, Password: auth.Password})
			defer ok.Close()
			assert.NoError(t, ok.Ping(ctx).Err())
		})
	}
}
