package encoding

import (
	"crypto/x509"
	"strings"
)

// ParseCSR reads a certificate request given as PEM (the first block,
// which must be a CERTIFICATE REQUEST) or as base64 DER. It checks the
// form only; whether hsmca certifies the request is the issuance rules'
// call (its signature, its key, its names).
func ParseCSR(text string) (*x509.CertificateRequest, error) {
	der, err := csrDER(text)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, refuse(Malformed, "cannot be parsed: "+oneLine(err))
	}
	return csr, nil
}

func csrDER(text string) ([]byte, error) {
	if strings.TrimSpace(text) == "" {
		return nil, refuse(Malformed, "is empty")
	}
	if !strings.Contains(text, "-----BEGIN") {
		// The forms ReadPEM forgives (quotes, literal "\n" escapes) are
		// forgiven here too.
		der, err := DecodeBase64(string(normalisePEM([]byte(text))))
		if err != nil {
			return nil, refuse(Malformed, "is neither PEM nor base64 DER")
		}
		return der, nil
	}
	blocks, err := ReadPEM([]byte(text))
	if err != nil {
		return nil, err
	}
	if len(blocks) == 0 {
		return nil, refuse(Malformed, "is neither PEM nor base64 DER")
	}
	switch b := blocks[0]; b.Type {
	case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
		return b.Bytes, nil
	default:
		return nil, &Error{Reason: WrongBlock, Msg: "the PEM block is a " + b.Type + ", not a CERTIFICATE REQUEST", Value: b.Type}
	}
}
