package hsm

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/pkcs11"
)

// ErrUnsupported means the token lacks a mechanism (or a key size) the
// call needs: an algorithm it cannot generate or sign with, RSA-PSS, the
// AES-GCM wrapping of secrets. Callers answer 400 naming it; retrying
// cannot help.
var ErrUnsupported = errors.New("not supported by the HSM token")

// UnsupportedError names what the token cannot do and why.
type UnsupportedError struct {
	// Feature is what was asked: "EC256", "RSA-PSS", "AES-GCM wrapping" ...
	Feature string
	// Reason names the missing mechanism or the key size range.
	Reason string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("the HSM token does not support %s (%s)", e.Feature, e.Reason)
}

// Is makes errors.Is(err, ErrUnsupported) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// Features the token may lack besides key algorithms.
const (
	FeaturePSS    = "RSA-PSS"
	FeatureWrap   = "secret wrapping"
	FeatureImport = "key import"
)

// Mechanism is one mechanism the token offers, as C_GetMechanismInfo
// describes it.
type Mechanism struct {
	Code uint
	Name string
	// MinKeySize and MaxKeySize are in bits for RSA and EC mechanisms and
	// in bytes for AES ones, as the token reports them (PKCS#11 leaves the
	// unit to the mechanism).
	MinKeySize, MaxKeySize uint
	Flags                  uint
}

// Has says whether the mechanism has every one of flags (CKF_SIGN ...).
func (m Mechanism) Has(flags uint) bool { return m.Flags&flags == flags }

// Uses names the operations the flags allow: sign, verify, encrypt,
// decrypt, wrap, unwrap, generate, generate_key_pair, digest, derive.
func (m Mechanism) Uses() []string {
	var out []string
	for _, f := range []struct {
		flag uint
		name string
	}{
		{pkcs11.CKF_SIGN, "sign"}, {pkcs11.CKF_VERIFY, "verify"},
		{pkcs11.CKF_ENCRYPT, "encrypt"}, {pkcs11.CKF_DECRYPT, "decrypt"},
		{pkcs11.CKF_WRAP, "wrap"}, {pkcs11.CKF_UNWRAP, "unwrap"},
		{pkcs11.CKF_GENERATE, "generate"}, {pkcs11.CKF_GENERATE_KEY_PAIR, "generate_key_pair"},
		{pkcs11.CKF_DIGEST, "digest"}, {pkcs11.CKF_DERIVE, "derive"},
	} {
		if m.Flags&f.flag != 0 {
			out = append(out, f.name)
		}
	}
	return out
}

// Capabilities is what the open token can do, read from its mechanism
// list when the context opens, less what its library is known to get
// wrong (quirks).
type Capabilities struct {
	Mechanisms []Mechanism
	byCode     map[uint]Mechanism
	// Library is the module's C_GetInfo manufacturer and description.
	Library string
	quirks  quirks
}

// quirks are what a module's mechanism list does not tell.
type quirks struct {
	// broken algorithms, with the reason.
	broken map[Algorithm]string
	// noImport: the module makes no private key object from outside.
	noImport string
	// rsaUsageFixed: the module refuses CKA_ENCRYPT/CKA_DECRYPT false on
	// RSA key pairs (its keys both sign and decrypt).
	rsaUsageFixed bool
}

// libraryQuirks knows the modules whose mechanism lists promise more than
// they do, by C_GetInfo's manufacturer.
func libraryQuirks(manufacturer string) quirks {
	if strings.HasPrefix(manufacturer, "tpm2-software") {
		// tpm2-pkcs11 1.9: the P-521 point it returns is malformed and
		// its signatures fail; C_CreateObject takes no private key; RSA
		// keys are TPM keys that sign and decrypt.
		return quirks{
			broken:        map[Algorithm]string{EC521: "tpm2-pkcs11 returns a malformed P-521 public key"},
			noImport:      "tpm2-pkcs11 takes no private key from outside the TPM",
			rsaUsageFixed: true,
		}
	}
	return quirks{}
}

// the mechanisms hsmca uses, by name for messages and the doctor table.
var mechanismNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN:  "CKM_RSA_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_RSA_PKCS:               "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_PKCS_PSS:           "CKM_RSA_PKCS_PSS",
	pkcs11.CKM_SHA256_RSA_PKCS:        "CKM_SHA256_RSA_PKCS",
	pkcs11.CKM_SHA384_RSA_PKCS:        "CKM_SHA384_RSA_PKCS",
	pkcs11.CKM_SHA512_RSA_PKCS:        "CKM_SHA512_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS_PSS:    "CKM_SHA256_RSA_PKCS_PSS",
	pkcs11.CKM_EC_KEY_PAIR_GEN:        "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_ECDSA:                  "CKM_ECDSA",
	pkcs11.CKM_ECDSA_SHA256:           "CKM_ECDSA_SHA256",
	pkcs11.CKM_ECDH1_DERIVE:           "CKM_ECDH1_DERIVE",
	ckmECEdwardsKeyPairGen:            "CKM_EC_EDWARDS_KEY_PAIR_GEN",
	ckmEdDSA:                          "CKM_EDDSA",
	pkcs11.CKM_AES_KEY_GEN:            "CKM_AES_KEY_GEN",
	pkcs11.CKM_AES_GCM:                "CKM_AES_GCM",
	pkcs11.CKM_AES_ECB:                "CKM_AES_ECB",
	pkcs11.CKM_AES_CBC_PAD:            "CKM_AES_CBC_PAD",
	pkcs11.CKM_AES_KEY_WRAP:           "CKM_AES_KEY_WRAP",
	pkcs11.CKM_AES_KEY_WRAP_PAD:       "CKM_AES_KEY_WRAP_PAD",
	pkcs11.CKM_SHA256:                 "CKM_SHA256",
	pkcs11.CKM_SHA256_HMAC:            "CKM_SHA256_HMAC",
	pkcs11.CKM_GENERIC_SECRET_KEY_GEN: "CKM_GENERIC_SECRET_KEY_GEN",
}

// MechanismName is the CKM_ name of a mechanism, or its hexadecimal code.
func MechanismName(code uint) string {
	if n, ok := mechanismNames[code]; ok {
		return n
	}
	return fmt.Sprintf("CKM_0x%08X", code)
}

// readCapabilities reads the mechanism list of slot.
func readCapabilities(p *pkcs11.Ctx, slot uint) (*Capabilities, error) {
	list, err := p.GetMechanismList(slot)
	if err != nil {
		return nil, fmt.Errorf("hsm: read the mechanism list: %w", err)
	}
	c := &Capabilities{byCode: make(map[uint]Mechanism, len(list))}
	if info, err := p.GetInfo(); err == nil {
		manufacturer := strings.TrimRight(info.ManufacturerID, " \x00")
		c.Library = strings.TrimSpace(manufacturer + " " + strings.TrimRight(info.LibraryDescription, " \x00"))
		c.quirks = libraryQuirks(manufacturer)
	}
	for _, m := range list {
		info, err := p.GetMechanismInfo(slot, []*pkcs11.Mechanism{m})
		if err != nil {
			continue // listed but not describable: treat as absent
		}
		mi := Mechanism{Code: m.Mechanism, Name: MechanismName(m.Mechanism),
			MinKeySize: info.MinKeySize, MaxKeySize: info.MaxKeySize, Flags: info.Flags}
		c.byCode[mi.Code] = mi
		c.Mechanisms = append(c.Mechanisms, mi)
	}
	sort.Slice(c.Mechanisms, func(i, j int) bool { return c.Mechanisms[i].Code < c.Mechanisms[j].Code })
	return c, nil
}

// Mechanism returns the token's description of a mechanism.
func (c *Capabilities) Mechanism(code uint) (Mechanism, bool) {
	if c == nil {
		return Mechanism{}, false
	}
	m, ok := c.byCode[code]
	return m, ok
}

// need checks that the token has mechanism code with flags.
func (c *Capabilities) need(feature string, code, flags uint) error {
	m, ok := c.Mechanism(code)
	if !ok {
		return &UnsupportedError{Feature: feature, Reason: "no " + MechanismName(code)}
	}
	if !m.Has(flags) {
		return &UnsupportedError{Feature: feature, Reason: fmt.Sprintf("%s cannot %s", m.Name, strings.Join(Mechanism{Flags: flags &^ m.Flags}.Uses(), " or "))}
	}
	return nil
}

// sizeIn checks a key size against a mechanism's range; a token that
// reports 0 for both ends gives no range.
func sizeIn(feature string, m Mechanism, bits uint) error {
	if m.MinKeySize == 0 && m.MaxKeySize == 0 {
		return nil
	}
	if bits < m.MinKeySize || (m.MaxKeySize > 0 && bits > m.MaxKeySize) {
		return &UnsupportedError{Feature: feature, Reason: fmt.Sprintf("%s takes %d-%d-bit keys", m.Name, m.MinKeySize, m.MaxKeySize)}
	}
	return nil
}

// Algorithm says whether keys of alg can be generated (or imported) and
// used to sign: nil, or an error wrapping ErrUnsupported.
func (c *Capabilities) Algorithm(alg Algorithm) error {
	f := string(alg)
	if c != nil {
		if why, ok := c.quirks.broken[alg]; ok {
			return &UnsupportedError{Feature: f, Reason: why}
		}
	}
	switch {
	case alg.curve() != nil:
		if err := c.need(f, pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR); err != nil {
			return err
		}
		if err := c.need(f, pkcs11.CKM_ECDSA, pkcs11.CKF_SIGN); err != nil {
			return err
		}
		m, _ := c.Mechanism(pkcs11.CKM_EC_KEY_PAIR_GEN)
		return sizeIn(f, m, uint(alg.curve().Params().BitSize))
	case alg.rsaBits() > 0:
		if err := c.need(f, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR); err != nil {
			return err
		}
		if err := c.need(f, pkcs11.CKM_RSA_PKCS, pkcs11.CKF_SIGN); err != nil {
			return err
		}
		m, _ := c.Mechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN)
		return sizeIn(f, m, uint(alg.rsaBits()))
	case alg == ED25519:
		if err := c.need(f, ckmECEdwardsKeyPairGen, pkcs11.CKF_GENERATE_KEY_PAIR); err != nil {
			return err
		}
		return c.need(f, ckmEdDSA, pkcs11.CKF_SIGN)
	}
	return &UnsupportedError{Feature: f, Reason: "unknown algorithm"}
}

// Key says whether a key like pub can be imported and used to sign; RSA
// keys of any size are checked against the token's range.
func (c *Capabilities) Key(pub crypto.PublicKey) error {
	if err := c.Feature(FeatureImport); err != nil {
		return err
	}
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return c.Algorithm(AlgorithmOf(pub))
	}
	f := fmt.Sprintf("RSA%d", k.N.BitLen())
	if err := c.need(f, pkcs11.CKM_RSA_PKCS, pkcs11.CKF_SIGN); err != nil {
		return err
	}
	m, _ := c.Mechanism(pkcs11.CKM_RSA_PKCS)
	return sizeIn(f, m, uint(k.N.BitLen()))
}

// Feature says whether the token can do one of the Feature* operations.
func (c *Capabilities) Feature(feature string) error {
	switch feature {
	case FeaturePSS:
		return c.need(feature, pkcs11.CKM_RSA_PKCS_PSS, pkcs11.CKF_SIGN)
	case FeatureWrap:
		_, err := c.wrapScheme()
		return err
	case FeatureImport:
		if c == nil {
			return &UnsupportedError{Feature: feature, Reason: "no token"}
		}
		if c.quirks.noImport != "" {
			return &UnsupportedError{Feature: feature, Reason: c.quirks.noImport}
		}
		return nil
	}
	return &UnsupportedError{Feature: feature, Reason: "unknown feature"}
}

// wrapScheme picks how secrets are wrapped: AES-GCM in the token when it
// has it, else AES-CTR (its keystream from CKM_AES_ECB in the token) with
// an HMAC-SHA256 computed by the token (tokens behind p11-kit and
// opencryptoki's soft token lack CKM_AES_GCM).
func (c *Capabilities) wrapScheme() (byte, error) {
	gcm := c.need(FeatureWrap, pkcs11.CKM_AES_GCM, pkcs11.CKF_ENCRYPT|pkcs11.CKF_DECRYPT)
	if err := c.need(FeatureWrap, pkcs11.CKM_AES_KEY_GEN, pkcs11.CKF_GENERATE); err != nil {
		return 0, err
	}
	if gcm == nil {
		return wrapVersion, nil
	}
	for _, m := range []struct{ code, flags uint }{
		{pkcs11.CKM_AES_ECB, pkcs11.CKF_ENCRYPT},
		{pkcs11.CKM_SHA256_HMAC, pkcs11.CKF_SIGN},
		{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKF_GENERATE},
	} {
		if err := c.need(FeatureWrap, m.code, m.flags); err != nil {
			return 0, &UnsupportedError{Feature: FeatureWrap, Reason: "no CKM_AES_GCM, and " + err.(*UnsupportedError).Reason + " for AES-CTR with HMAC-SHA256"}
		}
	}
	return wrapVersionCTR, nil
}

// Algorithms lists the algorithms the token supports, in the order of
// the package's list.
func (c *Capabilities) Algorithms() []Algorithm {
	var out []Algorithm
	for _, a := range algorithms {
		if c.Algorithm(a) == nil {
			out = append(out, a)
		}
	}
	return out
}

// AllAlgorithms lists every algorithm hsmca knows, whatever the token
// supports.
func AllAlgorithms() []Algorithm { return append([]Algorithm(nil), algorithms...) }

// SupportsKey is Supports for a key like pub about to be imported; RSA
// keys of any size are checked against the token's range.
func (h *HSM) SupportsKey(pub crypto.PublicKey) error { return h.caps.Load().Key(pub) }
