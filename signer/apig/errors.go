package apig

import (
	"errors"
	"fmt"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// Reasons of the family's refusals, in the order an input is checked
// (checkInput); api/apig_errors.go gives each its APIG code.
const (
	ReasonMissing      signer.Reason = "apig.missing"       // a required parameter is absent
	ReasonBadValue     signer.Reason = "apig.bad_value"     // a value, key type or size is not taken
	ReasonUnparseable  signer.Reason = "apig.unparseable"   // the certificate or key cannot be read
	ReasonEncryptedKey signer.Reason = "apig.encrypted_key" // the private key is encrypted
	ReasonKeyMismatch  signer.Reason = "apig.key_mismatch"  // the key is not the certificate's
	ReasonExpired      signer.Reason = "apig.expired"       // the certificate has expired
	ReasonNoSAN        signer.Reason = "apig.no_san"        // the certificate names no host
	ReasonChain        signer.Reason = "apig.chain"         // the chain does not verify
	ReasonNotFound     signer.Reason = "apig.not_found"     // no such certificate in the tenant
	ReasonNameTaken    signer.Reason = "apig.name_taken"    // another certificate has the name
	ReasonConcurrent   signer.Reason = "apig.concurrent"    // the certificate changed meanwhile
)

func invalid(r signer.Reason, field string, value any, msg string) *signer.Error {
	return signer.Refused(signer.KindInvalid, r, field, value, msg)
}

// refusal words a refusal of the encoding readers for field with the
// family's reason: unreadable input, an encrypted key, or a key or count
// the family does not take.
func refusal(field string, err error) error {
	var ee *encoding.Error
	if !errors.As(err, &ee) {
		return err
	}
	r := ReasonBadValue
	switch ee.Reason {
	case encoding.Malformed, encoding.WrongBlock:
		r = ReasonUnparseable
	case encoding.Encrypted:
		r = ReasonEncryptedKey
	}
	return invalid(r, field, ee.Value, ee.Msg)
}

// notFound is the answer for an id that names no certificate of the
// tenant, whatever the reason.
func notFound(cause error) error {
	return &signer.Error{Kind: signer.KindNotFound, Reason: ReasonNotFound, Msg: "the certificate does not exist", Err: cause}
}

// quotaUsedUp is the refusal of a create over the tenant's quota.
func quotaUsedUp(limit int64) error {
	return signer.E(signer.KindQuotaExceeded, "the quota of %d SSL certificates is used up", limit).With(signer.ReasonQuota)
}

// storeErr maps store errors with the family's reasons: a taken unique
// key is the name, a version conflict a concurrent change.
func storeErr(err error) error {
	var ee *signer.Error
	if errors.As(err, &ee) {
		return ee
	}
	switch {
	case errors.Is(err, store.ErrExists):
		return &signer.Error{Kind: signer.KindConflict, Reason: ReasonNameTaken, Msg: "a certificate with this name already exists", Err: err}
	case errors.Is(err, store.ErrVersionConflict):
		return &signer.Error{Kind: signer.KindConflict, Reason: ReasonConcurrent, Msg: "the certificate was changed concurrently; retry", Err: err}
	case errors.Is(err, store.ErrNotFound):
		return notFound(err)
	}
	return signer.StoreErr(err, "certificate")
}

// internal is a failure of hsmca itself, shown to the caller without
// detail.
func internal(format string, args ...any) error {
	return &signer.Error{Kind: signer.KindInternal, Msg: "internal error", Err: fmt.Errorf(format, args...)}
}
