// Package storeopen opens the store a configuration names, the same way
// for the daemon, the CLI, the bench and the chaos checks.
package storeopen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/families"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

// Open opens the configured store backend with every family's indexes.
func Open(ctx context.Context, cfg *config.Config) (store.Store, error) {
	switch cfg.Store.Backend {
	case "redis":
		conn, err := RedisConn(cfg)
		if err != nil {
			return nil, err
		}
		return redisstore.OpenConn(ctx, conn, RedisOptions(cfg))
	default:
		if err := os.MkdirAll(filepath.Dir(cfg.Store.BoltPath), 0o700); err != nil {
			return nil, fmt.Errorf("store directory: %w", err)
		}
		return boltstore.Open(cfg.Store.BoltPath, boltstore.Options{Indexes: families.Indexes()})
	}
}
