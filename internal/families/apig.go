package families

import "github.com/hsmca/hsmca/signer"

func apigFamily() signer.Family { return signer.BuiltinAPIG() }
