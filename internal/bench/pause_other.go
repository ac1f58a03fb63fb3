//go:build !linux

package bench

import "time"

// pause blocks for d.
func pause(d time.Duration) { time.Sleep(d) }
