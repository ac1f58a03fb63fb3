package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// roundTrips carries the commands of concurrent calls to Redis in shared
// pipelines. A call that finds no round trip in flight sends its own
// commands at once, on its own goroutine: a lone request pays nothing
// for the grouping. Calls arriving while a round trip is in flight
// queue, and one pipeline carries all of them when it ends. Every call
// waits for its own replies, which are its own commands' results as if
// it had sent them alone (a pipeline does not make them one atomic step:
// each command, each script, is atomic as before, and nothing else).
//
// Under load this turns many small round trips (a credential check, a
// create, an event append per request) into a few large ones: one write
// and one read on the socket per batch, and one wake-up of the server.
//
// Writes that wait for replicas do not come here (writeWait sends each
// with its own WAIT behind it), nor does anything on a cluster, whose
// client splits a pipeline by node and follows redirects per command
// differently from one command alone.
type roundTrips struct {
	rdb redis.UniversalClient

	mu      sync.Mutex
	queue   []*trip
	running bool
}

type trip struct {
	ctx  context.Context
	cmds []redis.Cmder
	done chan struct{}
}

// tripBatchMax bounds the calls one pipeline carries.
const tripBatchMax = 128

// do sends cmds (in one pipeline with other calls' commands, or alone)
// and returns when every one of them has its reply or its error. A call
// whose context ends before its commands are sent is not sent: each of
// its commands fails with the context's error.
func (r *roundTrips) do(ctx context.Context, cmds ...redis.Cmder) {
	t := &trip{ctx: ctx, cmds: cmds, done: make(chan struct{})}
	r.mu.Lock()
	r.queue = append(r.queue, t)
	lead := !r.running
	r.running = true
	r.mu.Unlock()
	if lead {
		r.lead()
	}
	// Even when ctx ends: the commands may be on the wire, and their
	// results are written by whoever sends them. Sending is bounded by
	// the client's read and write timeouts.
	<-t.done
}

// lead sends up to tripBatchMax queued calls, then leaves what queued
// meanwhile to a goroutine of its own (the leader's caller returns
// without waiting for others' replies), or marks the queue idle.
func (r *roundTrips) lead() {
	r.mu.Lock()
	n := min(len(r.queue), tripBatchMax)
	batch := r.queue[:n:n]
	if r.queue = r.queue[n:]; len(r.queue) == 0 {
		r.queue = nil
	}
	r.mu.Unlock()
	r.send(batch)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		r.running = false
		return
	}
	go r.lead()
}

func (r *roundTrips) send(batch []*trip) {
	defer func() {
		for _, t := range batch {
			close(t.done)
		}
	}()
	if len(batch) == 1 {
		// The call of an idle store: exactly what it would send alone.
		t := batch[0]
		if err := t.ctx.Err(); err != nil {
			failAll(t.cmds, err)
			return
		}
		if len(t.cmds) == 1 {
			_ = r.rdb.Process(t.ctx, t.cmds[0])
			return
		}
		pipe := r.rdb.Pipeline()
		for _, c := range t.cmds {
			_ = pipe.Process(t.ctx, c)
		}
		_, _ = pipe.Exec(t.ctx)
		return
	}
	pipe := r.rdb.Pipeline()
	sent := 0
	for _, t := range batch {
		if err := t.ctx.Err(); err != nil {
			failAll(t.cmds, err)
			continue
		}
		for _, c := range t.cmds {
			_ = pipe.Process(t.ctx, c)
			sent++
		}
	}
	if sent == 0 {
		return
	}
	// The batch outlives any one call's context; the connection's read
	// and write timeouts bound it.
	_, _ = pipe.Exec(context.Background())
}

func failAll(cmds []redis.Cmder, err error) {
	for _, c := range cmds {
		c.SetErr(err)
	}
}
