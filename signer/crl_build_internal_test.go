package signer

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitCallers waits until the build that follows the running one of key
// serves n callers.
func waitCallers(e *Core, key string, n int) {
	for {
		v, _ := e.crlBuilds.Load(key)
		b := v.(*crlBuild)
		b.mu.Lock()
		got := 0
		if b.next != nil {
			got = b.next.callers
		}
		b.mu.Unlock()
		if got == n {
			return
		}
		runtime.Gosched()
	}
}

// Callers of BuildCRL that arrive while a build runs share the next one:
// ten revocations during a build cost one more build, not ten; another
// CRL builds meanwhile; a build's error reaches every caller it served;
// a caller whose context ends stops waiting without stopping the build.
func TestBuildCRLCoalesces(t *testing.T) {
	e := &Core{}
	ctx := context.Background()
	var builds atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{})
	first := make(chan error)
	go func() {
		first <- e.BuildCRL(ctx, "pca", "ca1", func(context.Context) error {
			builds.Add(1)
			close(started)
			<-release
			return nil
		})
	}()
	<-started

	// Another CRL is not held up by this one.
	require.NoError(t, e.BuildCRL(ctx, "pca", "ca2", func(context.Context) error { return nil }))

	boom := errors.New("signature failed")
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.BuildCRL(ctx, "pca", "ca1", func(context.Context) error {
				builds.Add(1)
				return boom
			})
		}()
	}
	waitCallers(e, "pca/ca1", 10)
	gone, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, e.BuildCRL(gone, "pca", "ca1", func(context.Context) error { return nil }), context.Canceled)
	close(release)
	require.NoError(t, <-first)
	wg.Wait()
	for _, err := range errs {
		assert.ErrorIs(t, err, boom)
	}
	assert.Equal(t, int32(2), builds.Load(), "the running build and one shared by the ten")

	// Idle again: the next caller builds at once.
	require.NoError(t, e.BuildCRL(ctx, "pca", "ca1", func(context.Context) error { builds.Add(1); return nil }))
	assert.Equal(t, int32(3), builds.Load())
}
