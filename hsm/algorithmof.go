package hsm

import "crypto"

// AlgorithmOf names the algorithm of a public key in the vocabulary of
// Generate: EC256, RSA2048, ED25519 and so on; RSA keys of other sizes get
// RSA<bits> and other curves EC-<curve>, "" a key of another type. It is
// the one place hsmca names a key: the HSM layer needs it for the keys it
// finds, so it lives here, and the families above decide which names they
// accept.
func AlgorithmOf(pub crypto.PublicKey) Algorithm { return algorithmOf(pub) }
