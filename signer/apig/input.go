package apig

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/hsmca/hsmca/signer/encoding"
)

// Certificate scopes.
const (
	TypeGlobal   = "global"
	TypeInstance = "instance"
	// CommonInstance is the instance_id of a global certificate.
	CommonInstance = "common"
)

// Algorithm types (algorithm_type): the family of a certificate's key.
// Huawei also names SM2 (the Chinese national algorithm); hsmca takes no
// SM2 key, so a request for it is refused.
const (
	AlgorithmRSA = "RSA"
	AlgorithmECC = "ECC" // ECDSA on P-256, P-384 or P-521, and Ed25519
	AlgorithmSM2 = "SM2"
)

// algorithmTypeOf is the algorithm type of a certificate's public key:
// "" for a key of no type the family names.
func algorithmTypeOf(a x509.PublicKeyAlgorithm) string {
	switch a {
	case x509.RSA:
		return AlgorithmRSA
	case x509.ECDSA, x509.Ed25519:
		return AlgorithmECC
	}
	return ""
}

// maxSANs bounds the names of an imported certificate: every list page
// and every object carries them, and no public CA issues more than this.
const maxSANs = 250

// Input is the body of a create or a full replace.
type Input struct {
	Name        string
	CertContent string
	// PrivateKey is unencrypted PEM (PKCS#1, PKCS#8 or SEC1). The service
	// owns it once called and clears it before returning.
	PrivateKey    []byte
	Type          string
	InstanceID    string
	TrustedRootCA string
	// AlgorithmType is RSA or ECC and must be the certificate key's; ""
	// means the certificate's.
	AlgorithmType string
	// CertContentSign and PrivateKeySign are the signing certificate and
	// key of Huawei's SM2 dual-certificate case (algorithm_type SM2 only).
	// hsmca takes no SM2, so they must be empty. The service owns
	// PrivateKeySign once called and clears it before returning.
	CertContentSign string
	PrivateKeySign  []byte
}

// checked is an input that passed every check.
type checked struct {
	data certData
	leaf *x509.Certificate
	key  crypto.PrivateKey
	alg  string
}

// ValidID reports whether id can name a certificate: 32 lowercase hex
// digits.
func ValidID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Certificate names follow Huawei's rule (CertificateForm): 4 to 50
// characters (not bytes) of Chinese characters, English letters, digits
// and underscores, starting with an English letter or a Chinese
// character. Chinese characters are the CJK Unified Ideographs
// U+4E00..U+9FA5, the range Huawei's own tooling checks APIG names of this
// wording against; other scripts' letters are not in Huawei's rule.
const (
	minNameChars = 4
	maxNameChars = 50
)

func chineseChar(c rune) bool { return c >= 0x4E00 && c <= 0x9FA5 }

func validName(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	if n := utf8.RuneCountInString(s); n < minNameChars || n > maxNameChars {
		return false
	}
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || chineseChar(c)
		if i == 0 && !letter {
			return false
		}
		if !letter && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

// Gateway ids are not known to hsmca (it runs no gateways), so any id of a
// sane shape is accepted.
func validInstanceID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// checkInput validates an input at now in a fixed order, so that each
// failure has one reason: missing parameters, bad values (name, type,
// instance_id, algorithm_type, the SM2 signing pair), unparseable input,
// encrypted key, key mismatch, an algorithm_type other than the
// certificate's, expiry, SAN, chain. It clears in.PrivateKey and
// in.PrivateKeySign. On success the caller must encoding.WipeKey(c.key).
func checkInput(in *Input, now time.Time) (*checked, error) {
	defer clear(in.PrivateKey)
	defer clear(in.PrivateKeySign)
	for _, f := range []struct {
		name    string
		missing bool
	}{{"name", in.Name == ""}, {"cert_content", in.CertContent == ""}, {"private_key", len(in.PrivateKey) == 0}} {
		if f.missing {
			return nil, invalid(ReasonMissing, f.name, nil, "is required")
		}
	}
	if !validName(in.Name) {
		return nil, invalid(ReasonBadValue, "name", in.Name,
			"must be 4 to 50 characters: Chinese characters, English letters, digits and underscores, starting with an English letter or a Chinese character")
	}
	d := certData{Name: in.Name, Type: in.Type}
	switch in.Type {
	case "":
		d.Type = TypeGlobal
		fallthrough
	case TypeGlobal:
		d.InstanceID = CommonInstance
	case TypeInstance:
		if in.InstanceID == "" {
			return nil, invalid(ReasonMissing, "instance_id", nil, "is required when type is instance")
		}
		if !validInstanceID(in.InstanceID) {
			return nil, invalid(ReasonBadValue, "instance_id", in.InstanceID,
				"must be 1 to 64 letters, digits, '-' or '_'")
		}
		d.InstanceID = in.InstanceID
	default:
		return nil, invalid(ReasonBadValue, "type", in.Type, "must be global or instance")
	}
	if err := checkAlgorithmType(in); err != nil {
		return nil, err
	}

	chain, err := encoding.ParseCertificates([]byte(in.CertContent), encoding.RefuseOthers)
	if err != nil {
		return nil, refusal("cert_content", err)
	}
	var roots []*x509.Certificate
	if in.TrustedRootCA != "" {
		if roots, err = encoding.ParseCertificates([]byte(in.TrustedRootCA), encoding.RefuseOthers); err != nil {
			return nil, refusal("trusted_root_ca", err)
		}
	}
	key, err := encoding.ParsePrivateKey(in.PrivateKey)
	if err != nil {
		return nil, refusal("private_key", err)
	}
	ok := false
	defer func() {
		if !ok {
			encoding.WipeKey(key)
		}
	}()
	leaf := chain[0]
	pub, _ := key.(crypto.Signer)
	if pub == nil || !encoding.PublicKeysEqual(pub.Public(), leaf.PublicKey) {
		return nil, invalid(ReasonKeyMismatch, "private_key", nil, "does not match the certificate's public key")
	}
	alg, _, err := encoding.KeyAlgorithm(pub.Public())
	if err != nil {
		return nil, refusal("private_key", err)
	}
	if at := algorithmTypeOf(leaf.PublicKeyAlgorithm); in.AlgorithmType != "" && in.AlgorithmType != at {
		// RSA or ECC (checkAlgorithmType), shown as given.
		return nil, invalid(ReasonBadValue, "algorithm_type", in.AlgorithmType,
			fmt.Sprintf("is %s but the certificate's key is %s", in.AlgorithmType, at))
	}
	if !now.Before(leaf.NotAfter) {
		return nil, invalid(ReasonExpired, "cert_content", leaf.NotAfter.UTC().Format(time.RFC3339), "the certificate has expired")
	}
	if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 {
		return nil, invalid(ReasonNoSAN, "cert_content", nil, "the certificate has no subject alternative name (DNS name or IP address)")
	}
	if n := len(leaf.DNSNames) + len(leaf.IPAddresses); n > maxSANs {
		return nil, invalid(ReasonBadValue, "cert_content", n, fmt.Sprintf("the certificate has %d subject alternative names; at most %d are accepted", n, maxSANs))
	}
	if err := verifyChain(chain, roots, now); err != nil {
		return nil, err
	}
	for _, c := range chain {
		d.Chain = append(d.Chain, c.Raw)
	}
	for _, c := range roots {
		d.TrustedRootCA = append(d.TrustedRootCA, c.Raw)
	}
	ok = true
	return &checked{data: d, leaf: leaf, key: key, alg: string(alg)}, nil
}

// checkAlgorithmType refuses an algorithm_type hsmca does not take, and
// the SM2 signing pair, which only algorithm_type SM2 uses. Empty values
// of the pair are accepted (clients send them empty).
func checkAlgorithmType(in *Input) error {
	switch in.AlgorithmType {
	case "", AlgorithmRSA, AlgorithmECC:
	case AlgorithmSM2:
		return invalid(ReasonBadValue, "algorithm_type", in.AlgorithmType,
			"SM2 certificates are not supported; use RSA or ECC")
	default:
		return invalid(ReasonBadValue, "algorithm_type", nil, "must be RSA or ECC")
	}
	if in.CertContentSign != "" {
		return invalid(ReasonBadValue, "cert_content_sign", nil,
			"is the SM2 signing certificate (algorithm_type SM2), which is not supported; leave it empty")
	}
	if len(in.PrivateKeySign) > 0 {
		return invalid(ReasonBadValue, "private_key_sign", nil,
			"is the SM2 signing key (algorithm_type SM2), which is not supported; leave it empty")
	}
	return nil
}

// verifyChain checks the chain: against the trusted root CAs when given,
// else each certificate of cert_content must be signed by the next. A
// chain is checked at now, or at the leaf's start if that is later (a
// certificate not valid yet is accepted; an expired one is refused
// before).
func verifyChain(chain, roots []*x509.Certificate, now time.Time) error {
	at := now
	if at.Before(chain[0].NotBefore) {
		at = chain[0].NotBefore
	}
	if len(roots) > 0 {
		rp, ip := x509.NewCertPool(), x509.NewCertPool()
		for _, r := range roots {
			rp.AddCert(r)
		}
		for _, c := range chain[1:] {
			ip.AddCert(c)
		}
		_, err := chain[0].Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return invalid(ReasonChain, "trusted_root_ca", nil, "the certificate does not verify against trusted_root_ca: "+err.Error())
		}
		return nil
	}
	for i := 0; i+1 < len(chain); i++ {
		child, parent := chain[i], chain[i+1]
		if err := child.CheckSignatureFrom(parent); err != nil {
			return invalid(ReasonChain, "cert_content", nil,
				fmt.Sprintf("certificate %d is not signed by certificate %d: %v", i+1, i+2, err))
		}
		if at.Before(parent.NotBefore) || at.After(parent.NotAfter) {
			return invalid(ReasonChain, "cert_content", nil, fmt.Sprintf("certificate %d of the chain is outside its validity", i+2))
		}
	}
	return nil
}
