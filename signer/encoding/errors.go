package encoding

import "errors"

// Reason says why an input was refused. Families map it to their wire
// codes; Msg is for people.
type Reason uint8

// The reasons of a refusal.
const (
	// Malformed: not PEM, base64 or DER of what the field takes, or no
	// item of the expected type at all.
	Malformed Reason = iota + 1
	// WrongBlock: a PEM block of another type in a field that refuses
	// them (a private key pasted where a certificate goes).
	WrongBlock
	// Encrypted: an encrypted private key where a plain one is needed.
	Encrypted
	// Count: more items than the field takes.
	Count
	// UnsupportedKey: a key type, size or curve hsmca does not take.
	UnsupportedKey
)

// Error is a refused input. Msg continues the name of the field ("csr: "
// + Msg reads as a sentence), is one line and never quotes the input's
// bytes, which may be a secret. Value, when set, is safe to show: a block
// type, a key size, a curve name.
type Error struct {
	Reason Reason
	Msg    string
	Value  any
}

func (e *Error) Error() string { return e.Msg }

// ReasonOf is the reason of a refusal, 0 for an error of another kind.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return 0
}

func refuse(r Reason, msg string) *Error { return &Error{Reason: r, Msg: msg} }
