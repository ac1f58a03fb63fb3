package redisstore

import "time"

// SetHoldFall shortens holdFall for a test and returns what restores it.
func SetHoldFall(d time.Duration) (restore func()) {
	old := holdFall
	holdFall = d
	return func() { holdFall = old }
}
