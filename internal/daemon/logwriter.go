package daemon

import (
	"io"
	"sync"
)

// LogWriter writes the daemon's log lines without a write system call per
// line under load. Lines go into a buffer and one goroutine writes
// whatever has gathered: an idle daemon's line is written at once, and
// lines logged while a write runs (a few microseconds of a busy second)
// go out together with the next one. Order is kept; Close writes what is
// left. When the output falls behind (a blocked pipe), writers wait once
// the buffer holds maxPending bytes, as they would on a direct write, so
// the buffer never grows without bound.
type LogWriter struct {
	out io.Writer

	mu      sync.Mutex
	room    *sync.Cond // signalled when the buffer is taken for writing
	buf     []byte
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	lastErr error
}

const maxPending = 1 << 20

// NewLogWriter starts the writer over out.
func NewLogWriter(out io.Writer) *LogWriter {
	l := &LogWriter{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.room = sync.NewCond(&l.mu)
	go l.loop()
	return l
}

// Write queues one line (slog hands each record over in one call).
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	for len(l.buf) >= maxPending && !l.closed {
		l.room.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		// After Close (the last lines of a shutdown): write directly.
		return l.out.Write(p)
	}
	l.buf = append(l.buf, p...)
	// Signalled under the lock: Close closes wake only after it has seen
	// the lock with closed set, so this never sends on a closed channel.
	select {
	case l.wake <- struct{}{}:
	default: // the writer is already due to run
	}
	l.mu.Unlock()
	return len(p), nil
}

func (l *LogWriter) loop() {
	defer close(l.done)
	var spare []byte
	for range l.wake {
		for {
			l.mu.Lock()
			b := l.buf
			l.buf = spare[:0]
			l.room.Broadcast()
			l.mu.Unlock()
			if len(b) == 0 {
				spare = b
				break
			}
			if _, err := l.out.Write(b); err != nil {
				l.mu.Lock()
				l.lastErr = err
				l.mu.Unlock()
			}
			spare = b
		}
	}
}

// Close writes every queued line and stops the writer; later writes go
// straight to the output.
func (l *LogWriter) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.room.Broadcast()
	l.mu.Unlock()
	close(l.wake)
	<-l.done
	// Lines queued between the last wake-up and close.
	l.mu.Lock()
	rest := l.buf
	l.buf = nil
	err := l.lastErr
	l.mu.Unlock()
	if len(rest) > 0 {
		if _, werr := l.out.Write(rest); werr != nil {
			err = werr
		}
	}
	return err
}
