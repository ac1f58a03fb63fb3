package families

import (
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/apig"
)

func apigFamily() signer.Family { return apig.Family() }
