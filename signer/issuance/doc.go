// Package issuance is hsmca's X.509 without the HSM or the store: the
// certificate and CRL profiles, the checks of names, SANs, CSRs, validity
// and path length, the mapping of key and hash to signature algorithm,
// serial numbers and key identifiers, and the one timed crypto.Signer
// wrapper through which every HSM signature of a certificate, CSR or CRL
// goes. It signs with whatever crypto.Signer it is handed, so its tests
// run on in-memory Go keys.
//
// Refusals carry a Reason and the field they concern; each family picks
// its wire code for the reason. The package knows no family, no engine
// and no metrics registry.
package issuance
