package issuance

import (
	"crypto/x509"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer/encoding"
)

// CheckCSR decides whether a parsed CSR (encoding.ParseCSR) can be
// certified: its signature proves possession of its key, and the key is
// one hsmca takes (encoding.KeyAlgorithm). It returns the key's algorithm
// and size. field names the request's CSR.
func CheckCSR(field string, csr *x509.CertificateRequest) (hsm.Algorithm, int, error) {
	if err := csr.CheckSignature(); err != nil {
		return "", 0, refuse(BadCSR, field, nil, "its signature does not verify")
	}
	alg, bits, err := encoding.KeyAlgorithm(csr.PublicKey)
	if err != nil {
		return "", 0, refuse(BadKey, field, nil, err.Error())
	}
	return alg, bits, nil
}
