package signer

// Record kinds whose records own an HSM key that the keys API
// (/v1/keys/{id}) can use under the record's own id. An owner record
// carries, in its Fields:
//
//	KeyField ("key_id")   the CKA_ID of the key it owns
//	"key_algorithm"       the hsm.Algorithm name (EC256, RSA2048, ...;
//	                      imported keys may carry RSA<bits> or EC-<curve>)
//	"key_state"           "disabled" when the key may not sign; anything
//	                      else, or absent, means enabled
const (
	KindKey             = "key"
	KindAPIGCertificate = "apig_certificate"
)

// Field names an owner record uses for its key (see above).
const (
	KeyAlgorithmField = "key_algorithm"
	KeyStateField     = "key_state"
	KeyStateDisabled  = "disabled"
)

// keyOwnerKinds are searched in order when the keys API resolves an id.
var keyOwnerKinds = []string{KindKey, KindAPIGCertificate}
