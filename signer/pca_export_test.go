package signer

import (
	"sync/atomic"
	"time"
)

// SetPCAClockForTest makes the engine's clock run offset ahead of the real
// one; the returned function moves the offset. Tests use it to let
// certificates expire and scheduled deletions fall due.
func SetPCAClockForTest(e *Engine) func(time.Duration) {
	var off atomic.Int64
	e.now = func() time.Time { return time.Now().Add(time.Duration(off.Load())) }
	return func(d time.Duration) { off.Store(int64(d)) }
}
