package issuance

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"time"
)

// Revoked is one entry of a CRL as the families store it.
type Revoked struct {
	SerialHex string // as encoding.SerialHex writes it
	Time      time.Time
	Reason    int // RFC 5280 CRLReason
}

// CRL is what a CRL says besides its issuer.
type CRL struct {
	Number                 int64
	ThisUpdate, NextUpdate time.Time
	Revoked                []Revoked
	// SignatureAlgorithm 0 lets Go pick the issuer key's default.
	SignatureAlgorithm x509.SignatureAlgorithm
}

// SignCRL signs c with s, the key of issuer. An entry whose serial does
// not read as hex is left out rather than failing the whole list: one
// damaged record must not stop a CA from publishing its revocations.
func SignCRL(issuer *x509.Certificate, s crypto.Signer, c CRL) ([]byte, error) {
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(c.Number), ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate,
		RevokedCertificateEntries: crlEntries(c.Revoked),
		SignatureAlgorithm:        c.SignatureAlgorithm,
	}, issuer, s)
}

func crlEntries(revoked []Revoked) []x509.RevocationListEntry {
	out := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		serial, ok := new(big.Int).SetString(r.SerialHex, 16)
		if !ok {
			continue
		}
		out = append(out, x509.RevocationListEntry{SerialNumber: serial,
			RevocationTime: r.Time.UTC(), ReasonCode: r.Reason})
	}
	return out
}
