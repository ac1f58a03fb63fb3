package signer

import (
	"context"
	"errors"

	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/store"
)

// Op is one operation under its event, between Start and Done. It is the
// run envelope without a closure: the use case reads top to bottom in its
// own function, and no call stack re-enters the use-case file.
type Op struct {
	c      *Core
	ctx    context.Context
	tenant string
	event  string
	// written: the SUCCESS record of this resource went with its Create
	// (WithEvent).
	written *string
	// alone: this operation holds Core.aloneCreate (WithEvent).
	alone bool
	ended bool // counted out of Core.inflight
}

// Start begins an operation: it counts the event's START. Every Start is
// ended by exactly one Done, on every path:
//
//	op := c.Start(ctx, tenant, "KEY_CREATE")
//	id, err := ...
//	return op.Done(id, err)
//
// An empty tenant records the event in the platform's chain.
func (c *Core) Start(ctx context.Context, tenant, event string) *Op {
	c.metrics.Event(event, metrics.StageStart)
	c.inflight.Add(1)
	if tenant == "" {
		tenant = store.PlatformTenant
	}
	return &Op{c: c, ctx: ctx, tenant: tenant, event: event}
}

// Done ends the operation: SUCCESS or FAIL as a counter and an event
// record in the tenant's chain (the caller's principal and request id come
// from the context given to Start), and returns err. The record is written
// before Done returns, so an acknowledged operation is always in the log;
// when it cannot be written, a success becomes an unavailable error.
// resource names what the operation acted on (empty when nothing).
//
// A deferred check of the caller's credential goes with the record
// (credentialGuard): when it fails nothing is written, the check runs,
// and its refusal ends the operation, or the record goes alone.
func (o *Op) Done(resource string, err error) error {
	outcome := metrics.StageSuccess
	code := ""
	if err != nil {
		outcome = metrics.StageFail
		code = AsError(err).Kind.String()
	}
	var werr error
	carried := false
	if cg, p := o.credentialGuard(); cg != nil {
		werr = o.c.events.appendIf(o.ctx, o.tenant, o.record(resource, outcome, code), cg)
		if carried = !errors.Is(werr, errGuardFailed); carried && werr == nil {
			p.carried()
		}
	}
	if !carried {
		if cerr := AwaitCredential(o.ctx); cerr != nil {
			return o.refused(cerr)
		}
	}
	o.release()
	o.c.metrics.Event(o.event, outcome)
	if !carried {
		if err == nil && o.written != nil && *o.written == resource {
			// Committed with the resource (WithEvent).
			return nil
		}
		werr = o.c.events.append(o.ctx, o.tenant, o.record(resource, outcome, code))
	}
	if werr != nil {
		o.c.log.Error("event record not written", "event", o.event, "outcome", outcome, "err", werr)
		if err == nil {
			return &Error{Kind: KindUnavailable, Msg: "the event log is unavailable", Err: werr}
		}
	}
	return err
}

// credentialGuard is the guard that carries the deferred check of the
// caller's credential (CredentialCheck.guard) with the operation's
// record, and the check; nil when there is none to carry.
func (o *Op) credentialGuard() (*store.Guard, *CredentialCheck) {
	return pendingCheck(o.ctx, o.c.credentialGuards)
}

// pendingCheck is the deferred check of ctx's caller still to be made,
// and the guard a write carries it in (CredentialCheck.guard); nil when
// the store takes no such guards (carry false) or there is none.
func pendingCheck(ctx context.Context, carry bool) (*store.Guard, *CredentialCheck) {
	if ctx == nil || !carry {
		return nil, nil
	}
	p := CallerFrom(ctx).Check
	return p.guard(), p
}

// refused ends an operation whose credential's check, run beside it,
// refused the request (AwaitCredential): a FAIL counted, no record (a
// request refused its credential is nobody's operation), and the
// refusal returned.
func (o *Op) refused(err error) error {
	o.release()
	o.c.metrics.Event(o.event, metrics.StageFail)
	return err
}

// Guarded reports whether DoneIf can be used: the store appends event
// records under guards (store.GuardedEvents).
func (o *Op) Guarded() bool { return o.c.guardedEvents }

// DoneIf ends a successful operation whose work relied on a record read
// earlier (a key's state, the HSM object it names) instead of reading it
// again first: the SUCCESS record is appended only while the record is
// still at the version read, checked in the same atomic step. held is
// false when it has changed (or is gone): then nothing was recorded or
// counted, the work's result must be discarded, and the operation is
// still open: the caller does the work again on a fresh read and ends it
// with Done. With held true, err is Done's answer for a success (nil, or
// unavailable when the record could not be written). Only when Guarded.
// A deferred check of the caller's credential goes with the record too
// (Done).
func (o *Op) DoneIf(resource string, guard store.Guard) (held bool, err error) {
	rec := o.record(resource, metrics.StageSuccess, "")
	g := &guard
	cg, p := o.credentialGuard()
	if cg != nil {
		g = withGuard(&guard, cg)
	} else if cerr := AwaitCredential(o.ctx); cerr != nil {
		return true, o.refused(cerr)
	}
	werr := o.c.events.appendIf(o.ctx, o.tenant, rec, g)
	if cg != nil {
		if errors.Is(werr, errGuardFailed) {
			// The record or the credential changed: the check tells.
			if cerr := AwaitCredential(o.ctx); cerr != nil {
				return true, o.refused(cerr)
			}
			werr = o.c.events.appendIf(o.ctx, o.tenant, rec, &guard)
		} else if werr == nil {
			p.carried()
		}
	}
	if errors.Is(werr, errGuardFailed) {
		return false, nil
	}
	o.release()
	o.c.metrics.Event(o.event, metrics.StageSuccess)
	if werr != nil {
		o.c.log.Error("event record not written", "event", o.event, "outcome", metrics.StageSuccess, "err", werr)
		return true, &Error{Kind: KindUnavailable, Msg: "the event log is unavailable", Err: werr}
	}
	return true, nil
}

// carry reports whether a Create may carry the operation's record now
// (WithEvent): always on bolt; on Redis only for the engine's one
// operation under way, with no append under way, taking Core.aloneCreate.
func (o *Op) carry() bool {
	if !o.c.eventCreateIdle || o.alone {
		return true
	}
	if o.c.inflight.Load() > 1 || !o.c.events.idleNow() || !o.c.aloneCreate.CompareAndSwap(false, true) {
		return false
	}
	o.alone = true
	return true
}

// release ends the operation's share of the engine's state: its count
// in Core.inflight and Core.aloneCreate, if it holds it.
func (o *Op) release() {
	if !o.ended {
		o.ended = true
		o.c.inflight.Add(-1)
	}
	if o.alone {
		o.alone = false
		o.c.aloneCreate.Store(false)
	}
}

func (o *Op) record(resource, outcome, code string) EventRecord {
	caller := CallerFrom(o.ctx)
	return EventRecord{
		Tenant: o.tenant, Principal: caller.Principal, Operation: o.event, Outcome: outcome,
		Resource: resource, RequestID: caller.RequestID, ErrorCode: code,
	}
}

// WithEvent returns opts for rec's Create, the last step of the
// operation on resource, carrying the operation's SUCCESS record when the
// store writes event records with a Create (bolt) and rec belongs to the
// operation's tenant: the resource and the record of its creation are then
// one commit instead of two, and Done(resource, nil) writes nothing more.
// If the Create fails nothing of it is written, and Done records the
// failure as usual. The record is the one Done would write, stamped now.
// Otherwise opts comes back unchanged and Done writes the record.
//
// On a store whose Create with an event holds the chain alone
// (store.EventCreateAlone: Redis) the record goes with the Create only
// when the operation is the engine's one under way and the event writer
// is idle: an idle daemon saves a round trip, and a busy one keeps
// writing its records in groups instead of one chain write at a time.
//
// Only for a Create after which the operation cannot fail: a failure
// after it would leave a SUCCESS and a FAIL record of one operation.
func (o *Op) WithEvent(resource string, rec *store.Record, opts store.WriteOpts) store.WriteOpts {
	o.written = nil
	if !o.c.eventsWithCreate || rec.Tenant != o.tenant || !o.carry() {
		return opts
	}
	data, err := encodeEvent(o.record(resource, metrics.StageSuccess, ""))
	if err != nil {
		return opts
	}
	opts.Event = data
	o.written = &resource
	return opts
}
