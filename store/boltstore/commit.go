package boltstore

import (
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// committer is group commit without a fixed wait: a write that finds no
// commit running starts one at once; writes arriving while a commit runs
// (its fsyncs are most of its time) go together into the next. An idle
// daemon's write thus costs one commit, not a timer plus a commit
// (bbolt's Batch waits MaxBatchDelay for company), and a busy one still
// shares each fsync among every write that queued behind the last.
type committer struct {
	db    *bolt.DB
	delay time.Duration // optional extra wait for company before a commit

	mu      sync.Mutex
	pending []*commitCall
	running bool
}

type commitCall struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// run executes fn in a shared write transaction and returns its error or
// the commit's. Like bbolt's Batch, fn may run more than once: when any
// function of a group fails, the group's transaction is rolled back and
// each function runs again alone, so one failure touches no other write.
func (c *committer) run(fn func(*bolt.Tx) error) error {
	call := &commitCall{fn: fn, done: make(chan error, 1)}
	c.mu.Lock()
	c.pending = append(c.pending, call)
	if !c.running {
		c.running = true
		go c.loop()
	}
	c.mu.Unlock()
	return <-call.done
}

func (c *committer) loop() {
	for {
		if c.delay > 0 {
			time.Sleep(c.delay)
		}
		c.mu.Lock()
		group := c.pending
		c.pending = nil
		if len(group) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.commit(group)
	}
}

func (c *committer) commit(group []*commitCall) {
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, call := range group {
			if err := call.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, call := range group {
			call.done <- err
		}
		return
	}
	for _, call := range group {
		call.done <- c.db.Update(call.fn)
	}
}
