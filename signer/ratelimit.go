package signer

import (
	"context"
	"time"
)

// Throttle counts one request of principal against its rate limit (rate
// per second, bursts of burst) and answers how long the caller must wait,
// 0 when the request may go ahead. The counter lives in the store, so
// replicas sharing Redis share each principal's limit.
func (e *Core) Throttle(ctx context.Context, principal string, rate float64, burst int64) (time.Duration, error) {
	d, err := e.store.Throttle(ctx, "principal:"+principal, rate, burst)
	if err != nil {
		return 0, StoreErr(err, "rate limit")
	}
	return d, nil
}
