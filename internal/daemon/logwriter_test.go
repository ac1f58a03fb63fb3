package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a slow output: each write takes a little while, as a
// write to a pipe or a file can.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
	delay  time.Duration
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	time.Sleep(l.delay)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func TestLogWriterKeepsEveryLineInOrder(t *testing.T) {
	out := &lockedBuffer{delay: 200 * time.Microsecond}
	lw := NewLogWriter(out)
	const writers, lines = 16, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				_, err := fmt.Fprintf(lw, "{\"w\":%d,\"i\":%d}\n", w, i)
				require.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, lw.Close())

	got := strings.Split(strings.TrimSuffix(out.b.String(), "\n"), "\n")
	require.Len(t, got, writers*lines, "every line written once, none split")
	next := make([]int, writers)
	for _, l := range got {
		var w, i int
		_, err := fmt.Sscanf(l, "{\"w\":%d,\"i\":%d}", &w, &i)
		require.NoError(t, err, "a whole line: %q", l)
		require.Equal(t, next[w], i, "lines of one writer stay in order")
		next[w]++
	}
	assert.Less(t, out.writes, writers*lines, "lines logged during a write share the next one")
}

func TestLogWriterIdleLineIsWrittenWithoutClose(t *testing.T) {
	out := &lockedBuffer{}
	lw := NewLogWriter(out)
	defer lw.Close()
	_, err := lw.Write([]byte("one\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		out.mu.Lock()
		defer out.mu.Unlock()
		return out.b.String() == "one\n"
	}, 5*time.Second, time.Millisecond, "an idle daemon's line does not wait for company")
}

func TestLogWriterAfterClose(t *testing.T) {
	out := &lockedBuffer{}
	lw := NewLogWriter(out)
	_, _ = lw.Write([]byte("a\n"))
	require.NoError(t, lw.Close())
	require.NoError(t, lw.Close(), "a second close is harmless")
	_, err := lw.Write([]byte("b\n"))
	require.NoError(t, err)
	assert.Equal(t, "a\nb\n", out.b.String(), "lines after close go straight out")
}

// A blocked output holds writers back once the buffer is full instead of
// letting it grow.
func TestLogWriterBoundsItsBuffer(t *testing.T) {
	release := make(chan struct{})
	out := &blockingWriter{release: release}
	lw := NewLogWriter(out)
	line := bytes.Repeat([]byte("x"), 64<<10)
	wrote := make(chan int, 1)
	go func() {
		n := 0
		for range 64 { // 4 MiB, four times the bound
			_, _ = lw.Write(line)
			n++
		}
		wrote <- n
	}()
	select {
	case <-wrote:
		t.Fatal("writers ran ahead of a blocked output without bound")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	assert.Equal(t, 64, <-wrote)
	require.NoError(t, lw.Close())
	assert.Equal(t, 64*len(line), out.n)
}

type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += len(p)
	return len(p), nil
}

type failingWriter struct{}

func (failingWriter) Write(p []byte) (int, error) { return 0, errors.New("disk full") }

// A failing output does not block or drop later writers; Close reports it.
func TestLogWriterReportsAFailingOutput(t *testing.T) {
	lw := NewLogWriter(failingWriter{})
	for range 10 {
		_, err := lw.Write([]byte("line\n"))
		require.NoError(t, err, "the caller is not held up by the output's failure")
	}
	assert.EqualError(t, lw.Close(), "disk full")
}
