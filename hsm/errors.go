package hsm

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/miekg/pkcs11"
)

var (
	// ErrUnavailable means the HSM cannot serve the call right now: the
	// session pool is being rebuilt after a session-level fault, the pool
	// had no free session in time, or the HSM has been closed. Callers
	// answer 503 and try again later.
	ErrUnavailable = errors.New("hsm unavailable")

	// errNotSent marks an ErrUnavailable failure that happened before any
	// call reached the token (no backend, circuit open, no free session):
	// nothing was created or changed. See NotSent.
	errNotSent = errors.New("no call reached the token")

	// ErrKeyNotFound means no key object carries the requested CKA_ID.
	ErrKeyNotFound = errors.New("hsm: key not found")

	// ErrKeyExists means a key object already carries the CKA_ID given to
	// Generate, Import or EnsureWrappingKey's generation step. CKA_ID is
	// how keys are found, so it must stay unique.
	ErrKeyExists = errors.New("hsm: a key with this id already exists")
)

// sessionFaults are the return codes after which the sessions (or the
// login) cannot be trusted any more: all of them are closed and opened
// again, with a new login.
var sessionFaults = map[pkcs11.Error]bool{
	pkcs11.CKR_SESSION_HANDLE_INVALID:   true,
	pkcs11.CKR_SESSION_CLOSED:           true,
	pkcs11.CKR_DEVICE_ERROR:             true,
	pkcs11.CKR_DEVICE_REMOVED:           true,
	pkcs11.CKR_TOKEN_NOT_PRESENT:        true,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:     true,
	pkcs11.CKR_USER_NOT_LOGGED_IN:       true,
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: true,
}

// pinErrors are the login failures that must never be retried on their
// own: each retry with a bad PIN brings the token closer to locking.
var pinErrors = map[pkcs11.Error]bool{
	pkcs11.CKR_PIN_INCORRECT: true,
	pkcs11.CKR_PIN_INVALID:   true,
	pkcs11.CKR_PIN_LEN_RANGE: true,
	pkcs11.CKR_PIN_EXPIRED:   true,
	pkcs11.CKR_PIN_LOCKED:    true,
}

// miekg/pkcs11 formats its errors as "pkcs11: 0xB3: CKR_..."; an error
// flattened with %v keeps that text, so the code is also recovered from it.
var codeInText = regexp.MustCompile(`pkcs11: 0x([0-9A-Fa-f]+)`)

// returnCode finds the PKCS#11 return value inside err, if there is one.
func returnCode(err error) (pkcs11.Error, bool) {
	if err == nil {
		return 0, false
	}
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return pe, true
	}
	if m := codeInText.FindStringSubmatch(err.Error()); m != nil {
		if n, perr := strconv.ParseUint(m[1], 16, 64); perr == nil {
			return pkcs11.Error(n), true
		}
	}
	return 0, false
}

// codeName is the CKR_ name of a return value.
func codeName(c pkcs11.Error) string {
	s := c.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return fmt.Sprintf("CKR_0x%X", uint(c))
}

// isSessionFault reports whether err means the sessions must be rebuilt.
func isSessionFault(err error) bool {
	c, ok := returnCode(err)
	return ok && sessionFaults[c]
}

// isOperationActive reports a session that still has an operation active.
func isOperationActive(err error) bool {
	c, ok := returnCode(err)
	return ok && c == pkcs11.CKR_OPERATION_ACTIVE
}

// IsPINError reports whether err is a refused login (wrong, invalid,
// expired or locked PIN). Such an error must not be retried automatically:
// repeated bad logins lock a token.
func IsPINError(err error) bool {
	c, ok := returnCode(err)
	return ok && pinErrors[c]
}

// ErrorCode names the failure in err for metrics: "" for nil, the CKR_
// name when a PKCS#11 return value is inside, "unavailable" or "timeout"
// for the HSM layer's own conditions and "other" for anything else. The
// set of values is small and fixed, so it is safe as a label.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	if c, ok := returnCode(err); ok {
		return codeName(c)
	}
	var de *deadlineError
	if errors.As(err, &de) {
		return "timeout"
	}
	if errors.Is(err, ErrUnavailable) {
		return "unavailable"
	}
	if errors.Is(err, ErrKeyNotFound) {
		return "not_found"
	}
	return "other"
}

// NotSent reports an error after which the token certainly did nothing:
// the call never reached it. A caller may forget an operation it failed
// without asking the token what it did.
func NotSent(err error) bool { return errors.Is(err, errNotSent) }

// reached wraps the error of a call that followed, in one operation, a
// call that reached the token: even when this one never did (NotSent),
// the operation changed the token, and its caller must settle what it
// made rather than forget it. Everything else the error says (its text,
// ErrUnavailable, its return code, a deadline) stays visible.
type reached struct{ err error }

func (e reached) Error() string        { return e.err.Error() }
func (e reached) Is(target error) bool { return target != errNotSent && errors.Is(e.err, target) }
func (e reached) As(target any) bool   { return errors.As(e.err, target) }

// StillRunning reports a call that reached the token and had not answered
// by its deadline, or when the caller's context ended: it may still
// complete after the caller gave up (a key may appear after a look for it
// found nothing).
func StillRunning(err error) bool {
	var d *deadlineError
	if errors.As(err, &d) && !d.notSent {
		return true
	}
	var a *callAbandoned
	return errors.As(err, &a)
}
