package signer

import (
	"errors"
	"fmt"
	"strconv"
	"time"
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

// Error is the engine's error. Msg is safe to show to the caller; Err, the
// cause, is for logs and never carries secrets either.
type Error struct {
	Kind   Kind
	Msg    string
	Code   string // optional family-neutral code, e.g. "quota.ca"
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

// KindOf returns the kind of err; errors that are not *Error are internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
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

// quoteID is a caller-supplied id as error messages show it in quotes:
// invalid UTF-8 and control characters escaped, cut after 64 bytes so that
// a hostile id cannot make the answer grow with it.
func quoteID(id string) string {
	if len(id) > maxShownID {
		return strconv.QuoteToASCII(id[:maxShownID]) + "..."
	}
	return strconv.QuoteToASCII(id)
}

// shortID shows a plain id (printable ASCII, at most 64 bytes) as it is,
// as the compatible services do, and anything else as quoteID.
func shortID(id string) string {
	if len(id) > maxShownID {
		return quoteID(id)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' || id[i] == '"' {
			return quoteID(id)
		}
	}
	return id
}
