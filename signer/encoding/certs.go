package encoding

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Others says what a certificate field does with PEM blocks of other
// types.
type Others uint8

const (
	// SkipOthers ignores them: bundles that tools export often carry a
	// key or parameters beside the certificates.
	SkipOthers Others = iota
	// RefuseOthers refuses them, so that a private key pasted in the
	// wrong field is reported, never passed over in silence.
	RefuseOthers
)

// ParseCertificates reads every CERTIFICATE block of PEM text, in order
// (see ReadPEM for the forms it takes). The bytes of other blocks are
// cleared whatever others says: they may be a misplaced key.
func ParseCertificates(text []byte, others Others) ([]*x509.Certificate, error) {
	blocks, err := ReadPEM(text)
	certs, cerr := certificatesOf(blocks, others)
	if err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, cerr
	}
	if len(certs) == 0 {
		return nil, refuse(Malformed, "holds no PEM CERTIFICATE block")
	}
	return certs, nil
}

// certificatesOf parses the certificate blocks and clears the others.
// Certificates are public and keep referring to their bytes.
func certificatesOf(blocks []Block, others Others) ([]*x509.Certificate, error) {
	var (
		certs []*x509.Certificate
		first error
	)
	for i := range blocks {
		b := &blocks[i]
		if b.Type != "CERTIFICATE" {
			clear(b.Bytes)
			if others == RefuseOthers && first == nil {
				first = &Error{Reason: WrongBlock, Msg: "may hold only CERTIFICATE blocks", Value: b.Type}
			}
			continue
		}
		if first != nil {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			first = refuse(Malformed, fmt.Sprintf("certificate %d is not valid X.509: %s", len(certs)+1, oneLine(err)))
			continue
		}
		certs = append(certs, c)
	}
	return certs, first
}

// ParseCertificate reads the one CERTIFICATE block of a field that takes
// exactly one, refusing blocks of other types.
func ParseCertificate(text []byte) (*x509.Certificate, error) {
	certs, err := ParseCertificates(text, RefuseOthers)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, &Error{Reason: Count, Msg: "must hold exactly one certificate", Value: len(certs)}
	}
	return certs[0], nil
}

// ParseCertificateText reads one certificate given as PEM (the first of a
// bundle, other blocks skipped) or as base64 DER in any alphabet (see
// DecodeBase64): the forms a client certificate takes in a header or a
// JSON field.
func ParseCertificateText(s string) (*x509.Certificate, error) {
	if strings.Contains(s, "-----BEGIN") {
		certs, err := ParseCertificates([]byte(s), SkipOthers)
		if err != nil {
			return nil, err
		}
		return certs[0], nil
	}
	der, err := DecodeBase64(s)
	if err != nil || len(der) == 0 {
		return nil, refuse(Malformed, "is neither PEM nor base64 DER")
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, refuse(Malformed, "is not an X.509 certificate: "+oneLine(err))
	}
	return c, nil
}

// Fingerprint is the lowercase hex SHA-256 of a DER encoding, the
// identifier certificates are shown and compared by.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// SerialHex is a serial number as hsmca stores and shows it: lowercase
// hex without leading zeros, "" for none.
func SerialHex(n *big.Int) string {
	if n == nil {
		return ""
	}
	return n.Text(16)
}

// oneLine is an error's text fit for a one-line answer: a parser's
// message may quote what it read.
func oneLine(err error) string {
	s := strconv.QuoteToASCII(err.Error())
	return s[1 : len(s)-1]
}
