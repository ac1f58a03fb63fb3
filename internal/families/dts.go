package families

import "github.com/hsmca/hsmca/signer"

func dtsFamily() signer.Family { return signer.BuiltinDTS() }
