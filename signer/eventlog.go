package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/store"
)

// StoredEvent is an event record with its place in the chain.
type StoredEvent struct {
	Seq uint64 `json:"seq"`
	EventRecord
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash"`
}

// ListEvents returns a tenant's events after a sequence number, oldest first.
func (e *Core) ListEvents(ctx context.Context, tenant string, after uint64, limit int) ([]StoredEvent, error) {
	evs, err := e.store.ListEvents(ctx, tenant, after, limit)
	if err != nil {
		return nil, StoreErr(err, "event")
	}
	return decodeEvents(evs)
}

func decodeEvents(evs []store.Event) ([]StoredEvent, error) {
	out := make([]StoredEvent, 0, len(evs))
	for _, ev := range evs {
		se := StoredEvent{Seq: ev.Seq, PrevHash: ev.PrevHash, Hash: ev.Hash}
		if err := json.Unmarshal(ev.Data, &se.EventRecord); err != nil {
			return nil, StoreErr(err, "event")
		}
		out = append(out, se)
	}
	return out, nil
}

// EventQuery selects events of a tenant's log. Zero values select all.
type EventQuery struct {
	Since     time.Time // events at or after this time
	Operation string    // exact name (KEY_SIGN), or a prefix ending in '*' (KEY_*)
	Outcome   string    // SUCCESS or FAIL
	Limit     int       // 1..1000, default 100
	Cursor    string    // NextCursor of the previous page
}

// EventPage is one page of a tenant's log, oldest first.
type EventPage struct {
	Events     []StoredEvent
	NextCursor string // empty on the last page
}

const (
	eventsListMax = 1000
	// eventScanBudget bounds the records one filtered query reads, so a
	// request for rare events in a long log answers in bounded time: the
	// page may then hold fewer than limit events (even none) and a cursor
	// to continue from.
	eventScanBudgetDefault = 10000
	eventScanChunk         = 1000
)

// eventScanBudget is eventScanBudgetDefault; tests lower it.
var eventScanBudget = eventScanBudgetDefault

// ParseEventCursor checks a cursor of the events list: the sequence number
// of the last event the previous page examined.
func ParseEventCursor(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, QueryInvalid("cursor", s, "not a cursor of this list")
	}
	return n, nil
}

// QueryEvents returns a page of the tenant's event log. Reading the log is
// counted (EVENT_RETRIEVE_LIST) but not recorded in it: a record per read
// would grow the log with every poll of a log collector, and a reader
// following it page by page would never reach its end.
func (e *Core) QueryEvents(ctx context.Context, tenant string, q EventQuery) (*EventPage, error) {
	const name = "EVENT_RETRIEVE_LIST"
	e.metrics.Event(name, metrics.StageStart)
	page, err := e.queryEvents(ctx, tenant, q)
	if err != nil {
		e.metrics.Event(name, metrics.StageFail)
		return nil, err
	}
	e.metrics.Event(name, metrics.StageSuccess)
	return page, nil
}

func (e *Core) queryEvents(ctx context.Context, tenant string, q EventQuery) (*EventPage, error) {
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 1 || q.Limit > eventsListMax {
		return nil, QueryInvalid("limit", q.Limit, fmt.Sprintf("must be from 1 to %d", eventsListMax))
	}
	pos, err := ParseEventCursor(q.Cursor)
	if err != nil {
		return nil, err
	}
	op := strings.ToUpper(strings.TrimSpace(q.Operation))
	prefix := strings.HasSuffix(op, "*")
	op = strings.TrimSuffix(op, "*")
	outcome := strings.ToUpper(strings.TrimSpace(q.Outcome))
	switch outcome {
	case "", metrics.StageSuccess, metrics.StageFail:
	default:
		return nil, QueryInvalid("outcome", q.Outcome, "must be SUCCESS or FAIL")
	}
	filtered := op != "" || outcome != "" || !q.Since.IsZero()
	match := func(ev *StoredEvent) bool {
		switch {
		case outcome != "" && ev.Outcome != outcome:
			return false
		case op != "" && prefix && !strings.HasPrefix(ev.Operation, op):
			return false
		case op != "" && !prefix && ev.Operation != op:
			return false
		case !q.Since.IsZero() && ev.Time.Before(q.Since):
			return false
		}
		return true
	}

	page := &EventPage{Events: []StoredEvent{}}
	scanned := 0
	for {
		n := q.Limit - len(page.Events)
		if filtered {
			n = min(eventScanChunk, eventScanBudget-scanned)
		}
		// One more than needed tells, without another read, whether the
		// log goes on.
		raw, err := e.store.ListEvents(ctx, tenant, pos, n+1)
		if err != nil {
			return nil, StoreErr(err, "event")
		}
		more := len(raw) > n
		if more {
			raw = raw[:n]
		}
		evs, err := decodeEvents(raw)
		if err != nil {
			return nil, err
		}
		for i := range evs {
			pos = evs[i].Seq
			scanned++
			if !match(&evs[i]) {
				continue
			}
			page.Events = append(page.Events, evs[i])
			if len(page.Events) == q.Limit {
				if more || i < len(evs)-1 {
					page.NextCursor = strconv.FormatUint(pos, 10)
				}
				return page, nil
			}
		}
		if !more {
			return page, nil
		}
		if scanned >= eventScanBudget {
			page.NextCursor = strconv.FormatUint(pos, 10)
			return page, nil
		}
	}
}

// ChainReport is the verdict on one tenant's event chain.
type ChainReport struct {
	Tenant   string
	Events   uint64 // records read
	HeadSeq  uint64 // sequence number of the last intact record
	HeadHash string // its hash: note it elsewhere to detect a later rewrite of the whole tail
	// Broken is set at the first broken link: BrokenSeq names the record
	// and Problem says what is wrong with it.
	Broken    bool
	BrokenSeq uint64
	Problem   string
}

// EventHeader is implemented by stores that can report the head of a
// tenant's chain (its last sequence number and hash). Without it a
// deletion of the newest records shows only after the next append.
type EventHeader interface {
	EventHead(ctx context.Context, tenant string) (seq uint64, hash string, err error)
}

// VerifyEventChain walks a tenant's event chain from the first record and
// reports the first broken link: a record edited in place, a record
// missing (deleted), records out of order, a back-link that does not match
// (a rewritten predecessor), or a chain shorter than its head says.
func VerifyEventChain(ctx context.Context, st store.Store, tenant string) (*ChainReport, error) {
	rep := &ChainReport{Tenant: tenant}
	var (
		prevHash string
		prevSeq  uint64
		after    uint64
	)
	for {
		evs, err := st.ListEvents(ctx, tenant, after, eventScanChunk)
		if err != nil {
			return nil, fmt.Errorf("read the event chain of %s: %w", tenant, err)
		}
		if len(evs) == 0 {
			break
		}
		rep.Events += uint64(len(evs))
		bad, verr := store.VerifyChain(evs, prevHash, prevSeq)
		if verr != nil {
			rep.Broken, rep.BrokenSeq = true, bad
			rep.Problem, err = explainBreak(ctx, st, tenant, bad, verr)
			return rep, err
		}
		last := evs[len(evs)-1]
		prevHash, prevSeq, after = last.Hash, last.Seq, last.Seq
		rep.HeadSeq, rep.HeadHash = last.Seq, last.Hash
	}
	if h, ok := st.(EventHeader); ok {
		seq, hash, err := h.EventHead(ctx, tenant)
		if err != nil {
			return nil, fmt.Errorf("read the head of the event chain of %s: %w", tenant, err)
		}
		switch {
		case seq > prevSeq:
			rep.Broken, rep.BrokenSeq = true, prevSeq+1
			if seq == prevSeq+1 {
				rep.Problem = fmt.Sprintf("record %d is missing: the newest record was deleted (the chain head says %d)", seq, seq)
			} else {
				rep.Problem = fmt.Sprintf("records %d to %d are missing: the newest records were deleted (the chain head says %d)", prevSeq+1, seq, seq)
			}
		case seq < prevSeq:
			rep.Broken, rep.BrokenSeq = true, seq+1
			rep.Problem = fmt.Sprintf("records after %d were added outside hsmca (the chain head says %d)", seq, seq)
		case hash != prevHash:
			rep.Broken, rep.BrokenSeq = true, seq
			rep.Problem = fmt.Sprintf("record %d does not match the chain head: it was rewritten", seq)
		}
	}
	return rep, nil
}

// explainBreak turns store.VerifyChain's verdict on the record bad into
// what probably happened to it. A sequence gap is a deletion unless the
// missing record turns up elsewhere in the log, which means reordering.
func explainBreak(ctx context.Context, st store.Store, tenant string, bad uint64, verr error) (string, error) {
	var cb *store.ChainBreak
	if !errors.As(verr, &cb) {
		return fmt.Sprintf("record %d: %s", bad, verr.Error()), nil
	}
	switch cb.Kind {
	case store.BreakGap:
		var after uint64
		for {
			evs, err := st.ListEvents(ctx, tenant, after, eventScanChunk)
			if err != nil {
				return "", fmt.Errorf("read the event chain of %s: %w", tenant, err)
			}
			if len(evs) == 0 {
				return fmt.Sprintf("record %d is missing: it was deleted", bad), nil
			}
			for _, ev := range evs {
				if ev.Seq == bad {
					return fmt.Sprintf("record %d is out of place: records were reordered", bad), nil
				}
			}
			// Stored order is by position, not by the Seq inside a record,
			// so a reordered chain still pages forward.
			next := evs[len(evs)-1].Seq
			if next <= after {
				return fmt.Sprintf("record %d is out of place: records were reordered", bad), nil
			}
			after = next
		}
	case store.BreakLink:
		return fmt.Sprintf("record %d does not link to record %d: record %d was rewritten (its hash recomputed) or record %d was replaced",
			bad, bad-1, bad-1, bad), nil
	case store.BreakHash:
		return fmt.Sprintf("record %d was edited: its hash does not match its content", bad), nil
	}
	return fmt.Sprintf("record %d: %s", bad, cb.Error()), nil
}

// VerifyEventChains verifies the chains of tenants, or of every tenant
// with events when tenants is empty.
func VerifyEventChains(ctx context.Context, st store.Store, tenants []string) ([]ChainReport, error) {
	if len(tenants) == 0 {
		var err error
		if tenants, err = st.EventTenants(ctx); err != nil {
			return nil, fmt.Errorf("list the tenants with events: %w", err)
		}
	}
	out := make([]ChainReport, 0, len(tenants))
	for _, t := range tenants {
		r, err := VerifyEventChain(ctx, st, t)
		if err != nil {
			return out, err
		}
		out = append(out, *r)
	}
	return out, nil
}
