package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OCSP (RFC 6960, with RFC 5019's lightweight profile): reading a
// request, writing and signing a response, and the delegated responder's
// certificate. Pure functions: the responder (signer/ocsp) decides what to
// answer and keeps the answers.

// OCSP object identifiers.
var (
	oidOCSPNonce   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}
	oidOCSPBasic   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
)

// OCSPHash is a hash algorithm of a CertID: its name (the cache keys and
// the logs use it) and Go's hash.
type OCSPHash struct {
	Name string
	Hash crypto.Hash
	oid  asn1.ObjectIdentifier
}

// OCSPHashes are the CertID hash algorithms the responder answers for:
// SHA-1 (what RFC 5019 clients and openssl send) and the SHA-2 family.
var OCSPHashes = []OCSPHash{
	{"sha1", crypto.SHA1, asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}},
	{"sha256", crypto.SHA256, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}},
	{"sha384", crypto.SHA384, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}},
	{"sha512", crypto.SHA512, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}},
}

// OCSPHashByName finds one of OCSPHashes.
func OCSPHashByName(name string) (OCSPHash, bool) {
	for _, h := range OCSPHashes {
		if h.Name == name {
			return h, true
		}
	}
	return OCSPHash{}, false
}

// OCSPRequest is the one certificate an OCSP request asks about.
type OCSPRequest struct {
	Hash     OCSPHash
	NameHash []byte // hash of the issuer's subject (DER)
	KeyHash  []byte // hash of the issuer's subjectPublicKey bits
	Serial   *big.Int
	// CertID is the request's CertID as sent; the answer repeats it.
	CertID []byte
	// Canonical says the CertID is the one CertIDFor writes (hash
	// parameters NULL, minimal integers): a stored answer made with
	// CertIDFor matches it byte for byte.
	Canonical bool
	// Nonce is the value of the request's nonce extension (RFC 8954), nil
	// when it has none.
	Nonce []byte
}

// ErrOCSPMalformed is returned for a request the responder answers with
// malformedRequest.
var ErrOCSPMalformed = errors.New("malformed OCSP request")

type ocspRequestASN1 struct {
	TBS       tbsRequestASN1
	Signature asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type tbsRequestASN1 struct {
	Version    int              `asn1:"explicit,tag:0,default:0,optional"`
	Requestor  asn1.RawValue    `asn1:"explicit,tag:1,optional"`
	List       []asn1.RawValue  // Request
	Extensions []pkix.Extension `asn1:"explicit,tag:2,optional"`
}

type singleRequestASN1 struct {
	CertID     asn1.RawValue
	Extensions []pkix.Extension `asn1:"explicit,tag:0,optional"`
}

type certIDASN1 struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	KeyHash       []byte
	Serial        *big.Int
}

// maxNonce bounds the nonce a request may carry (RFC 8954 allows 1 to 32
// octets; the extension's value wraps them in an OCTET STRING).
const maxNonce = 64

// ParseOCSPRequest reads a DER OCSP request for one certificate. A
// signature on the request is ignored (RFC 5019 §2.1.2: the responder
// needs none); more than one certificate in one request (which RFC 5019
// clients never send), an unknown hash algorithm, or a nonce of the wrong
// size are malformed (ErrOCSPMalformed).
func ParseOCSPRequest(der []byte) (*OCSPRequest, error) {
	var req ocspRequestASN1
	rest, err := asn1.Unmarshal(der, &req)
	if err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: not a DER OCSPRequest", ErrOCSPMalformed)
	}
	if req.TBS.Version != 0 {
		return nil, fmt.Errorf("%w: version %d", ErrOCSPMalformed, req.TBS.Version)
	}
	if len(req.TBS.List) != 1 {
		return nil, fmt.Errorf("%w: %d certificates in one request; send one", ErrOCSPMalformed, len(req.TBS.List))
	}
	var one singleRequestASN1
	if rest, err := asn1.Unmarshal(req.TBS.List[0].FullBytes, &one); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: bad Request", ErrOCSPMalformed)
	}
	var id certIDASN1
	if rest, err := asn1.Unmarshal(one.CertID.FullBytes, &id); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: bad CertID", ErrOCSPMalformed)
	}
	out := &OCSPRequest{NameHash: id.NameHash, KeyHash: id.KeyHash, Serial: id.Serial,
		CertID: bytes.Clone(one.CertID.FullBytes)}
	found := false
	for _, h := range OCSPHashes {
		if id.HashAlgorithm.Algorithm.Equal(h.oid) {
			out.Hash, found = h, true
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: unsupported CertID hash algorithm %s", ErrOCSPMalformed, id.HashAlgorithm.Algorithm)
	}
	if len(id.NameHash) != out.Hash.Hash.Size() || len(id.KeyHash) != out.Hash.Hash.Size() {
		return nil, fmt.Errorf("%w: CertID hashes of the wrong length", ErrOCSPMalformed)
	}
	if id.Serial == nil || id.Serial.Sign() <= 0 {
		return nil, fmt.Errorf("%w: serial number must be positive", ErrOCSPMalformed)
	}
	canonical, err := certID(out.Hash, id.NameHash, id.KeyHash, id.Serial)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOCSPMalformed, err)
	}
	out.Canonical = bytes.Equal(canonical, out.CertID)
	for _, e := range req.TBS.Extensions {
		if e.Id.Equal(oidOCSPNonce) {
			if len(e.Value) == 0 || len(e.Value) > maxNonce {
				return nil, fmt.Errorf("%w: nonce of %d octets", ErrOCSPMalformed, len(e.Value))
			}
			out.Nonce = bytes.Clone(e.Value)
		}
	}
	return out, nil
}

// OCSPKeyHash is the CertID issuerKeyHash of a certificate by h: the hash
// of its subjectPublicKey bits.
func OCSPKeyHash(cert *x509.Certificate, h crypto.Hash) ([]byte, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki); err != nil || len(rest) > 0 {
		return nil, errors.New("certificate without a readable public key")
	}
	return hashOf(h, spki.PublicKey.RightAlign()), nil
}

// OCSPNameHash is the CertID issuerNameHash of a certificate by h.
func OCSPNameHash(cert *x509.Certificate, h crypto.Hash) []byte { return hashOf(h, cert.RawSubject) }

func hashOf(h crypto.Hash, b []byte) []byte {
	switch h {
	case crypto.SHA1:
		s := sha1.Sum(b)
		return s[:]
	case crypto.SHA256:
		s := sha256.Sum256(b)
		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(b)
		return s[:]
	}
	s := sha512.Sum512(b)
	return s[:]
}

// CertIDFor is the CertID of serial under issuer by h, as this package
// writes it (hash parameters NULL, as openssl and Go send them).
func CertIDFor(h OCSPHash, issuer *x509.Certificate, serial *big.Int) ([]byte, error) {
	kh, err := OCSPKeyHash(issuer, h.Hash)
	if err != nil {
		return nil, err
	}
	return certID(h, OCSPNameHash(issuer, h.Hash), kh, serial)
}

func certID(h OCSPHash, nameHash, keyHash []byte, serial *big.Int) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(h.oid)
			b.AddASN1NULL()
		})
		b.AddASN1OctetString(nameHash)
		b.AddASN1OctetString(keyHash)
		b.AddASN1BigInt(serial)
	})
	return b.Bytes()
}

// OCSP certificate statuses.
const (
	OCSPGood = iota
	OCSPRevoked
	OCSPUnknown
)

// OCSPResponse is one signed answer about one certificate.
type OCSPResponse struct {
	CertID     []byte // as the request sent it, or CertIDFor
	Status     int    // OCSPGood, OCSPRevoked, OCSPUnknown
	RevokedAt  time.Time
	Reason     int // RFC 5280 CRLReason; 0 (unspecified) is left out
	ProducedAt time.Time
	ThisUpdate time.Time
	NextUpdate time.Time
	// Nonce, when set, is echoed in the response extensions (RFC 8954).
	Nonce []byte
	// ResponderCert is the delegated responder's certificate, sent with
	// the answer; nil when the CA's own key signs.
	ResponderCert []byte
}

// OCSP response statuses of unsuccessful answers (RFC 6960 §4.2.1); they
// carry no signature.
const (
	OCSPMalformedRequest = 1
	OCSPInternalError    = 2
	OCSPTryLater         = 3
	OCSPUnauthorized     = 6
)

// OCSPErrorResponse is the unsigned answer of an unsuccessful status.
func OCSPErrorResponse(status int) []byte {
	return []byte{0x30, 0x03, 0x0a, 0x01, byte(status)}
}

// SignOCSPResponse writes r as a BasicOCSPResponse signed by s (the CA's
// key, or the responder's whose certificate is r.ResponderCert) with alg,
// its ResponderID the hash of s's public key (byKey, as RFC 5019 §2.2.3
// asks). The signature is checked against s's public key before the
// answer is returned, so an HSM fault cannot yield a bad answer.
func SignOCSPResponse(r OCSPResponse, s crypto.Signer, alg x509.SignatureAlgorithm) ([]byte, error) {
	pub := s.Public()
	bits, err := subjectPublicKeyBits(pub)
	if err != nil {
		return nil, err
	}
	keyID := sha1.Sum(bits)
	sigAlg, hash, err := ocspSignatureAlgorithm(alg, pub)
	if err != nil {
		return nil, err
	}
	var tbs cryptobyte.Builder
	tbs.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		// version v1 is the DEFAULT: left out.
		b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(keyID[:])
		})
		b.AddASN1GeneralizedTime(r.ProducedAt.UTC().Truncate(time.Second))
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(r.CertID)
				switch r.Status {
				case OCSPGood:
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(*cryptobyte.Builder) {})
				case OCSPRevoked:
					b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1GeneralizedTime(r.RevokedAt.UTC().Truncate(time.Second))
						if r.Reason != 0 {
							b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddASN1Enum(int64(r.Reason))
							})
						}
					})
				default:
					b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(*cryptobyte.Builder) {})
				}
				b.AddASN1GeneralizedTime(r.ThisUpdate.UTC().Truncate(time.Second))
				if !r.NextUpdate.IsZero() {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1GeneralizedTime(r.NextUpdate.UTC().Truncate(time.Second))
					})
				}
			})
		})
		if r.Nonce != nil {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidOCSPNonce)
						b.AddASN1OctetString(r.Nonce)
					})
				})
			})
		}
	})
	tbsDER, err := tbs.Bytes()
	if err != nil {
		return nil, err
	}
	digest := hashOf(hash, tbsDER)
	sig, err := s.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, err
	}
	if err := (&x509.Certificate{PublicKey: pub}).CheckSignature(alg, tbsDER, sig); err != nil {
		return nil, fmt.Errorf("OCSP response signature does not verify: %w", err)
	}
	var basic cryptobyte.Builder
	basic.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbsDER)
		b.AddBytes(sigAlg)
		b.AddASN1BitString(sig)
		if r.ResponderCert != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(r.ResponderCert) })
			})
		}
	})
	basicDER, err := basic.Bytes()
	if err != nil {
		return nil, err
	}
	var out cryptobyte.Builder
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(0) // successful
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidOCSPBasic)
				b.AddASN1OctetString(basicDER)
			})
		})
	})
	return out.Bytes()
}

// ocspSignatureAlgorithm is the DER AlgorithmIdentifier and the hash of
// alg, which must suit pub.
func ocspSignatureAlgorithm(alg x509.SignatureAlgorithm, pub crypto.PublicKey) ([]byte, crypto.Hash, error) {
	type sa struct {
		oid  asn1.ObjectIdentifier
		hash crypto.Hash
		rsa  bool
	}
	algs := map[x509.SignatureAlgorithm]sa{
		x509.SHA256WithRSA:   {asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, crypto.SHA256, true},
		x509.SHA384WithRSA:   {asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, crypto.SHA384, true},
		x509.SHA512WithRSA:   {asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, crypto.SHA512, true},
		x509.ECDSAWithSHA256: {asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, crypto.SHA256, false},
		x509.ECDSAWithSHA384: {asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, crypto.SHA384, false},
		x509.ECDSAWithSHA512: {asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, crypto.SHA512, false},
	}
	a, ok := algs[alg]
	if !ok {
		return nil, 0, fmt.Errorf("OCSP responses are not signed with %s", alg)
	}
	switch pub.(type) {
	case *rsa.PublicKey:
		if !a.rsa {
			return nil, 0, fmt.Errorf("%s does not suit an RSA key", alg)
		}
	case *ecdsa.PublicKey:
		if a.rsa {
			return nil, 0, fmt.Errorf("%s does not suit an EC key", alg)
		}
	default:
		return nil, 0, fmt.Errorf("OCSP responses are not signed with %T keys", pub)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.oid)
		if a.rsa {
			b.AddASN1NULL()
		}
	})
	der, err := b.Bytes()
	return der, a.hash, err
}

// OCSPResponderTemplate is the certificate of a delegated OCSP responder
// (RFC 6960 §4.2.2.2) of the CA whose certificate is issuer, valid from
// notBefore to notAfter: id-kp-OCSPSigning alone, digitalSignature,
// id-pkix-ocsp-nocheck (relying parties do not ask about the responder's
// own status; its short life bounds the risk, RFC 6960 §4.2.2.2.1), not
// a CA. The subject is the issuer's with " OCSP Responder" appended to
// its common name (one attribute of at most 64 characters).
func OCSPResponderTemplate(issuer *x509.Certificate, notBefore, notAfter time.Time) *x509.Certificate {
	subject := pkix.Name{CommonName: ocspResponderCN(issuer.Subject.CommonName),
		Organization: issuer.Subject.Organization, Country: issuer.Subject.Country}
	return &x509.Certificate{
		Subject:               subject,
		NotBefore:             notBefore.UTC().Truncate(time.Second),
		NotAfter:              notAfter.UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		BasicConstraintsValid: true,
		IsCA:                  false,
		ExtraExtensions:       []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}},
	}
}

func ocspResponderCN(cn string) string {
	const suffix = " OCSP Responder"
	if cn == "" {
		return "OCSP Responder"
	}
	if r := []rune(cn); len(r)+len(suffix) > 64 {
		cn = string(r[:64-len(suffix)])
	}
	return cn + suffix
}

// HasOCSPNoCheck reports whether cert carries id-pkix-ocsp-nocheck.
func HasOCSPNoCheck(cert *x509.Certificate) bool {
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidOCSPNoCheck) {
			return true
		}
	}
	return false
}
