package families

import "github.com/hsmca/hsmca/signer"

func pcaFamily() signer.Family { return signer.BuiltinPCA() }
