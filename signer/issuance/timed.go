package issuance

import (
	"crypto"
	"io"
	"time"
)

// Observer receives the time of each signature that succeeded: the
// engine passes its metrics' ObserveSigning, so this package needs no
// metrics registry.
type Observer func(operation, keyAlgorithm string, d time.Duration)

// Timed wraps s so that every signature it makes is timed for observe
// under operation and keyAlgorithm (both bounded label values). Failed
// signatures are not observed: their time says nothing of the HSM's
// speed.
func Timed(s crypto.Signer, operation, keyAlgorithm string, observe Observer) crypto.Signer {
	return timedSigner{Signer: s, operation: operation, keyAlgorithm: keyAlgorithm, observe: observe}
}

type timedSigner struct {
	crypto.Signer
	operation, keyAlgorithm string
	observe                 Observer
}

func (t timedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := t.Signer.Sign(r, digest, opts)
	if err == nil && t.observe != nil {
		t.observe(t.operation, t.keyAlgorithm, time.Since(start))
	}
	return sig, err
}
