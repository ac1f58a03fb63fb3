package keys

// knownKey is what a signature needs of a key's record, kept from the
// last full read (Sign, signer.Known): the owner record's kind and
// version, the HSM object it names and its algorithm.
type knownKey struct {
	kind      string
	version   uint64
	hsmKey    string
	algorithm string
}
