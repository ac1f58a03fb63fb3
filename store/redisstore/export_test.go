package redisstore

import "time"

// SetHoldFall shortens holdFall for the stores a test opens next and
// returns what restores it.
func SetHoldFall(d time.Duration) (restore func()) {
	old := holdFall.Swap(int64(d))
	return func() { holdFall.Store(old) }
}
