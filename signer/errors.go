package signer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/hsmca/hsmca/store"
)

// Kind classifies a domain error. Each API family maps kinds to its own
// status codes and envelope in one place.
type Kind int

const (
	KindInternal        Kind = iota
	KindInvalid              // a field of the request is wrong
	KindNotFound             // no such resource in the caller's tenant
	KindConflict             // already exists, or a unique name is taken
	KindWrongState           // the resource's state forbids the operation
	KindQuotaExceeded        // the tenant's quota for the resource is used up
	KindUnavailable          // the HSM or the store does not answer, or the daemon is too busy (heavy.go)
	KindUnauthenticated      // no credential, or one that is not valid
	KindForbidden            // a valid credential without the right
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not_found"
	case KindConflict:
		return "conflict"
	case KindWrongState:
		return "wrong_state"
	case KindQuotaExceeded:
		return "quota_exceeded"
	case KindUnavailable:
		return "unavailable"
	case KindUnauthenticated:
		return "unauthenticated"
	case KindForbidden:
		return "forbidden"
	}
	return "internal"
}

// FieldError names one invalid field.
type FieldError struct {
	Field    string // JSON name, dotted for nested fields
	Value    any    // the offending value (never a secret)
	Msg      string
	Location string // body, path or query
}

// Reason says, within a Kind, which rule refused a request. Each family
// declares its own reasons as typed constants; api maps (Kind, Reason) to
// the family's wire code in one table per family, so that the domain never
// holds a wire code and api never matches message text.
type Reason string

// Error is the engine's error. Msg is safe to show to the caller; Err, the
// cause, is for logs and never carries secrets either.
type Error struct {
	Kind   Kind
	Reason Reason // empty when the kind says it all
	Msg    string
	Fields []FieldError
	Err    error
	// RetryAfter, when set, is how long the caller should wait before
	// trying again (the families send it as Retry-After).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Msg, e.Err)
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// E builds an Error of a kind with a formatted message.
func E(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Invalid reports one bad field.
func Invalid(field string, value any, msg string) *Error {
	return &Error{Kind: KindInvalid, Msg: field + ": " + msg,
		Fields: []FieldError{{Field: field, Value: value, Msg: msg, Location: "body"}}}
}

// Refused reports a request refused by a rule with a reason. With a field
// it is a field error, as Invalid; without, Msg is msg alone.
func Refused(kind Kind, r Reason, field string, value any, msg string) *Error {
	if field == "" {
		return &Error{Kind: kind, Reason: r, Msg: msg}
	}
	return &Error{Kind: kind, Reason: r, Msg: field + ": " + msg,
		Fields: []FieldError{{Field: field, Value: value, Msg: msg, Location: "body"}}}
}

// QueryInvalid reports one bad query parameter of a list.
func QueryInvalid(field string, value any, msg string) *Error {
	e := Invalid(field, value, msg)
	e.Fields[0].Location = "query"
	return e
}

// With sets the reason of e and returns e. It changes e itself: use it on
// an error just built (E(...).With(r)), not on one another caller holds.
func (e *Error) With(r Reason) *Error {
	if e != nil {
		e.Reason = r
	}
	return e
}

// KindOf returns the kind of err; errors that are not *Error are internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// ReasonOf returns the reason of err, empty when it has none or is not an
// *Error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// AsError returns err as *Error, wrapping unknown errors as internal with a
// generic message so that no internal detail reaches a client.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: KindInternal, Msg: "internal error", Err: err}
}

const maxShownID = 64

// QuoteID is a caller-supplied id as error messages show it in quotes:
// invalid UTF-8 and control characters escaped, cut after 64 bytes so that
// a hostile id cannot make the answer grow with it.
func QuoteID(id string) string {
	if len(id) > maxShownID {
		return strconv.QuoteToASCII(id[:maxShownID]) + "..."
	}
	return strconv.QuoteToASCII(id)
}

// ShortID shows a plain id (printable ASCII, at most 64 bytes) as it is,
// as the compatible services do, and anything else as QuoteID.
func ShortID(id string) string {
	if len(id) > maxShownID {
		return QuoteID(id)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' || id[i] == '"' {
			return QuoteID(id)
		}
	}
	return id
}

// FieldErrors collects the bad fields of one request, so that the caller
// learns of all of them at once rather than one per attempt.
type FieldErrors []FieldError

// Add records one bad body field.
func (f *FieldErrors) Add(field string, value any, msg string) {
	*f = append(*f, FieldError{Field: field, Value: value, Msg: msg, Location: "body"})
}

// Err is nil when no field was added, else one KindInvalid error naming
// every field.
func (f FieldErrors) Err() error {
	if len(f) == 0 {
		return nil
	}
	msgs := make([]string, len(f))
	for i, fe := range f {
		msgs[i] = fe.Field + ": " + fe.Msg
	}
	return &Error{Kind: KindInvalid, Msg: strings.Join(msgs, "; "), Fields: f}
}

// StoreErr maps a store error to the engine's kinds; what names the
// resource in the message ("CA", "key").
func StoreErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return &Error{Kind: KindNotFound, Msg: what + " not found", Err: err}
	case errors.Is(err, store.ErrExists):
		return &Error{Kind: KindConflict, Msg: what + " already exists", Err: err}
	case errors.Is(err, store.ErrQuotaExceeded):
		return &Error{Kind: KindQuotaExceeded, Msg: "quota exceeded for " + what, Err: err}
	case errors.Is(err, store.ErrVersionConflict):
		return &Error{Kind: KindConflict, Msg: what + " was changed concurrently; retry", Err: err}
	case errors.Is(err, store.ErrInvalid):
		return &Error{Kind: KindInvalid, Msg: "invalid " + what + " reference", Err: err}
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &Error{Kind: KindUnavailable, Msg: "the store is unavailable", Err: err}
	}
	return &Error{Kind: KindInternal, Msg: "internal error", Err: fmt.Errorf("%s: %w", what, err)}
}

// Backoff waits a little, longer with each attempt, before a
// read-modify-write retries after store.ErrVersionConflict; the jitter
// keeps contending writers from retrying in lockstep.
func Backoff(attempt int) {
	time.Sleep(time.Duration(rand.IntN(1+min(attempt, 10)*2)+1) * time.Millisecond)
}
