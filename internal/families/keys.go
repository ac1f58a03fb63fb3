package families

import "github.com/hsmca/hsmca/signer"

func keysFamily() signer.Family { return signer.BuiltinKeys() }
