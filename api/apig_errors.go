package api

import (
	"net/http"

	"github.com/hsmca/hsmca/signer"
	apigsvc "github.com/hsmca/hsmca/signer/apig"
)

// APIG error codes (API.md, family 3), chosen here and nowhere else: the
// engine says what went wrong as a kind and a reason.
const (
	APIGCodeMissing      = "APIG.2001"
	APIGCodeBadValue     = "APIG.2012"
	APIGCodeKeyMismatch  = "APIG.2101"
	APIGCodeExpired      = "APIG.2102"
	APIGCodeChain        = "APIG.2104"
	APIGCodeEncryptedKey = "APIG.2105"
	APIGCodeUnparseable  = "APIG.2106"
	APIGCodeNoSAN        = "APIG.2109"
	APIGCodeNotFound     = "APIG.3021"
	APIGCodeNameTaken    = "APIG.3325"
	// APIGCodeConcurrent is a concurrent change; the public service also
	// answers it for a used-up quota and a state that forbids the request.
	APIGCodeConcurrent      = "APIG.3000"
	APIGCodeUnauthenticated = "APIG.1002"
	APIGCodeForbidden       = "APIG.1005"
	APIGCodeUnavailable     = "APIG.9000"
	APIGCodeInternal        = "APIG.9999"
)

type apigKey struct {
	kind   signer.Kind
	reason signer.Reason
}

type apigAnswer struct {
	status int
	code   string
}

// apigAnswers is the one table of the family's answers: (kind, reason) to
// status and code. A row without a reason is the kind's answer for any
// reason that has no row of its own.
var apigAnswers = map[apigKey]apigAnswer{
	{signer.KindInvalid, ""}:                         {http.StatusBadRequest, APIGCodeBadValue},
	{signer.KindInvalid, apigsvc.ReasonMissing}:      {http.StatusBadRequest, APIGCodeMissing},
	{signer.KindInvalid, apigsvc.ReasonBadValue}:     {http.StatusBadRequest, APIGCodeBadValue},
	{signer.KindInvalid, apigsvc.ReasonUnparseable}:  {http.StatusBadRequest, APIGCodeUnparseable},
	{signer.KindInvalid, apigsvc.ReasonEncryptedKey}: {http.StatusBadRequest, APIGCodeEncryptedKey},
	{signer.KindInvalid, apigsvc.ReasonKeyMismatch}:  {http.StatusBadRequest, APIGCodeKeyMismatch},
	{signer.KindInvalid, apigsvc.ReasonExpired}:      {http.StatusBadRequest, APIGCodeExpired},
	{signer.KindInvalid, apigsvc.ReasonNoSAN}:        {http.StatusBadRequest, APIGCodeNoSAN},
	{signer.KindInvalid, apigsvc.ReasonChain}:        {http.StatusBadRequest, APIGCodeChain},
	{signer.KindNotFound, ""}:                        {http.StatusNotFound, APIGCodeNotFound},
	{signer.KindNotFound, apigsvc.ReasonNotFound}:    {http.StatusNotFound, APIGCodeNotFound},
	{signer.KindConflict, ""}:                        {http.StatusBadRequest, APIGCodeNameTaken},
	{signer.KindConflict, apigsvc.ReasonNameTaken}:   {http.StatusBadRequest, APIGCodeNameTaken},
	{signer.KindConflict, apigsvc.ReasonConcurrent}:  {http.StatusBadRequest, APIGCodeConcurrent},
	{signer.KindWrongState, ""}:                      {http.StatusBadRequest, APIGCodeConcurrent},
	{signer.KindQuotaExceeded, ""}:                   {http.StatusBadRequest, APIGCodeConcurrent},
	{signer.KindUnavailable, ""}:                     {http.StatusServiceUnavailable, APIGCodeUnavailable},
	{signer.KindUnauthenticated, ""}:                 {http.StatusUnauthorized, APIGCodeUnauthenticated},
	{signer.KindForbidden, ""}:                       {http.StatusForbidden, APIGCodeForbidden},
}

// apigAnswerOf is the status and code of an engine error in the APIG
// family: its (kind, reason) row, else its kind's row, else 500.
func apigAnswerOf(e *signer.Error) (int, string) {
	if a, ok := apigAnswers[apigKey{e.Kind, e.Reason}]; ok {
		return a.status, a.code
	}
	if a, ok := apigAnswers[apigKey{e.Kind, ""}]; ok {
		return a.status, a.code
	}
	return http.StatusInternalServerError, APIGCodeInternal
}
