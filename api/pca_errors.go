package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
)

// Wire codes of the CCM PCA family. The PCA.1001000x codes answer by kind
// and the first group below by reason, as the public service does; the
// PCA.000203xx group is hsmca's own, in the same shape, for conditions
// the public list does not name.
const (
	PCACodeInternal        = "PCA.10010001"
	PCACodeNotFound        = "PCA.10010002" // also an unknown id: the public service answers 400
	PCACodeConflict        = "PCA.10010003"
	PCACodeWrongState      = "PCA.10010004"
	PCACodeQuota           = "PCA.10010005"
	PCACodeUnavailable     = "PCA.10010006"
	PCACodeUnauthenticated = "PCA.10010007"
	PCACodeForbidden       = "PCA.10010008"

	PCACodeBadParameter = "PCA.00020001"
	PCACodeBadDN        = "PCA.00020101"
	PCACodeBadKeyAlg    = "PCA.00020102"
	PCACodeBadSigAlg    = "PCA.00020103"
	PCACodeBadValidity  = "PCA.00020109"
	PCACodeBadIP        = "PCA.00020111"
	PCACodeBadSANType   = "PCA.00020112"
	PCACodeBadCAID      = "PCA.00020201"

	PCACodeCAState        = "PCA.00020301" // the CA's status forbids the operation
	PCACodeCertState      = "PCA.00020302" // the certificate's status forbids it
	PCACodeCAQuota        = "PCA.00020303" // the tenant's CA quota is used up
	PCACodeCertQuota      = "PCA.00020304" // the tenant's certificate quota is used up
	PCACodePathLength     = "PCA.00020305" // the issuer allows no such path length
	PCACodeBadCSR         = "PCA.00020306" // unreadable CSR, bad signature, weak key
	PCACodeBadCert        = "PCA.00020307" // an imported certificate is refused
	PCACodeCRLDisabled    = "PCA.00020308" // the CA publishes no CRL
	PCACodeCAType         = "PCA.00020309" // the operation does not apply to this CA type
	PCACodeBusy           = "PCA.00020310" // too many concurrent changes of one CA; retry
	PCACodeExportRefused  = "PCA.00020311" // the requested export format is not offered
	PCACodeNoCRLSign      = "PCA.00020312" // the CA certificate cannot sign CRLs (keyUsage without cRLSign)
	PCACodeNameConstraint = "PCA.00020313" // a name lies outside the name constraints of a CA above

	// Tags: hsmca's own codes in the same shape (PCA.000204xx).
	PCACodeBadTag   = "PCA.00020401" // a tag key or value breaks the rules, or a key is given twice
	PCACodeTagLimit = "PCA.00020402" // the resource would hold more than 20 tags
)

// pcaWire is how the family answers an error: the HTTP status and the
// code of the envelope.
type pcaWire struct {
	status int
	code   string
}

// pcaKinds answers each error kind; the status is always the kind's.
var pcaKinds = map[signer.Kind]pcaWire{
	signer.KindInternal:        {http.StatusInternalServerError, PCACodeInternal},
	signer.KindInvalid:         {http.StatusBadRequest, PCACodeBadParameter},
	signer.KindNotFound:        {http.StatusBadRequest, PCACodeNotFound},
	signer.KindConflict:        {http.StatusBadRequest, PCACodeConflict},
	signer.KindWrongState:      {http.StatusBadRequest, PCACodeWrongState},
	signer.KindQuotaExceeded:   {http.StatusBadRequest, PCACodeQuota},
	signer.KindUnavailable:     {http.StatusServiceUnavailable, PCACodeUnavailable},
	signer.KindUnauthenticated: {http.StatusUnauthorized, PCACodeUnauthenticated},
	signer.KindForbidden:       {http.StatusForbidden, PCACodeForbidden},
}

// pcaReasons are the codes of the family's reasons, in place of the
// kind's code.
var pcaReasons = map[signer.Reason]string{
	pcasvc.ReasonBadParameter:   PCACodeBadParameter,
	pcasvc.ReasonBadDN:          PCACodeBadDN,
	pcasvc.ReasonBadKeyAlg:      PCACodeBadKeyAlg,
	pcasvc.ReasonBadSigAlg:      PCACodeBadSigAlg,
	pcasvc.ReasonBadValidity:    PCACodeBadValidity,
	pcasvc.ReasonBadIP:          PCACodeBadIP,
	pcasvc.ReasonBadSANType:     PCACodeBadSANType,
	pcasvc.ReasonBadCAID:        PCACodeBadCAID,
	pcasvc.ReasonNotFound:       PCACodeNotFound,
	pcasvc.ReasonCAState:        PCACodeCAState,
	pcasvc.ReasonCertState:      PCACodeCertState,
	pcasvc.ReasonCAQuota:        PCACodeCAQuota,
	pcasvc.ReasonCertQuota:      PCACodeCertQuota,
	pcasvc.ReasonPathLength:     PCACodePathLength,
	pcasvc.ReasonBadCSR:         PCACodeBadCSR,
	pcasvc.ReasonBadCert:        PCACodeBadCert,
	pcasvc.ReasonCRLDisabled:    PCACodeCRLDisabled,
	pcasvc.ReasonCAType:         PCACodeCAType,
	pcasvc.ReasonBusy:           PCACodeBusy,
	pcasvc.ReasonExportRefused:  PCACodeExportRefused,
	pcasvc.ReasonNoCRLSign:      PCACodeNoCRLSign,
	pcasvc.ReasonNameConstraint: PCACodeNameConstraint,
	pcasvc.ReasonBadTag:         PCACodeBadTag,
	pcasvc.ReasonTagLimit:       PCACodeTagLimit,
}

// pcaWireOf is the answer to an error of kind k with reason r.
func pcaWireOf(k signer.Kind, r signer.Reason) pcaWire {
	w, ok := pcaKinds[k]
	if !ok {
		w = pcaKinds[signer.KindInternal]
	}
	if code, ok := pcaReasons[r]; ok {
		w.code = code
	}
	return w
}

// pcaError writes the CCM PCA envelope. Unknown ids answer 400
// PCA.10010002, as the public service does.
func pcaError(c *gin.Context, err error) {
	e := signer.AsError(err)
	retryAfter(c, e)
	w := pcaWireOf(e.Kind, e.Reason)
	keepCause(c, w.status, e)
	c.AbortWithStatusJSON(w.status, huaweiEnvelope{Code: w.code, Msg: e.Msg})
}
