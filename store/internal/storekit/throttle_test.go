package storekit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestThrottlerRefills walks the limiter on a clock of its own: a burst,
// then one request per interval, and a full burst again after a pause.
func TestThrottlerRefills(t *testing.T) {
	th := NewThrottler()
	now := time.Unix(1_000_000, 0)
	const rate, burst = 10, 3 // an interval of 100ms
	for i := 0; i < burst; i++ {
		assert.Zero(t, th.Take("k", rate, burst, now), "burst request %d", i+1)
	}
	assert.Equal(t, 100*time.Millisecond, th.Take("k", rate, burst, now))
	assert.Equal(t, 40*time.Millisecond, th.Take("k", rate, burst, now.Add(60*time.Millisecond)))
	now = now.Add(100 * time.Millisecond)
	assert.Zero(t, th.Take("k", rate, burst, now), "one interval earns one request")
	assert.NotZero(t, th.Take("k", rate, burst, now))
	now = now.Add(time.Hour)
	for i := 0; i < burst; i++ {
		assert.Zero(t, th.Take("k", rate, burst, now), "after a pause the burst is whole again (%d)", i+1)
	}
	assert.NotZero(t, th.Take("k", rate, burst, now), "but never more than the burst")
}

// TestThrottlerForgetsIdleKeys: the map does not grow with every caller
// ever seen.
func TestThrottlerForgetsIdleKeys(t *testing.T) {
	th := NewThrottler()
	now := time.Unix(1_000_000, 0)
	for i := 0; i < 5000; i++ {
		th.Take(string(rune('a'+i%26))+time.Duration(i).String(), 1000, 1, now.Add(time.Duration(i)*time.Second))
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	assert.Less(t, len(th.tat), 1100)
}
