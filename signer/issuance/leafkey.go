package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"

	"github.com/hsmca/hsmca/hsm"
)

// GenerateLeafKey makes a software key for a certificate whose private
// key the client takes away (PCA issuance without a CSR). Such a key must
// be exportable, so it is never an HSM object; the caller keeps it only
// sealed by an HSM key.
func GenerateLeafKey(alg hsm.Algorithm) (crypto.Signer, error) {
	switch alg {
	case hsm.EC256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case hsm.EC384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case hsm.RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case hsm.RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case hsm.RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unsupported leaf key algorithm %s", alg)
}
