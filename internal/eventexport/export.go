// Package eventexport streams the event log to receivers outside hsmca:
// syslog (RFC 5424 over TCP or TLS) and append-only JSON-lines files.
//
// Each sink tails the stored chains by cursor: it reads the records after
// the last sequence number it delivered, per tenant, from the store, and
// nothing in the event write path waits for it. Delivery is at least
// once: the cursor (one store record per sink, in the platform tenant)
// moves only past records the sink has delivered for good, so a receiver
// that is down gets the backlog in order when it returns, and a restart
// sends again at most what was in flight. The backlog is the store
// itself: memory holds one batch per sink, whatever the lag.
//
// Replicas sharing a store share each sink's cursor; a lease in the
// cursor record lets one replica at a time export through a sink.
package eventexport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/store"
)

// Sink delivers records to one receiver.
type Sink interface {
	// Send hands records of one tenant, in order, to the receiver and
	// returns how many it took (a prefix). An error means the rest were
	// not sent; everything not yet settled is sent again.
	Send(ctx context.Context, evs []store.Event) (int, error)
	// Settled returns, per tenant, the newest record delivered for good
	// since the last call. An error says the receiver was lost: what
	// was sent and not settled is sent again.
	Settled(now time.Time) (map[string]uint64, error)
	// Reset drops what was sent and not settled (before a resend).
	Reset()
	Close() error
}

// EventHeader reports the head of a tenant's chain (both stores do).
type EventHeader interface {
	EventHead(ctx context.Context, tenant string) (uint64, string, error)
}

// Options configure an Exporter.
type Options struct {
	Store    store.Store
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	Instance string // names the lease holder
	// Poll is how often a sink that has everything looks for new
	// records (default 500ms).
	Poll time.Duration
	// Batch bounds the records read and sent at once per tenant (default
	// 500): the memory a sink holds.
	Batch int
	// Lease is how long a replica holds a sink (default 15s).
	Lease time.Duration
}

// NamedSink is a sink with its configured name.
type NamedSink struct {
	Name string
	Sink Sink
}

// Exporter runs the sinks.
type Exporter struct {
	o      Options
	sinks  []NamedSink
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

const kindCursor = "event_export_cursor"

// cursor is the persisted state of one sink.
type cursor struct {
	Tenants map[string]uint64 `json:"tenants"` // newest record delivered, per tenant
	Holder  string            `json:"holder,omitempty"`
	Until   time.Time         `json:"until,omitempty"`
}

// Start runs each sink in its own goroutine until Stop.
func Start(o Options, sinks []NamedSink) *Exporter {
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Lease <= 0 {
		o.Lease = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	x := &Exporter{o: o, sinks: sinks, cancel: cancel}
	for _, s := range sinks {
		if o.Metrics != nil {
			o.Metrics.ExportSink(s.Name)
		}
		r := &runner{o: o, name: s.Name, sink: s.Sink, log: o.Logger.With("sink", s.Name)}
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			r.run(ctx)
		}()
	}
	return x
}

// Stop ends every sink: what is settled is saved, the lease released and
// the sinks closed.
func (x *Exporter) Stop() {
	x.cancel()
	x.wg.Wait()
}

type runner struct {
	o    Options
	name string
	sink Sink
	log  *slog.Logger

	rec     *store.Record // the cursor record as last read or written
	cur     cursor
	sent    map[string]uint64 // newest record sent, per tenant
	dirty   bool              // cur.Tenants moved since the last save
	saved   time.Time
	backoff time.Duration
}

func (r *runner) run(ctx context.Context) {
	defer func() {
		// Settle what can be, save it, let another replica take over.
		if set, err := r.sink.Settled(time.Now().Add(time.Hour)); err == nil {
			r.apply(set)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if r.rec != nil && r.cur.Holder == r.o.Instance {
			r.cur.Until = time.Time{}
			r.cur.Holder = ""
			if err := r.save(sctx); err != nil {
				r.log.Warn("event export cursor not saved at stop; records since the last save are sent again", "err", err)
			}
		}
		cancel()
		_ = r.sink.Close()
	}()
	for ctx.Err() == nil {
		wait, err := r.round(ctx)
		if err != nil && ctx.Err() == nil {
			if r.o.Metrics != nil {
				r.o.Metrics.ExportErrors.WithLabelValues(r.name).Inc()
			}
			r.backoff = min(max(2*r.backoff, 100*time.Millisecond), 5*time.Second)
			r.log.Warn("event export failed; sending again from the last delivered record", "err", err.Error(), "retry_in", r.backoff.String())
			r.sink.Reset()
			r.sent = nil
			wait = r.backoff
		} else if err == nil {
			r.backoff = 0
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// round sends what is new, settles what was delivered and saves the
// cursor; it returns how long to wait before the next round.
func (r *runner) round(ctx context.Context) (time.Duration, error) {
	if !r.holdLease(ctx) {
		return r.o.Lease / 3, nil
	}
	if r.sent == nil {
		r.sent = map[string]uint64{}
		for t, s := range r.cur.Tenants {
			r.sent[t] = s
		}
	}
	tenants, err := r.o.Store.EventTenants(ctx)
	if err != nil {
		return 0, fmt.Errorf("list the tenants with events: %w", err)
	}
	hd, ok := r.o.Store.(EventHeader)
	if !ok {
		return 0, errors.New("the store cannot report the head of an event chain")
	}
	busy := false
	heads := make(map[string]uint64, len(tenants))
	for _, t := range tenants {
		head, _, err := hd.EventHead(ctx, t)
		if err != nil {
			return 0, fmt.Errorf("read the head of %s's event chain: %w", t, err)
		}
		heads[t] = head
		if head <= r.sent[t] {
			continue
		}
		evs, err := r.o.Store.ListEvents(ctx, t, r.sent[t], r.o.Batch)
		if err != nil {
			return 0, fmt.Errorf("read %s's event chain: %w", t, err)
		}
		if len(evs) == 0 {
			continue
		}
		n, err := r.sink.Send(ctx, evs)
		if n > 0 {
			r.sent[t] = evs[n-1].Seq
		}
		if err != nil {
			return 0, err
		}
		if r.sent[t] < head {
			busy = true
		}
	}
	set, err := r.sink.Settled(time.Now())
	r.apply(set)
	if err != nil {
		return 0, err
	}
	r.observe(ctx, heads)
	if r.dirty && time.Since(r.saved) >= time.Second || time.Until(r.cur.Until) < r.o.Lease/2 {
		if err := r.save(ctx); err != nil {
			r.log.Warn("event export cursor not saved", "err", err.Error())
		}
	}
	if busy {
		return 0, nil
	}
	return r.o.Poll, nil
}

// apply moves the cursor to what the sink settled.
func (r *runner) apply(set map[string]uint64) {
	for t, seq := range set {
		if seq > r.cur.Tenants[t] {
			if r.o.Metrics != nil {
				r.o.Metrics.ExportRecords.WithLabelValues(r.name).Add(float64(seq - r.cur.Tenants[t]))
			}
			if r.cur.Tenants == nil {
				r.cur.Tenants = map[string]uint64{}
			}
			r.cur.Tenants[t] = seq
			r.dirty = true
		}
	}
}

// observe sets the lag gauges.
func (r *runner) observe(ctx context.Context, heads map[string]uint64) {
	if r.o.Metrics == nil {
		return
	}
	var lag uint64
	var oldest time.Time
	for t, head := range heads {
		done := r.cur.Tenants[t]
		if head <= done {
			continue
		}
		lag += head - done
		evs, err := r.o.Store.ListEvents(ctx, t, done, 1)
		if err == nil && len(evs) == 1 && (oldest.IsZero() || evs[0].Time.Before(oldest)) {
			oldest = evs[0].Time
		}
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(time.Since(oldest).Seconds(), 0)
	}
	spooled := 0.0
	if lag > uint64(r.o.Batch) {
		spooled = 1
	}
	r.o.Metrics.ExportLagRecords.WithLabelValues(r.name).Set(float64(lag))
	r.o.Metrics.ExportLagSeconds.WithLabelValues(r.name).Set(age)
	r.o.Metrics.ExportSpooled.WithLabelValues(r.name).Set(spooled)
}

// holdLease reads the cursor and takes or renews the sink's lease; false
// while another replica holds it.
func (r *runner) holdLease(ctx context.Context) bool {
	now := time.Now()
	if r.rec != nil && r.cur.Holder == r.o.Instance && now.Before(r.cur.Until) {
		return true
	}
	rec, err := r.o.Store.Get(ctx, kindCursor, store.PlatformTenant, r.name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c := cursor{Tenants: map[string]uint64{}, Holder: r.o.Instance, Until: now.Add(r.o.Lease)}
		data, _ := json.Marshal(c)
		rec = &store.Record{Kind: kindCursor, Tenant: store.PlatformTenant, ID: r.name, Data: data}
		if err := r.o.Store.Create(ctx, rec, store.WriteOpts{}); err != nil {
			if !errors.Is(err, store.ErrExists) {
				r.log.Warn("event export cursor not created", "err", err.Error())
			}
			return false
		}
		r.rec, r.cur, r.sent, r.saved = rec, c, nil, now
		return true
	case err != nil:
		r.log.Warn("event export cursor not read", "err", err.Error())
		return false
	}
	var c cursor
	if err := json.Unmarshal(rec.Data, &c); err != nil {
		r.log.Error("event export cursor unreadable", "err", err.Error())
		return false
	}
	if c.Holder != "" && c.Holder != r.o.Instance && now.Before(c.Until) {
		r.rec = nil
		return false
	}
	if c.Holder != r.o.Instance || r.rec == nil {
		// Taken over (or first round): start from the saved cursor.
		r.sink.Reset()
		r.sent = nil
	} else {
		// Still ours: what was settled since the last save stands.
		c.Tenants = r.cur.Tenants
	}
	c.Holder, c.Until = r.o.Instance, now.Add(r.o.Lease)
	if c.Tenants == nil {
		c.Tenants = map[string]uint64{}
	}
	r.rec, r.cur = rec, c
	if err := r.save(ctx); err != nil {
		r.rec = nil
		return false
	}
	return true
}

// save writes the cursor (version-checked) with a renewed lease.
func (r *runner) save(ctx context.Context) error {
	if r.cur.Holder != "" {
		r.cur.Until = time.Now().Add(r.o.Lease)
	}
	data, _ := json.Marshal(r.cur)
	next := *r.rec
	next.Data = data
	if err := r.o.Store.Update(ctx, &next, store.WriteOpts{}); err != nil {
		if errors.Is(err, store.ErrVersionConflict) {
			// Another replica took the sink over: stop sending.
			r.rec = nil
			r.sink.Reset()
			r.sent = nil
		}
		return err
	}
	r.rec = &next
	r.dirty = false
	r.saved = time.Now()
	return nil
}
