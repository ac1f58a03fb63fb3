package boltstore

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/store"
)

// committer is group commit without a fixed wait and without a goroutine
// of its own: a write that finds no commit running commits at once on its
// caller's goroutine (it leads); writes arriving while a commit runs (its
// fsyncs are most of its time) queue, and when the commit ends the leader
// hands the lead to the first of them, which commits the whole queue in
// one transaction. An idle daemon's write thus costs one commit and no
// goroutine hand-off, and a busy one still shares each fsync among every
// write that queued behind the last.
type committer struct {
	db    *bolt.DB
	gens  *writeGens    // every write transaction goes through it (memo.go)
	delay time.Duration // optional extra wait for company before a commit
	// j, when set, takes groups of event appends alone (journal.go);
	// guard checks an append's guard, in the read transaction it opens
	// when it must read.
	j     *journal
	guard func(*reader, string, *store.Guard) (bool, error)

	mu      sync.Mutex
	pending []*commitCall
	running bool

	// background, when set (Store.OnBackground), is told of work the
	// committer starts off every request's path, and returns its end.
	background atomic.Pointer[func() (done func())]
}

type commitCall struct {
	fn   func(*bolt.Tx) error
	ev   *eventAppend // set on an event append: the journal may take it instead of fn
	cr   *createCall  // set on a new record the journal may take instead of fn
	done chan error   // its result, or errLead: commit the queue
}

// errLead tells a queued write that the lead is its: it commits the queue
// (itself first) on its own goroutine.
var errLead = errors.New("boltstore: lead the next commit")

// run executes fn in a shared write transaction and returns its error or
// the commit's. Like bbolt's Batch, fn may run more than once: when any
// function of a group fails, the group's transaction is rolled back and
// each function runs again alone, so one failure touches no other write.
func (c *committer) run(fn func(*bolt.Tx) error) error {
	return c.runCall(&commitCall{fn: fn, done: make(chan error, 1)})
}

func (c *committer) runCall(call *commitCall) error {
	c.mu.Lock()
	c.pending = append(c.pending, call)
	lead := !c.running
	c.running = true
	c.mu.Unlock()
	for {
		if lead {
			c.lead()
		}
		err := <-call.done
		if err != errLead {
			return err
		}
		lead = true
	}
}

// lead commits everything queued, then passes the lead to the first write
// that queued meanwhile, or marks the committer idle.
func (c *committer) lead() {
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	c.mu.Lock()
	group := c.pending
	c.pending = nil
	c.mu.Unlock()
	defer func() {
		v := recover()
		if v != nil {
			// A write panicked inside the transaction (rolled back): its
			// group learns of a failure, and the committer does not stay
			// led by a goroutine that is gone.
			for _, call := range group {
				select {
				case call.done <- errPanicked:
				default:
				}
			}
		}
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.running = false
			c.mu.Unlock()
		} else {
			next := c.pending[0]
			c.mu.Unlock()
			next.done <- errLead
		}
		if v != nil {
			panic(v)
		}
	}()
	c.commit(group)
}

var errPanicked = errors.New("boltstore: a write of the same commit panicked; nothing of it was written")

func (c *committer) commit(group []*commitCall) {
	if c.j != nil && journalable(group) && c.j.take(c.db, c.guard, c.gens, group) {
		if c.j.wantsCheckpoint() && !c.j.checkpointing.Swap(true) {
			// A write of no records of its own: its transaction copies
			// the journal into bbolt, off every request's path.
			go c.checkpoint()
		}
		return
	}
	err := c.update(group)
	if err == nil || len(group) == 1 {
		for _, call := range group {
			call.done <- err
		}
		return
	}
	for _, call := range group {
		call.done <- c.update([]*commitCall{call})
	}
}

// checkpoint commits a write of no records of its own, whose transaction
// copies the journal into bbolt, telling background of it.
func (c *committer) checkpoint() {
	if bg := c.background.Load(); bg != nil {
		done := (*bg)()
		defer done()
	}
	_ = c.run(func(*bolt.Tx) error { return nil })
}

// update runs the group's functions in one bbolt transaction that first
// copies the journal's pending events into bbolt.
func (c *committer) update(group []*commitCall) error {
	applied := false
	err := c.gens.update(c.db, func(tx *bolt.Tx) error {
		applied = false
		if c.j != nil {
			if err := c.j.apply(tx); err != nil {
				return err
			}
			applied = true
		}
		for _, call := range group {
			if err := call.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	switch {
	case err == nil && applied:
		c.j.checkpointed()
	case err != nil && c.j != nil:
		// The journal stays as it is; the next write may ask again.
		c.j.checkpointing.Store(false)
	}
	return err
}

// journalable: every write of the group is one the journal may take.
func journalable(group []*commitCall) bool {
	for _, call := range group {
		if call.ev == nil && call.cr == nil {
			return false
		}
	}
	return true
}
