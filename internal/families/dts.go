package families

import (
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
)

func dtsFamily() signer.Family { return dts.Family() }
