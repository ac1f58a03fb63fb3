package signer

import (
	"crypto"

	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
)

// Helpers that the DTS certificate file (dts_cert.go, gone with the DTS
// move) defined and that other families' files still call; each goes
// when its last caller moves.

// printableString: PCA's subject rules (pca_names.go).
func printableString(s string) bool { return issuance.PrintableString(s) }

// publicKeysEqual: the APIG key check (apig.go).
func publicKeysEqual(a, b crypto.PublicKey) bool { return encoding.PublicKeysEqual(a, b) }
