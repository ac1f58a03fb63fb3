package signer

// Error codes of the CCM PCA family. The first group is the public
// service's; the PCA.000203xx group is hsmca's own, in the same shape, for
// conditions the public list does not name.
const (
	CodeBadParameter  = "PCA.00020001"
	CodeBadDN         = "PCA.00020101"
	CodeBadKeyAlg     = "PCA.00020102"
	CodeBadSigAlg     = "PCA.00020103"
	CodeBadValidity   = "PCA.00020109"
	CodeBadIP         = "PCA.00020111"
	CodeBadSANType    = "PCA.00020112"
	CodeBadCAID       = "PCA.00020201"
	CodeNotFound      = "PCA.10010002"
	CodeCAState       = "PCA.00020301" // the CA's status forbids the operation
	CodeCertState     = "PCA.00020302" // the certificate's status forbids it
	CodeCAQuota       = "PCA.00020303" // the tenant's CA quota is used up
	CodeCertQuota     = "PCA.00020304" // the tenant's certificate quota is used up
	CodePathLength    = "PCA.00020305" // the issuer allows no such path length
	CodeBadCSR        = "PCA.00020306" // unreadable CSR, bad signature, weak key
	CodeBadCert       = "PCA.00020307" // an imported certificate is refused
	CodeCRLDisabled   = "PCA.00020308" // the CA publishes no CRL
	CodeCAType        = "PCA.00020309" // the operation does not apply to this CA type
	CodeBusy          = "PCA.00020310" // too many concurrent changes of one CA; retry
	CodeExportRefused = "PCA.00020311" // the requested export format is not offered
	CodeNoCRLSign     = "PCA.00020312" // the CA certificate cannot sign CRLs (keyUsage without cRLSign)
	// CodeNameConstraint: a name of the certificate lies outside the name
	// constraints of its issuer or of a CA above it.
	CodeNameConstraint = "PCA.00020313"
)

// pcaInvalid is a field error carrying a PCA code.
func pcaInvalid(code, field string, value any, msg string) *Error {
	e := Invalid(field, value, msg)
	e.Code = code
	return e
}

// pcaNotFound is the answer for an unknown id, or one of another tenant.
func pcaNotFound(what, id string) *Error {
	return &Error{Kind: KindNotFound, Code: CodeNotFound, Msg: what + " " + shortID(id) + " does not exist"}
}
