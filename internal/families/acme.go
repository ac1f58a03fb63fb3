package families

import (
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/acme"
)

func acmeFamily() signer.Family { return acme.Family() }
