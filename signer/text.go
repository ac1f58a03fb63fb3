package signer

import "github.com/hsmca/hsmca/signer/issuance"

// hasUnsafeText reports text no name may hold (issuance.UnsafeText). The
// DTS files use it; their move replaces it.
func hasUnsafeText(s string) bool { return issuance.UnsafeText(s) }
