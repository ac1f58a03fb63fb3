// Package families lists the API families a daemon serves, in the order
// the core registers them: every process that builds a signer core or
// opens the store takes the list from here, so that all of them declare
// the same store indexes (a store opened without an index drops it).
package families

import (
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// All returns the families in registration order. keys comes before apig:
// the keys API resolves an id through the key owners in this order. ocsp
// comes after them: the responder shared by dts and pca; acme, fronting
// pca's CAs, last.
func All() []signer.Family {
	return []signer.Family{keysFamily(), apigFamily(), dtsFamily(), pcaFamily(), adminsFamily(), ocspFamily(), acmeFamily()}
}

// Indexes are the store indexes of every family and of the core.
func Indexes() []store.Index { return signer.StoreIndexes(All()...) }
