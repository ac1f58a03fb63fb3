package acme

import (
	"github.com/hsmca/hsmca/signer"
)

// Reasons of the family's refusals: each is an ACME error type (RFC 8555
// §6.7, RFC 9773), the last part of its urn:ietf:params:acme:error: URN.
// api/acme_errors.go maps each to its HTTP status.
const (
	ReasonAccountDoesNotExist     signer.Reason = "accountDoesNotExist"
	ReasonAlreadyRevoked          signer.Reason = "alreadyRevoked"
	ReasonBadCSR                  signer.Reason = "badCSR"
	ReasonBadNonce                signer.Reason = "badNonce"
	ReasonBadPublicKey            signer.Reason = "badPublicKey"
	ReasonBadRevocationReason     signer.Reason = "badRevocationReason"
	ReasonBadSignatureAlgorithm   signer.Reason = "badSignatureAlgorithm"
	ReasonConnection              signer.Reason = "connection"
	ReasonDNS                     signer.Reason = "dns"
	ReasonExternalAccountRequired signer.Reason = "externalAccountRequired"
	ReasonIncorrectResponse       signer.Reason = "incorrectResponse"
	ReasonInvalidContact          signer.Reason = "invalidContact"
	ReasonMalformed               signer.Reason = "malformed"
	ReasonOrderNotReady           signer.Reason = "orderNotReady"
	ReasonRateLimited             signer.Reason = "rateLimited"
	ReasonRejectedIdentifier      signer.Reason = "rejectedIdentifier"
	ReasonServerInternal          signer.Reason = "serverInternal"
	ReasonTLS                     signer.Reason = "tls"
	ReasonUnauthorized            signer.Reason = "unauthorized"
	ReasonUnsupportedContact      signer.Reason = "unsupportedContact"
	ReasonUnsupportedIdentifier   signer.Reason = "unsupportedIdentifier"
	ReasonAlreadyReplaced         signer.Reason = "alreadyReplaced"
	// ReasonConflict is no ACME type: a key already bound to another
	// account (409 with its Location), answered as malformed.
	ReasonConflict signer.Reason = "conflict"
)

// ErrorNS is the namespace of ACME error types.
const ErrorNS = "urn:ietf:params:acme:error:"

// problem is a refusal of the family of reason r.
func problem(r signer.Reason, msg string) *signer.Error {
	kind := signer.KindInvalid
	switch r {
	case ReasonUnauthorized, ReasonAccountDoesNotExist, ReasonExternalAccountRequired:
		kind = signer.KindForbidden
	case ReasonOrderNotReady, ReasonAlreadyRevoked, ReasonAlreadyReplaced:
		kind = signer.KindWrongState
	case ReasonRateLimited:
		kind = signer.KindQuotaExceeded
	case ReasonConflict:
		kind = signer.KindConflict
	case ReasonServerInternal:
		kind = signer.KindInternal
	}
	return &signer.Error{Kind: kind, Reason: r, Msg: msg}
}

// Problem is an ACME problem document (RFC 7807) as the family stores it
// in a challenge or an order.
type Problem struct {
	Type   string `json:"type"`
	Detail string `json:"detail,omitempty"`
	Status int    `json:"status,omitempty"`
}

// problemDoc is the stored form of a validation failure.
func problemDoc(r signer.Reason, detail string) *Problem {
	return &Problem{Type: ErrorNS + string(r), Detail: detail, Status: 400}
}
