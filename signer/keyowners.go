package signer

// Record kinds whose records own an HSM key that the keys API
// (/v1/keys/{id}) can use under the record's own id are declared by their
// families (Family.KeyOwners; the keys API's own is keys.RecordKey). An
// owner record carries, in its Fields:
//
//	KeyField ("key_id")   the CKA_ID of the key it owns
//	"key_algorithm"       the hsm.Algorithm name (EC256, RSA2048, ...;
//	                      imported keys may carry RSA<bits> or EC-<curve>)
//	"key_state"           "disabled" when the key may not sign; anything
//	                      else, or absent, means enabled
//
// Field names an owner record uses for its key (see above).
const (
	KeyAlgorithmField = "key_algorithm"
	KeyStateField     = "key_state"
	KeyStateDisabled  = "disabled"
)

// KeyOwner declares a record kind whose records own an HSM key that the
// keys API can use under the record's own id (see above for the fields
// such a record carries).
type KeyOwner struct {
	RecordKind string
	// Describe is what a refusal to manage the key elsewhere says it
	// belongs to, and where to manage it ("an APIG certificate; manage it
	// through ..."); empty for the keys API's own kind.
	Describe string
}

// KeyOwners returns the registered key-owner kinds, in the order the keys
// API searches them when it resolves an id.
func (e *Core) KeyOwners() []KeyOwner {
	var out []KeyOwner
	for _, f := range e.families {
		out = append(out, f.KeyOwners...)
	}
	return out
}
