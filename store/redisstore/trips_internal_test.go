package redisstore

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// holdFirst holds the first command sent through the client until
// release is closed, and counts what reaches the server: single commands
// and pipelines with their sizes.
type holdFirst struct {
	release chan struct{}
	held    chan struct{}
	once    sync.Once
	singles atomic.Int64
	mu      sync.Mutex
	pipes   []int
}

var ours = map[string]bool{"incr": true, "incrby": true, "strlen": true, "exists": true, "get": true, "set": true}

func (h *holdFirst) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdFirst) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !ours[cmd.Name()] {
			// The client's own, on a new connection.
			return next(ctx, cmd)
		}
		h.singles.Add(1)
		h.once.Do(func() {
			close(h.held)
			<-h.release
		})
		return next(ctx, cmd)
	}
}

func (h *holdFirst) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !ours[cmds[0].Name()] {
			return next(ctx, cmds)
		}
		h.mu.Lock()
		h.pipes = append(h.pipes, len(cmds))
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (r *roundTrips) queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// hookedClient is a client of a fresh server that speaks as the store's
// does, with h's hook; held says whether h holds the first command.
func hookedClient(t *testing.T, held bool) (*redis.Client, *holdFirst) {
	t.Helper()
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: hostPort(t, srv.URL()), MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	h := &holdFirst{release: make(chan struct{}), held: make(chan struct{})}
	if !held {
		close(h.release)
	}
	rdb.AddHook(h)
	return rdb, h
}

// lead sends cmd through r as the leader and returns once the hook holds
// it; the returned channel closes when the call returns.
func (h *holdFirst) lead(r *roundTrips, cmd redis.Cmder) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		r.do(context.Background(), cmd)
		close(done)
	}()
	<-h.held
	return done
}

func TestRoundTripsShareOnePipelineWhileOneIsInFlight(t *testing.T) {
	rdb, h := hookedClient(t, true)
	r := &roundTrips{rdb: rdb}
	ctx := context.Background()
	prefix := fmt.Sprintf("trips%d:", time.Now().UnixNano())

	// The leader: alone, so its command goes out at once, as a single.
	first := redis.NewIntCmd(ctx, "incr", prefix+"first")
	leaderDone := h.lead(r, first)

	// While it is held, 20 calls of two commands each queue, and one
	// more whose context ends before it is sent.
	const callers = 20
	type call struct{ incr, get *redis.IntCmd }
	calls := make([]call, callers)
	var wg sync.WaitGroup
	for i := range callers {
		key := fmt.Sprintf("%sc%d", prefix, i)
		calls[i] = call{redis.NewIntCmd(ctx, "incrby", key, i+1), redis.NewIntCmd(ctx, "strlen", key)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.do(ctx, calls[i].incr, calls[i].get)
		}()
	}
	cctx, cancel := context.WithCancel(ctx)
	gone := redis.NewIntCmd(cctx, "incr", prefix+"gone")
	goneDone := make(chan struct{})
	go func() {
		r.do(cctx, gone)
		close(goneDone)
	}()
	require.Eventually(t, func() bool { return r.queued() == callers+1 }, 10*time.Second, time.Millisecond)
	cancel()
	close(h.release)
	<-leaderDone
	wg.Wait()
	<-goneDone

	require.NoError(t, first.Err())
	assert.Equal(t, int64(1), first.Val())
	for i, c := range calls {
		require.NoError(t, c.incr.Err())
		assert.Equal(t, int64(i+1), c.incr.Val(), "each call has its own replies")
		require.NoError(t, c.get.Err())
		assert.Equal(t, int64(len(fmt.Sprint(i+1))), c.get.Val())
	}
	assert.ErrorIs(t, gone.Err(), context.Canceled)
	n, err := rdb.Exists(ctx, prefix+"gone").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "a call whose context ended while queued is not sent")

	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Equal(t, []int{2 * callers}, h.pipes, "the queued calls went in one pipeline")
	// The leader's command, then the EXISTS above.
	assert.Equal(t, int64(2), h.singles.Load())
	assert.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return !r.running
	}, 10*time.Second, time.Millisecond, "the queue is idle again")
}

func TestRoundTripsAloneSendAsBefore(t *testing.T) {
	rdb, h := hookedClient(t, false)
	r := &roundTrips{rdb: rdb}
	ctx := context.Background()
	key := fmt.Sprintf("alone%d", time.Now().UnixNano())

	one := redis.NewIntCmd(ctx, "incr", key)
	r.do(ctx, one)
	require.NoError(t, one.Err())
	a, b := redis.NewIntCmd(ctx, "incr", key), redis.NewIntCmd(ctx, "incr", key)
	r.do(ctx, a, b)
	require.NoError(t, a.Err())
	require.NoError(t, b.Err())
	assert.Equal(t, []int64{1, 2, 3}, []int64{one.Val(), a.Val(), b.Val()})

	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Equal(t, int64(1), h.singles.Load(), "one command alone is one command")
	assert.Equal(t, []int{2}, h.pipes, "a call's commands stay together")

	// A context that ended before the call: nothing is sent.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	c := redis.NewIntCmd(cctx, "incr", key)
	r.do(cctx, c)
	assert.ErrorIs(t, c.Err(), context.Canceled)
	v, err := rdb.Get(ctx, key).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(3), v)
}

func hostPort(t *testing.T, url string) string {
	t.Helper()
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	_, _, err = net.SplitHostPort(opt.Addr)
	require.NoError(t, err)
	return opt.Addr
}

// Writes that wait for replicas share one WAIT per batch, and each call
// gets its verdict; a server with no replica gives each the shortfall.
func TestRoundTripsShareOneWaitPerBatch(t *testing.T) {
	rdb, h := hookedClient(t, true)
	var waits atomic.Int64
	shortfall := fmt.Errorf("too few replicas")
	r := &roundTrips{rdb: rdb, wait: func(ctx context.Context) (*redis.Cmd, func() error) {
		waits.Add(1)
		w := redis.NewCmd(ctx, "wait", 1, 50)
		return w, func() error {
			n, err := w.Int64()
			if err != nil {
				return err
			}
			if n < 1 {
				return shortfall
			}
			return nil
		}
	}}
	ctx := context.Background()
	prefix := fmt.Sprintf("waits%d:", time.Now().UnixNano())

	// The leader, held: a plain command.
	first := redis.NewIntCmd(ctx, "incr", prefix+"first")
	leaderDone := h.lead(r, first)
	const callers = 5
	sets := make([]*redis.StatusCmd, callers)
	werrs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		sets[i] = redis.NewStatusCmd(ctx, "set", fmt.Sprintf("%s%d", prefix, i), i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			werrs[i] = r.doWait(ctx, sets[i])
		}()
	}
	// And one read that waits for nothing, in the same batch.
	get := redis.NewStringCmd(ctx, "get", prefix+"first")
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.do(ctx, get)
	}()
	require.Eventually(t, func() bool { return r.queued() == callers+1 }, 10*time.Second, time.Millisecond)
	close(h.release)
	<-leaderDone
	wg.Wait()

	for i := range callers {
		require.NoError(t, sets[i].Err(), "the write itself went through")
		assert.ErrorIs(t, werrs[i], shortfall, "each waiting call gets the WAIT's verdict")
	}
	require.NoError(t, get.Err())
	assert.Equal(t, "1", get.Val())
	assert.Equal(t, int64(1), waits.Load(), "one WAIT for the whole batch")
	h.mu.Lock()
	assert.Equal(t, []int{callers + 1 + 1}, h.pipes, "the writes, the read and the WAIT in one pipeline")
	h.mu.Unlock()

	// Alone, a waiting write is followed by its own WAIT.
	one := redis.NewStatusCmd(ctx, "set", prefix+"alone", 1)
	assert.ErrorIs(t, r.doWait(ctx, one), shortfall)
	require.NoError(t, one.Err())
	assert.Equal(t, int64(2), waits.Load())
}
