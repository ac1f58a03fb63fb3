package signer

import (
	"crypto"
	"errors"

	"github.com/hsmca/hsmca/hsm"
)

// What the token can do. The HSM layer reads the token's mechanism list
// when it opens it; these ask it before any work starts, so that a
// request the token cannot serve is refused (KindInvalid, naming the
// missing mechanism) before an intent, a record or a quota unit is
// written. With no HSM open they answer nil: the HSM call that follows
// answers unavailable.

// Supports says whether the token can generate keys of alg and sign
// with them.
func (e *Core) Supports(alg hsm.Algorithm) error {
	return e.ask(func(h HSM) error { return h.Supports(alg) })
}

// SupportsFeature says whether the token can do one of the hsm.Feature*
// operations (RSA-PSS, the sealing of secrets).
func (e *Core) SupportsFeature(feature string) error {
	return e.ask(func(h HSM) error { return h.SupportsFeature(feature) })
}

// SupportsKey says whether the token can take a key like pub (an
// import) and sign with it.
func (e *Core) SupportsKey(pub crypto.PublicKey) error {
	return e.ask(func(h HSM) error { return h.SupportsKey(pub) })
}

// Algorithms is the part of among that the token supports, in among's
// order; all of among while no HSM is open.
func (e *Core) Algorithms(among []hsm.Algorithm) []hsm.Algorithm {
	out := make([]hsm.Algorithm, 0, len(among))
	for _, a := range among {
		if e.Supports(a) == nil {
			out = append(out, a)
		}
	}
	return out
}

func (e *Core) ask(f func(HSM) error) error {
	b := e.hsm.Load()
	if b == nil {
		return nil
	}
	return HSMError(f(b.h), "key")
}

// Unsupported is a token limit (an error of Supports and the like) as a
// refusal of the request field that asked for it (none: "") with the
// family's reason (empty: the kind's answer), and what the caller can do
// instead (hint, may be empty); other errors are returned as they are.
// The message is the field and the limit: "key_algorithm: the HSM token
// does not support EC256 (no CKM_EC_KEY_PAIR_GEN)".
func Unsupported(err error, r Reason, field string, value any, hint string) error {
	var u *hsm.UnsupportedError
	if !errors.As(err, &u) {
		return err
	}
	msg := u.Error()
	if hint != "" {
		msg += "; " + hint
	}
	e := Refused(KindInvalid, r, field, value, msg)
	e.Err = err
	return e
}
