package signer

import (
	"context"
	"time"
)

// The old names of the core, kept as thin wrappers so that the family
// files compile unchanged while each family moves into its own package.
// Nothing new may use them; they go once the last family has moved.
//
// Helpers that the family files define for themselves, and that the core
// now provides, are left in those files (other work edits them); each
// family's move replaces them:
//
//	backoff                                        Backoff
//	fieldErrs (add, err)                           FieldErrors (Add, Err)
//	queryErr                                       QueryInvalid
//	pcaInvalid, apigInvalid, apigErr               Refused, E(...).With
//	definiteStoreFailure, settleUncommitted        SettleUncommitted
//	replaceKey                                     ReplaceKey
//	store.Create with nk.Intent, then settle       CommitKey
//	reserveCheck, certQuotaFree, the pre-checks    QuotaFree
//	  of createCA, CreateKey, CreateAPIGCertificate
//	wrapKeys, wrapLeafKey, h.Unwrap                Seal, Unseal
//	observed, observedSigner                       TimedSigner
//	timed, timedSigner                             Timed; ObserveSigning by hand
//	RunPCAJanitor                                  Family.Janitors, RunJanitors
//	init() adding to caExpirySources               Family.CAExpiry
//	keyOwnerKinds, ownKey's owner text             Family.KeyOwners, KeyOwners
//	e.now, e.log, e.store, e.metrics               Now, Log, Store, Metrics

// Engine is the old name of Core.
type Engine = Core

// run is Start and Done around fn.
func (e *Core) run(ctx context.Context, tenant, name string, fn func() (resource string, err error)) error {
	op := e.Start(ctx, tenant, name)
	return op.Done(fn())
}

func storeErr(err error, what string) error { return StoreErr(err, what) }

func quoteID(id string) string { return QuoteID(id) }

func shortID(id string) string { return ShortID(id) }

type bytesCache[T any] = BytesCache[T]

func newBytesCache[T any](decode func([]byte) (T, error)) *BytesCache[T] {
	return NewBytesCache(decode)
}

func jsonCache[T any]() *BytesCache[T] { return JSONCache[T]() }

func (c *BytesCache[T]) get(b []byte) (T, error) { return c.Get(b) }

// The DTS files' names of the CRL schedule (crl_refresh.go).
const (
	crlDueField = CRLDueField
	crlDueNever = CRLDueNever
)

func crlDueAt(t time.Time) string { return CRLDueAt(t) }

func (e *Core) markCRLStale(ctx context.Context, kind, id string) { e.MarkCRLStale(ctx, kind, id) }

func (e *Core) crlStored(ctx context.Context, kind, id string, listedAt, refreshAt time.Time) {
	e.CRLStored(ctx, kind, id, listedAt, refreshAt)
}

func (e *Core) crlOverdue(family, id string, next int64) { e.CRLOverdue(family, id, next) }
