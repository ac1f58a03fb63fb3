package signer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hsmca/hsmca/store"
)

// EventRecord is the content of one event in a tenant's chain.
type EventRecord struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Tenant    string    `json:"tenant"`
	Principal string    `json:"principal"`
	Operation string    `json:"operation"`
	Outcome   string    `json:"outcome"`
	Resource  string    `json:"resource,omitempty"`
	RequestID string    `json:"requestId,omitempty"`
	ErrorCode string    `json:"errorCode,omitempty"`
}

// eventWriter appends event records with group commit and no goroutine
// of its own: an operation whose record finds no append running appends
// it at once on its own goroutine (it leads); records arriving meanwhile
// queue, and when the append ends the leader starts one goroutine that
// writes everything queued for a tenant in one AppendEvents call and
// releases every waiter. Callers still wait for their record to be
// durable. A lone request thus pays no hand-off between goroutines.
type eventWriter struct {
	st  store.Store
	log *slog.Logger
	// groups, when set, observes the records of each append.
	groups prometheus.Observer

	mu      sync.Mutex
	pending []pendingEvent
	running bool
	closed  bool
	idle    *sync.Cond // signalled when running ends
}

type pendingEvent struct {
	ctx    context.Context
	tenant string
	data   json.RawMessage
	guard  *store.Guard // nil: unconditional
	errc   chan error   // errGuardFailed: left out, its guard failed
}

// errGuardFailed answers a guarded record left out because its record
// changed (store.GuardedEvents).
var errGuardFailed = errors.New("event guard failed: the record changed")

const eventBatchMax = 256

func newEventWriter(st store.Store, log *slog.Logger) *eventWriter {
	w := &eventWriter{st: st, log: log}
	w.idle = sync.NewCond(&w.mu)
	return w
}

// encodeEvent stamps rec with its id and time and encodes it: what
// json.Marshal writes, without reflection (every operation encodes one).
func encodeEvent(rec EventRecord) (json.RawMessage, error) {
	rec.ID = uuid.NewString()
	rec.Time = time.Now().UTC()
	return appendEventRecord(make([]byte, 0, 256), &rec), nil
}

func appendEventRecord(b []byte, rec *EventRecord) []byte {
	b = append(b, `{"id":`...)
	b = store.AppendJSONString(b, rec.ID)
	b = append(b, `,"time":`...)
	if t, err := rec.Time.MarshalJSON(); err == nil {
		b = append(b, t...)
	} else {
		b = append(b, `null`...) // a year past 9999: never from time.Now
	}
	for _, f := range [...]struct {
		name, v   string
		omitEmpty bool
	}{{`,"tenant":`, rec.Tenant, false}, {`,"principal":`, rec.Principal, false},
		{`,"operation":`, rec.Operation, false}, {`,"outcome":`, rec.Outcome, false},
		{`,"resource":`, rec.Resource, true}, {`,"requestId":`, rec.RequestID, true},
		{`,"errorCode":`, rec.ErrorCode, true}} {
		if f.omitEmpty && f.v == "" {
			continue
		}
		b = append(b, f.name...)
		b = store.AppendJSONString(b, f.v)
	}
	return append(b, '}')
}

func (w *eventWriter) append(ctx context.Context, tenant string, rec EventRecord) error {
	return w.appendIf(ctx, tenant, rec, nil)
}

// appendIf is append under a guard (nil: none): errGuardFailed when the
// guard failed and nothing was written. Only for a store that implements
// store.GuardedEvents.
func (w *eventWriter) appendIf(ctx context.Context, tenant string, rec EventRecord, guard *store.Guard) error {
	data, err := encodeEvent(rec)
	if err != nil {
		return err
	}
	p := pendingEvent{ctx: ctx, tenant: tenant, data: data, guard: guard, errc: make(chan error, 1)}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errEventsClosed
	}
	w.pending = append(w.pending, p)
	lead := !w.running
	w.running = true
	w.mu.Unlock()
	if lead {
		w.lead()
	}
	select {
	case err := <-p.errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lead writes up to eventBatchMax queued records, then leaves what queued
// meanwhile to a goroutine of its own (the leader's caller is answered
// without waiting for others' records), or marks the writer idle.
func (w *eventWriter) lead() {
	w.mu.Lock()
	n := min(len(w.pending), eventBatchMax)
	batch := w.pending[:n:n]
	if w.pending = w.pending[n:]; len(w.pending) == 0 {
		w.pending = nil
	}
	w.mu.Unlock()
	w.flush(batch)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 {
		w.running = false
		w.idle.Broadcast()
		return
	}
	// Records queued during the append: a new leader writes them.
	go w.lead()
}

func (w *eventWriter) flush(batch []pendingEvent) {
	if len(batch) == 1 {
		// The lone record of an idle daemon: no grouping to do.
		w.write(batch[0].tenant, batch)
		return
	}
	byTenant := map[string][]pendingEvent{}
	var order []string
	for _, p := range batch {
		if _, ok := byTenant[p.tenant]; !ok {
			order = append(order, p.tenant)
		}
		byTenant[p.tenant] = append(byTenant[p.tenant], p)
	}
	for _, t := range order {
		w.write(t, byTenant[t])
	}
}

// write appends the records of one tenant in one call and answers each.
func (w *eventWriter) write(tenant string, ps []pendingEvent) {
	if w.groups != nil {
		w.groups.Observe(float64(len(ps)))
	}
	data := make([]json.RawMessage, len(ps))
	var guards []*store.Guard
	for i, p := range ps {
		data[i] = p.data
		if p.guard != nil {
			if guards == nil {
				guards = make([]*store.Guard, len(ps))
			}
			guards[i] = p.guard
		}
	}
	// The batch outlives any one request's context; bound it instead.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if guards == nil {
		_, err := w.st.AppendEvents(ctx, tenant, data)
		for _, p := range ps {
			p.errc <- err
		}
		return
	}
	var (
		dropped []int
		err     = errNoGuards
	)
	if gs, ok := w.st.(store.GuardedEvents); ok {
		_, dropped, err = gs.AppendEventsIf(ctx, tenant, data, guards)
	}
	for i, p := range ps {
		if err == nil && slices.Contains(dropped, i) {
			p.errc <- errGuardFailed
			continue
		}
		p.errc <- err
	}
}

var errNoGuards = errors.New("event log: the store takes no guarded records")

var errEventsClosed = errors.New("event log closed: the daemon is shutting down")

// idleNow reports whether no append is queued or under way.
func (w *eventWriter) idleNow() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.running && !w.closed
}

// close refuses new records and waits until every queued one is written.
func (w *eventWriter) close() {
	w.mu.Lock()
	w.closed = true
	for w.running {
		w.idle.Wait()
	}
	w.mu.Unlock()
}
