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
// Writes that must reach replicas share one WAIT behind the batch: WAIT
// waits for everything the connection wrote before it.
//
// Nothing on a cluster comes here: its client splits a pipeline by node
// and follows redirects per command differently from one command alone,
// and a WAIT must go to each write's own master (clusterWriteWait).
type roundTrips struct {
	rdb redis.UniversalClient
	// wait makes the WAIT that follows a batch with writes that wait for
	// replicas, and the reading of its answer.
	wait func(ctx context.Context) (*redis.Cmd, func() error)

	mu      sync.Mutex
	queue   []*trip
	running bool
}

type trip struct {
	ctx  context.Context
	cmds []redis.Cmder
	// wait: a WAIT must follow the commands; werr is its verdict.
	wait bool
	werr error
	done chan struct{}
}

// tripBatchMax bounds the calls one pipeline carries.
const tripBatchMax = 128

// do sends cmds (in one pipeline with other calls' commands, or alone)
// and returns when every one of them has its reply or its error. A call
// whose context ends before its commands are sent is not sent: each of
// its commands fails with the context's error.
func (r *roundTrips) do(ctx context.Context, cmds ...redis.Cmder) {
	r.run(&trip{ctx: ctx, cmds: cmds})
}

// doWait is do for writes that must reach replicas: a WAIT follows them
// on the same connection, and its verdict is returned (the commands keep
// their own errors).
func (r *roundTrips) doWait(ctx context.Context, cmds ...redis.Cmder) error {
	t := &trip{ctx: ctx, cmds: cmds, wait: true}
	r.run(t)
	return t.werr
}

func (r *roundTrips) run(t *trip) {
	t.done = make(chan struct{})
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
	// The call of an idle store goes out under its own context; a batch
	// outlives any one call's, and the connection's read and write
	// timeouts bound it.
	ctx := context.Background()
	if len(batch) == 1 {
		ctx = batch[0].ctx
	}
	var (
		live  []*trip
		n     int
		waits bool
	)
	for _, t := range batch {
		if err := t.ctx.Err(); err != nil {
			for _, c := range t.cmds {
				c.SetErr(err)
			}
			t.werr = err
			continue
		}
		live = append(live, t)
		n += len(t.cmds)
		waits = waits || t.wait
	}
	switch {
	case n == 0:
		return
	case n == 1 && !waits:
		// Exactly what one command alone would send.
		_ = r.rdb.Process(ctx, live[0].cmds[0])
		return
	}
	pipe := r.rdb.Pipeline()
	for _, t := range live {
		for _, c := range t.cmds {
			_ = pipe.Process(ctx, c)
		}
	}
	var verdict func() error
	if waits {
		var w *redis.Cmd
		w, verdict = r.wait(ctx)
		_ = pipe.Process(ctx, noRetry{w})
	}
	_, _ = pipe.Exec(ctx)
	if waits {
		werr := verdict()
		for _, t := range live {
			if t.wait {
				t.werr = werr
			}
		}
	}
}
