package pca_test

import (
	"sync/atomic"
	"time"
)

// testClock is a core's clock (signer.Options.Now) that runs a set offset
// ahead of the real one; tests move it to let certificates expire and
// scheduled deletions fall due.
type testClock struct{ off atomic.Int64 }

func (c *testClock) now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// set moves the clock to d ahead of the real one.
func (c *testClock) set(d time.Duration) { c.off.Store(int64(d)) }
