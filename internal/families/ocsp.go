package families

import (
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
	"github.com/hsmca/hsmca/signer/ocsp"
	"github.com/hsmca/hsmca/signer/pca"
)

// ocspFamily is the OCSP responder's registration: its records' indexes
// and its janitor, over the families whose CAs answer OCSP requests.
func ocspFamily() signer.Family {
	return ocsp.Family(func(c *signer.Core) []*ocsp.Publisher {
		return []*ocsp.Publisher{pca.New(c).OCSPPublisher(), dts.New(c).OCSPPublisher()}
	})
}
