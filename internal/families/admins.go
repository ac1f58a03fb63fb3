package families

import (
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
)

func adminsFamily() signer.Family { return admins.Family() }
