package signer

import "github.com/hsmca/hsmca/signer/encoding"

// pemEncode builds the PEM seeds of the fuzz targets (parsers_fuzz_test.go).
func pemEncode(typ string, der []byte) string { return encoding.EncodePEM(typ, der) }
