package issuance

import "errors"

// Reason says which rule an input broke. Families map it to their wire
// codes (PCA.00020101 for BadName, and so on).
type Reason uint8

// The rules an input can break.
const (
	BadValue          Reason = iota + 1 // a value out of its range or set
	BadName                             // a subject attribute
	BadKey                              // a key type, size or curve
	BadHash                             // a signature hash name
	BadValidity                         // a validity period
	BadIP                               // an IP address SAN
	BadSANType                          // a SAN of an unknown type
	BadCSR                              // a CSR that proves nothing (signature)
	BadPathLength                       // a path length the issuer does not allow
	BadNameConstraint                   // a name outside the name constraints of a CA above
)

// Error is a refused input: Field is the request field (dotted JSON
// name), Value the offending value when it is safe to show, Msg what is
// wrong with it, one line.
type Error struct {
	Reason Reason
	Field  string
	Value  any
	Msg    string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// ReasonOf is the reason of a refusal, 0 for an error of another kind.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return 0
}

func refuse(r Reason, field string, value any, msg string) *Error {
	return &Error{Reason: r, Field: field, Value: value, Msg: msg}
}
