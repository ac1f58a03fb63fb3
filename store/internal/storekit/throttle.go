package storekit

import (
	"math"
	"sync"
	"time"
)

// Throttler is an in-process generic cell rate limiter, for a store that
// only one process opens. For each key it keeps the theoretical arrival
// time (TAT) of the next request: each admitted request pushes it one
// emission interval (1/rate) later, and a request is admitted while the
// TAT is at most burst intervals ahead of now.
type Throttler struct {
	mu    sync.Mutex
	tat   map[string]time.Time
	calls int
}

// NewThrottler makes an empty limiter.
func NewThrottler() *Throttler { return &Throttler{tat: map[string]time.Time{}} }

// Take counts one request of key at now; it returns 0 when admitted, else
// the wait until a request would be.
func (t *Throttler) Take(key string, rate float64, burst int64, now time.Time) time.Duration {
	interval := Interval(rate)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if t.calls%1024 == 0 {
		// Keys whose TAT has passed are back to a full burst, the same as
		// absent ones: drop them so that the map holds only recent callers.
		for k, v := range t.tat {
			if v.Before(now) {
				delete(t.tat, k)
			}
		}
	}
	tat, ok := t.tat[key]
	if !ok || tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	allowAt := next.Add(-time.Duration(burst) * interval)
	if allowAt.After(now) {
		return allowAt.Sub(now)
	}
	t.tat[key] = next
	return 0
}

// Interval is the emission interval of rate requests per second, at least
// one nanosecond.
func Interval(rate float64) time.Duration {
	return time.Duration(math.Max(1, math.Round(float64(time.Second)/rate)))
}
