package issuance

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
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

// CanSignCRLs reports whether a CA certificate may sign CRLs: its
// keyUsage holds cRLSign, or it has no keyUsage (RFC 5280 then allows
// every usage).
func CanSignCRLs(cert *x509.Certificate) bool {
	return cert.KeyUsage == 0 || cert.KeyUsage&x509.KeyUsageCRLSign != 0
}

// CRLIssuer is a CA certificate that CanSignCRLs as SignCRL needs it: Go
// asks for cRLSign in the keyUsage and for a subject key identifier (a
// CRL's authority key identifier), which RFC 5280 lets a certificate
// without them do without, so such a certificate is given them on a copy
// (the identifier by KeyIDSHA1). The certificate itself is not changed.
func CRLIssuer(cert *x509.Certificate) (*x509.Certificate, error) {
	if !CanSignCRLs(cert) {
		return nil, errors.New("the CA certificate's key usage lacks cRLSign")
	}
	if cert.KeyUsage != 0 && len(cert.SubjectKeyId) > 0 {
		return cert, nil
	}
	cp := *cert
	if cp.KeyUsage == 0 {
		cp.KeyUsage = x509.KeyUsageCRLSign
	}
	if len(cp.SubjectKeyId) == 0 {
		ski, err := KeyID(cert.PublicKey, KeyIDSHA1)
		if err != nil {
			return nil, err
		}
		cp.SubjectKeyId = ski
	}
	return &cp, nil
}
