package signer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
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

// eventWriter appends event records with group commit: concurrent
// operations hand their records to one goroutine, which writes everything
// queued for a tenant in one AppendEvents call and then releases every
// waiter. Callers still wait for their record to be durable.
type eventWriter struct {
	st    store.Store
	log   *slog.Logger
	queue chan pendingEvent
	done  chan struct{}

	mu     sync.RWMutex // held for reading while sending, so close never races a send
	closed bool
}

type pendingEvent struct {
	ctx    context.Context
	tenant string
	data   json.RawMessage
	errc   chan error
}

const eventBatchMax = 256

func newEventWriter(st store.Store, log *slog.Logger) *eventWriter {
	w := &eventWriter{st: st, log: log, queue: make(chan pendingEvent, 4096), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *eventWriter) append(ctx context.Context, tenant string, rec EventRecord) error {
	rec.ID = uuid.NewString()
	rec.Time = time.Now().UTC()
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	p := pendingEvent{ctx: ctx, tenant: tenant, data: data, errc: make(chan error, 1)}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return errEventsClosed
	}
	select {
	case w.queue <- p:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-p.errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *eventWriter) loop() {
	defer close(w.done)
	for first := range w.queue {
		batch := []pendingEvent{first}
	fill:
		for len(batch) < eventBatchMax {
			select {
			case p, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		w.flush(batch)
	}
}

func (w *eventWriter) flush(batch []pendingEvent) {
	byTenant := map[string][]pendingEvent{}
	var order []string
	for _, p := range batch {
		if _, ok := byTenant[p.tenant]; !ok {
			order = append(order, p.tenant)
		}
		byTenant[p.tenant] = append(byTenant[p.tenant], p)
	}
	for _, t := range order {
		ps := byTenant[t]
		data := make([]json.RawMessage, len(ps))
		for i, p := range ps {
			data[i] = p.data
		}
		// The batch outlives any one request's context; bound it instead.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := w.st.AppendEvents(ctx, t, data)
		cancel()
		for _, p := range ps {
			p.errc <- err
		}
	}
}

var errEventsClosed = errors.New("event log closed: the daemon is shutting down")

func (w *eventWriter) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.done
}
