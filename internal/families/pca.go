package families

import (
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/pca"
)

func pcaFamily() signer.Family { return pca.Family() }
