package families

import "github.com/hsmca/hsmca/signer"

func adminsFamily() signer.Family { return signer.BuiltinAdmins() }
