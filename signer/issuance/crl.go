package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
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
//
// The CRL is the one x509.CreateRevocationList makes, byte for byte up
// to the signature (version 2, the issuer's subject, authority key
// identifier and CRL number, entries in the order given, a reasonCode
// for each but unspecified), but its entries are DER-encoded directly:
// encoding/asn1's reflection costs about 12 µs an entry, a minute of CPU
// for a few million and more than a second for 100,000, against under
// one here. Algorithms outside the families' set go through Go.
func SignCRL(issuer *x509.Certificate, s crypto.Signer, c CRL) ([]byte, error) {
	alg := c.SignatureAlgorithm
	if alg == 0 {
		alg = defaultSignatureAlgorithm(s.Public())
	}
	p, ok := crlAlgorithms[alg]
	if !ok || !p.fits(s.Public()) {
		return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(c.Number), ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate,
			RevokedCertificateEntries: crlEntries(c.Revoked),
			SignatureAlgorithm:        c.SignatureAlgorithm,
		}, issuer, s)
	}
	// Go's own checks of the issuer and the template.
	switch {
	case issuer.KeyUsage&x509.KeyUsageCRLSign == 0:
		return nil, errors.New("x509: issuer must have the crlSign key usage bit set")
	case len(issuer.SubjectKeyId) == 0:
		return nil, errors.New("x509: issuer certificate doesn't contain a subject key identifier")
	case c.NextUpdate.Before(c.ThisUpdate):
		return nil, errors.New("x509: template.ThisUpdate is after template.NextUpdate")
	case len(issuer.RawSubject) == 0:
		return nil, errors.New("x509: issuer has no raw subject")
	}
	tbs, err := crlTBS(issuer, c, p.algorithmID)
	if err != nil {
		return nil, err
	}
	sig, err := signMessage(s, tbs, p.hash)
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sig)+64))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(p.algorithmID)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// crlAlgorithm is how one signature algorithm is written and made.
type crlAlgorithm struct {
	algorithmID []byte      // the DER AlgorithmIdentifier, as Go writes it
	hash        crypto.Hash // 0: the key signs the message itself (Ed25519)
	fits        func(crypto.PublicKey) bool
}

func isEC(p crypto.PublicKey) bool { _, ok := p.(*ecdsa.PublicKey); return ok }

func isRSA(p crypto.PublicKey) bool { _, ok := p.(*rsa.PublicKey); return ok }

func isEd25519(p crypto.PublicKey) bool { _, ok := p.(ed25519.PublicKey); return ok }

var (
	ecdsaSHA256 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
	ecdsaSHA384 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}
	ecdsaSHA512 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04}
	rsaSHA256   = []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00}
	rsaSHA384   = []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00}
	rsaSHA512   = []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00}
	pureEd25519 = []byte{0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70}
)

var crlAlgorithms = map[x509.SignatureAlgorithm]crlAlgorithm{
	x509.ECDSAWithSHA256: {ecdsaSHA256, crypto.SHA256, isEC},
	x509.ECDSAWithSHA384: {ecdsaSHA384, crypto.SHA384, isEC},
	x509.ECDSAWithSHA512: {ecdsaSHA512, crypto.SHA512, isEC},
	x509.SHA256WithRSA:   {rsaSHA256, crypto.SHA256, isRSA},
	x509.SHA384WithRSA:   {rsaSHA384, crypto.SHA384, isRSA},
	x509.SHA512WithRSA:   {rsaSHA512, crypto.SHA512, isRSA},
	x509.PureEd25519:     {pureEd25519, 0, isEd25519},
}

// defaultSignatureAlgorithm is Go's choice for a key when none is named.
func defaultSignatureAlgorithm(pub crypto.PublicKey) x509.SignatureAlgorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			return x509.ECDSAWithSHA384
		case elliptic.P521():
			return x509.ECDSAWithSHA512
		}
		return x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		return x509.SHA256WithRSA
	case ed25519.PublicKey:
		return x509.PureEd25519
	}
	return x509.UnknownSignatureAlgorithm
}

// signMessage signs msg and checks the signature against the key, as Go
// does, so that an HSM fault cannot yield a bad CRL.
func signMessage(s crypto.Signer, msg []byte, h crypto.Hash) ([]byte, error) {
	digest := msg
	if h != 0 {
		hh := h.New()
		hh.Write(msg)
		digest = hh.Sum(nil)
	}
	sig, err := s.Sign(rand.Reader, digest, h)
	if err != nil {
		return nil, err
	}
	ok := false
	switch k := s.Public().(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest, sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	}
	if !ok {
		return nil, errors.New("x509: signature returned by signer is invalid")
	}
	return sig, nil
}

var (
	oidAuthorityKeyID = []byte{0x06, 0x03, 0x55, 0x1d, 0x23}
	oidCRLNumber      = []byte{0x06, 0x03, 0x55, 0x1d, 0x14}
	oidReasonCode     = []byte{0x06, 0x03, 0x55, 0x1d, 0x15}
)

// crlTBS is the TBSCertList of RFC 5280 5.1 as x509.CreateRevocationList
// writes it.
func crlTBS(issuer *x509.Certificate, c CRL, algorithmID []byte) ([]byte, error) {
	number := big.NewInt(c.Number)
	if c.Number < 0 {
		return nil, errors.New("x509: negative CRL number")
	}
	entries, err := crlEntriesDER(c.Revoked)
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(entries)+1024))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // v2
		b.AddBytes(algorithmID)
		b.AddBytes(issuer.RawSubject)
		addTime(b, c.ThisUpdate)
		addTime(b, c.NextUpdate)
		if len(entries) > 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(entries) })
		}
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(oidAuthorityKeyID)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(issuer.SubjectKeyId) })
						})
					})
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(oidCRLNumber)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1BigInt(number) })
				})
			})
		})
	})
	return b.Bytes()
}

// addTime writes t in UTC as RFC 5280 4.1.2.5 asks and encoding/asn1
// does: UTCTime through 2049, GeneralizedTime from 2050, whole seconds.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1(cbasn1.UTCTime, func(b *cryptobyte.Builder) { b.AddBytes(t.AppendFormat(nil, "060102150405Z0700")) })
		return
	}
	b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes(t.AppendFormat(nil, "20060102150405Z0700")) })
}

// crlEntriesDER is the DER of each readable entry (the elements of
// revokedCertificates), one after the other; empty when none is. An
// entry is short (a serial of at most 21 octets, a time, one reason
// code), so each is written straight into one buffer: no allocation per
// entry, which for 100,000 entries is most of what encoding costs.
func crlEntriesDER(revoked []Revoked) ([]byte, error) {
	out := make([]byte, 0, 56*len(revoked))
	var serial, tm []byte
	for _, r := range revoked {
		var ok bool
		if serial, ok = serialBytes(serial[:0], r.SerialHex); !ok {
			continue
		}
		tm = appendTime(tm[:0], r.Time)
		body := 2 + len(serial) + len(tm)
		if r.Reason != 0 {
			body += 14
		}
		if len(serial) > 127 || body > 127 || r.Reason < 0 || r.Reason > 127 {
			der, err := longCRLEntry(serial, r)
			if err != nil {
				return nil, err
			}
			out = append(out, der...)
			continue
		}
		out = append(out, 0x30, byte(body), 0x02, byte(len(serial)))
		out = append(out, serial...)
		out = append(out, tm...)
		if r.Reason != 0 {
			// Extensions { Extension { reasonCode, OCTET STRING { ENUMERATED } } }
			out = append(out, 0x30, 12, 0x30, 10)
			out = append(out, oidReasonCode...)
			out = append(out, 0x04, 3, 0x0a, 1, byte(r.Reason))
		}
	}
	return out, nil
}

// appendTime appends the DER Time of t as addTime writes it.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		dst = append(dst, byte(cbasn1.UTCTime), 13)
		return t.AppendFormat(dst, "060102150405Z0700")
	}
	dst = append(dst, byte(cbasn1.GeneralizedTime), 15)
	return t.AppendFormat(dst, "20060102150405Z0700")
}

// longCRLEntry writes an entry that needs long-form lengths (a serial or
// reason code out of the ordinary) through cryptobyte.
func longCRLEntry(serial []byte, r Revoked) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(serial) })
		addTime(b, r.Time)
		if r.Reason != 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(oidReasonCode)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1Enum(int64(r.Reason)) })
				})
			})
		}
	})
	return b.Bytes()
}

// serialBytes is the content of the DER INTEGER of a non-negative hex
// serial (big-endian, minimal, a leading zero byte when the top bit is
// set), written over buf; false when s is not hex.
func serialBytes(buf []byte, s string) ([]byte, bool) {
	if s == "" {
		return buf, false
	}
	if len(s)%2 == 1 {
		s = "0" + s
	}
	// One byte of room in front for the sign.
	raw, err := hex.AppendDecode(append(buf[:0], 0), []byte(s))
	if err != nil {
		return buf, false
	}
	n := raw[1:]
	for len(n) > 1 && n[0] == 0 {
		n = n[1:]
	}
	if n[0]&0x80 != 0 {
		return raw[len(raw)-len(n)-1:], true
	}
	return n, true
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
