package families

import (
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/keys"
)

func keysFamily() signer.Family { return keys.Family() }
