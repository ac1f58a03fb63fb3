package storeopen

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/store/redisstore"
)

// store.redis.wait_replicas: unset leaves the store's default, 0 turns
// waiting off, n asks for n replicas.
func TestRedisOptionsWait(t *testing.T) {
	var cfg config.Config
	assert.Zero(t, RedisOptions(&cfg).WaitReplicas)
	zero, two := 0, 2
	cfg.Store.Redis.WaitReplicas = &zero
	assert.Equal(t, redisstore.NoWait, RedisOptions(&cfg).WaitReplicas)
	cfg.Store.Redis.WaitReplicas = &two
	cfg.Store.Redis.WaitTimeout = time.Second
	o := RedisOptions(&cfg)
	assert.Equal(t, 2, o.WaitReplicas)
	assert.Equal(t, time.Second, o.WaitTimeout)
	assert.NotEmpty(t, o.Indexes)
}
