package bench

import (
	"syscall"
	"time"
)

// pause blocks the calling thread for d with nanosleep, which keeps to
// tens of microseconds where a Go timer under a millisecond takes about a
// millisecond on some kernels.
func pause(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
