package signer

import (
	"context"

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
func (o *Op) Done(resource string, err error) error {
	outcome := metrics.StageSuccess
	code := ""
	if err != nil {
		outcome = metrics.StageFail
		code = AsError(err).Kind.String()
	}
	o.c.metrics.Event(o.event, outcome)
	caller := CallerFrom(o.ctx)
	rec := EventRecord{
		Tenant: o.tenant, Principal: caller.Principal, Operation: o.event, Outcome: outcome,
		Resource: resource, RequestID: caller.RequestID, ErrorCode: code,
	}
	if werr := o.c.events.append(o.ctx, o.tenant, rec); werr != nil {
		o.c.log.Error("event record not written", "event", o.event, "outcome", outcome, "err", werr)
		if err == nil {
			return &Error{Kind: KindUnavailable, Msg: "the event log is unavailable", Err: werr}
		}
	}
	return err
}
