package daemon

import (
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hsmca/hsmca/metrics"
)

// procTuner runs Go's scheduler on one processor (GOMAXPROCS 1) while the
// daemon serves one request at a time, and gives the scheduler back its
// default (runtime.SetDefaultGOMAXPROCS: the CPUs, or the container's
// limit) as soon as a second request is under way or a goroutine had to
// wait longWait or more for the one processor (background work such as a
// CRL build). A lone request on several processors pays a wake-up of
// an idle thread at each of its hand-offs (the HSM call, the store's
// reply, the response); on one processor the goroutine that was waiting
// runs next on the thread at hand (see the README's Benchmarks for the
// figures). The processors go down again after calm: no second request
// and no such wait, for calm.
//
// GOMAXPROCS belongs to the process, so there is one tuner per process,
// shared by the daemons it runs (tests run several).
type procTuner struct {
	calm time.Duration
	tick time.Duration
	// The runtime and clock, replaced in tests.
	setOne     func()
	setDefault func()
	waits      func() uint64 // goroutines that waited longWait or more to run, so far
	now        func() time.Time

	inflight atomic.Int64
	held     atomic.Int64 // background work under way (hold)
	low      atomic.Bool  // the scheduler runs on one processor
	busy     atomic.Int64 // unix ns of the last time it could not stay on one

	mu    sync.Mutex // one change at a time; users, stop, done
	users int
	stop  chan struct{}
	done  chan struct{}
}

var processProcs = &procTuner{calm: time.Second, tick: 100 * time.Millisecond,
	setOne: func() { runtime.GOMAXPROCS(1) }, setDefault: runtime.SetDefaultGOMAXPROCS,
	waits: longWaits, now: time.Now}

// longWait is a wait for a processor that brings the processors back:
// work that keeps the one busy makes goroutines wait up to the
// scheduler's 10 ms time slice, while a collection or a burst of
// hand-offs makes one wait 1-3 ms now and then, which one processor
// serves well.
const longWait = 4 * time.Millisecond

// longWaits is how many times, so far, a goroutine waited longWait or
// more for a processor once runnable (sampled by the runtime).
func longWaits() uint64 {
	s := []rtmetrics.Sample{{Name: "/sched/latencies:seconds"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return 0
	}
	h := s[0].Value.Float64Histogram()
	var n uint64
	for i, c := range h.Counts {
		if h.Buckets[i] >= longWait.Seconds() {
			n += c
		}
	}
	return n
}

// wrap counts h's requests under way: a second one brings the processors
// back before it is served.
func (p *procTuner) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.inflight.Add(1) > 1 {
			p.busy.Store(p.now().UnixNano())
			if p.low.Load() {
				p.raise()
			}
		}
		defer p.inflight.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// hold gives every processor to background work of the daemon's own
// while it runs (the bolt store's copy of its event journal into the file:
// a commit of up to a second of events, which on the one processor would
// keep the next request waiting for tens of milliseconds, its syscalls
// included), and returns its end. Unlike a second request it leaves no
// trace: when the last such work ends the processors go down at once,
// unless a request or a long wait kept them up within calm.
func (p *procTuner) hold() (release func()) {
	p.held.Add(1)
	if p.low.Load() {
		p.raise()
	}
	return func() {
		if p.held.Add(-1) == 0 {
			p.lower()
		}
	}
}

func (p *procTuner) raise() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.low.Load() {
		p.setDefault()
		p.low.Store(false)
		metrics.GoProcChanges.Add(1)
	}
}

// check runs every tick with the long waits since the last: one brings
// the processors back; they go down after calm.
func (p *procTuner) check(waits uint64) {
	now := p.now()
	if p.inflight.Load() > 1 || waits > 0 {
		p.busy.Store(now.UnixNano())
	}
	if p.low.Load() {
		if waits > 0 {
			p.raise()
		}
		return
	}
	p.lower()
}

// lower sets one processor, unless something keeps them up: a second
// request, background work (hold), a reason to be busy within calm, or no
// user (the daemons have ended: the processors stay at their default).
func (p *procTuner) lower() {
	if p.low.Load() || p.held.Load() > 0 || p.now().Sub(time.Unix(0, p.busy.Load())) < p.calm {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.low.Load() && p.users > 0 && p.inflight.Load() <= 1 && p.held.Load() == 0 {
		p.setOne()
		p.low.Store(true)
		metrics.GoProcChanges.Add(1)
	}
}

// start adds a user: the first starts the ticks.
func (p *procTuner) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users++; p.users > 1 {
		return
	}
	p.busy.Store(p.now().UnixNano())
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go p.run(p.stop, p.done)
}

// end removes a user: the last stops the ticks and gives the processors
// back.
func (p *procTuner) end() {
	p.mu.Lock()
	if p.users--; p.users > 0 {
		p.mu.Unlock()
		return
	}
	stop, done := p.stop, p.done
	p.mu.Unlock()
	close(stop)
	<-done
	p.raise()
}

func (p *procTuner) run(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(p.tick)
	defer t.Stop()
	last := p.waits()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			n := p.waits()
			p.check(n - last)
			last = n
		}
	}
}
