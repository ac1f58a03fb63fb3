package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
)

// The wire codes of the MATTR VII ecosystem family (DTS root CAs and
// VICAL signers): the native envelope, whose code follows the error's
// kind (nativeError), except for the refusals the public service names
// with codes of their own, chosen here from the error's kind and reason.

// EcosystemCodeNoCRL answers a revocation-list request for a root that
// has no CRL (an unmanaged root, or none signed yet).
const EcosystemCodeNoCRL = "NoCertificateRevocationList"

// EcosystemCodeNoIssuerAltName answers a managed root's creation while
// the daemon has no IssuerAlternativeName configured (503: the request
// is fine, the daemon cannot serve it until its operator sets one).
const EcosystemCodeNoIssuerAltName = "IssuerAlternativeNameNotConfigured"

type ecosystemWire struct {
	status int
	code   string
}

var ecosystemCodes = map[signer.Kind]map[signer.Reason]ecosystemWire{
	signer.KindNotFound:    {dts.ReasonNoCRL: {http.StatusNotFound, EcosystemCodeNoCRL}},
	signer.KindUnavailable: {dts.ReasonNoIssuerAltName: {http.StatusServiceUnavailable, EcosystemCodeNoIssuerAltName}},
}

// ecosystemError writes err in the ecosystem family's envelope.
func ecosystemError(c *gin.Context, err error) {
	e := signer.AsError(err)
	if w, ok := ecosystemCodes[e.Kind][e.Reason]; ok && e.Reason != "" {
		writeNative(c, w.status, w.code, e)
		return
	}
	nativeError(c, err)
}
