package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// ECDSA signature encodings. DER (ASN.1 SEQUENCE{r, s}) is what openssl,
// X.509, CMS and most KMS APIs produce and accept, so it is the default;
// raw is r||s, each left-padded to the curve size, as JWS (RFC 7518 §3.4)
// wants.
const (
	SignatureDER = "der"
	SignatureRaw = "raw"
)

// SignInput is a signing (or verification) request; binary values are
// base64, standard or URL-safe, padded or not.
type SignInput struct {
	Algorithm string  // JOSE name; empty picks the key's default
	Digest    *string // the hash of the data, of the algorithm's hash size
	Message   *string // the data itself; the engine hashes it
	Format    string  // ECDSA only: der (default) or raw
	Signature *string // verification only
}

// Signature is the result of Sign.
type Signature struct {
	KeyID     string
	Algorithm string
	Format    string // for ECDSA
	Value     []byte
}

// Sign signs a digest or a message with a key of the tenant.
//
// A key signed with lately is known (signer.Known): the signature is made
// without reading its record first, and its SUCCESS record is appended
// only while the record is still at the version known (Op.DoneIf), in
// the same atomic step. A key disabled, deleted or replaced meanwhile, by
// any replica, is thus caught before the answer: the signature is
// discarded and the request is served again on a fresh read, which
// refuses it. A signature costs one store write instead of a read and a
// write.
func (s *Service) Sign(ctx context.Context, tenant, id string, in SignInput) (*Signature, error) {
	op := s.core.Start(ctx, tenant, "KEY_SIGN")
	req, err := parseSignInput(in, false)
	if err != nil {
		return nil, op.Done(id, err)
	}
	if k, ok := s.known.Get(tenant, id); ok && op.Guarded() {
		sig, err := s.signWith(ctx, tenant, id, k, req)
		if err == nil {
			held, err := op.DoneIf(id, store.Guard{Kind: k.kind, ID: id, Version: k.version})
			if held {
				return sig, err
			}
		} else if rec, rerr := s.resolve(ctx, tenant, id); rerr == nil && rec.Kind == k.kind && rec.Version == k.version {
			// The key is as known: the failure is the answer (a token
			// that does not answer is not asked twice).
			return nil, op.Done(id, err)
		}
		s.known.Forget(tenant, id)
	}
	sig, err := s.sign(ctx, tenant, id, req, op.Guarded())
	return sig, op.Done(id, err)
}

// sign reads the key's record and signs; remember keeps what it read
// for the next signature (Sign).
func (s *Service) sign(ctx context.Context, tenant, id string, req *signRequest, remember bool) (*Signature, error) {
	rec, err := s.resolve(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if rec.Fields[signer.KeyStateField] == StateDisabled {
		return nil, signer.Refused(signer.KindWrongState, ReasonDisabled, "", nil, fmt.Sprintf("key %q is disabled", id))
	}
	k := knownKey{kind: rec.Kind, version: rec.Version, hsmKey: rec.Fields[signer.KeyField],
		algorithm: rec.Fields[signer.KeyAlgorithmField]}
	sig, err := s.signWith(ctx, tenant, id, k, req)
	if err == nil && remember {
		s.known.Put(tenant, id, k)
	}
	return sig, err
}

// signWith signs with the HSM key of a key record.
func (s *Service) signWith(ctx context.Context, tenant, id string, k knownKey, req *signRequest) (*Signature, error) {
	hs, err := s.core.Signer(ctx, k.hsmKey)
	if err != nil {
		return nil, err
	}
	pub := hs.Public()
	alg, input, err := req.prepare(pub, s.pss())
	if err != nil {
		return nil, err
	}
	// A large RSA key signs as heavy work: it waits for its turn.
	release, err := s.core.SignTurn(ctx, tenant, pub)
	if err != nil {
		return nil, err
	}
	sig, err := s.core.Timed(hs, "key_sign", algorithmLabel(k.algorithm, pub)).Sign(rand.Reader, input, alg.opts())
	release()
	if err != nil {
		return nil, signer.HSMError(err, "key")
	}
	out := &Signature{KeyID: id, Algorithm: alg.name, Value: sig}
	if alg.family == famECDSA {
		out.Format = req.format
		if req.format == SignatureRaw {
			if out.Value, err = encoding.ECDSARawFromDER(sig, pub.(*ecdsa.PublicKey)); err != nil {
				return nil, internal(err)
			}
		}
	}
	return out, nil
}

// Verify checks a signature with a key's public key. A disabled key still
// verifies: old signatures stay checkable. A signature that does not
// verify is a valid answer (false), not an error.
func (s *Service) Verify(ctx context.Context, tenant, id string, in SignInput) (bool, string, error) {
	op := s.core.Start(ctx, tenant, "KEY_VERIFY")
	ok, name, err := s.verify(ctx, tenant, id, in)
	return ok, name, op.Done(id, err)
}

func (s *Service) verify(ctx context.Context, tenant, id string, in SignInput) (bool, string, error) {
	req, err := parseSignInput(in, true)
	if err != nil {
		return false, "", err
	}
	rec, err := s.resolve(ctx, tenant, id)
	if err != nil {
		return false, "", err
	}
	k, err := s.view(ctx, rec)
	if err != nil {
		return false, "", err
	}
	// Verification is software: every algorithm that fits the key.
	alg, input, err := req.prepare(k.pub, nil)
	if err != nil {
		return false, "", err
	}
	return alg.verify(k.pub, input, req.signature, req.format), alg.name, nil
}

// algorithmLabel is the metrics label of a key: its algorithm name, from
// the record (recorded) or else from the public key. Bounded: a handful
// of names.
func algorithmLabel(recorded string, pub crypto.PublicKey) string {
	if recorded != "" {
		return recorded
	}
	if a := hsm.AlgorithmOf(pub); a != "" {
		return string(a)
	}
	return "unknown"
}

type sigFamily int

const (
	famECDSA sigFamily = iota
	famRSA
	famPSS
	famEdDSA
)

// sigAlg is one JOSE signature algorithm.
type sigAlg struct {
	name   string
	family sigFamily
	hash   crypto.Hash
	curve  elliptic.Curve // ECDSA: the one curve JOSE pairs it with
}

var signingAlgorithms = []sigAlg{
	{"ES256", famECDSA, crypto.SHA256, elliptic.P256()},
	{"ES384", famECDSA, crypto.SHA384, elliptic.P384()},
	{"ES512", famECDSA, crypto.SHA512, elliptic.P521()},
	{"RS256", famRSA, crypto.SHA256, nil},
	{"RS384", famRSA, crypto.SHA384, nil},
	{"RS512", famRSA, crypto.SHA512, nil},
	{"PS256", famPSS, crypto.SHA256, nil},
	{"PS384", famPSS, crypto.SHA384, nil},
	{"PS512", famPSS, crypto.SHA512, nil},
	{"EdDSA", famEdDSA, 0, nil},
}

// SigningAlgorithmNames lists the algorithm names Sign accepts.
func SigningAlgorithmNames() []string {
	out := make([]string, len(signingAlgorithms))
	for i, a := range signingAlgorithms {
		out[i] = a.name
	}
	return out
}

func findSigAlg(name string) (sigAlg, bool) {
	for _, a := range signingAlgorithms {
		if strings.EqualFold(a.name, name) {
			return a, true
		}
	}
	return sigAlg{}, false
}

// fits reports whether the algorithm can sign with a key of that type.
func (a sigAlg) fits(pub crypto.PublicKey) bool {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		return a.family == famECDSA && p.Curve == a.curve
	case *rsa.PublicKey:
		return a.family == famRSA || a.family == famPSS
	case ed25519.PublicKey:
		return a.family == famEdDSA
	}
	return false
}

// defaultSigAlg is the algorithm used when the request names none.
func defaultSigAlg(pub crypto.PublicKey) (sigAlg, bool) {
	for _, a := range signingAlgorithms {
		if a.fits(pub) {
			return a, true // ES* by curve, RS256 for RSA, EdDSA
		}
	}
	return sigAlg{}, false
}

func (a sigAlg) opts() crypto.SignerOpts {
	if a.family == famPSS {
		// Salt length = hash length is what RFC 7518 §3.5 asks for
		// PS256/384/512.
		return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: a.hash}
	}
	return a.hash // 0 for EdDSA: sign the message itself
}

func (a sigAlg) verify(pub crypto.PublicKey, input, sig []byte, format string) bool {
	switch a.family {
	case famECDSA:
		p := pub.(*ecdsa.PublicKey)
		if format == SignatureRaw {
			r, s, ok := encoding.ECDSAFromRaw(sig, p)
			return ok && ecdsa.Verify(p, input, r, s)
		}
		return ecdsa.VerifyASN1(p, input, sig)
	case famRSA:
		return rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), a.hash, input, sig) == nil
	case famPSS:
		// Any salt length verifies: signatures made elsewhere may use
		// another one, and the salt carries no trust.
		return rsa.VerifyPSS(pub.(*rsa.PublicKey), a.hash, input, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil
	case famEdDSA:
		return ed25519.Verify(pub.(ed25519.PublicKey), input, sig)
	}
	return false
}

// signRequest is a SignInput with its base64 decoded.
type signRequest struct {
	algorithm string
	digest    []byte
	message   []byte
	isDigest  bool
	format    string
	signature []byte
}

func parseSignInput(in SignInput, verify bool) (*signRequest, error) {
	r := &signRequest{algorithm: strings.TrimSpace(in.Algorithm), format: SignatureDER}
	var errs signer.FieldErrors
	switch {
	case in.Digest != nil && in.Message != nil:
		errs.Add("digest", nil, "send either digest or message, not both")
	case in.Digest == nil && in.Message == nil:
		errs.Add("message", nil, "a message or a digest (base64) is required")
	case in.Digest != nil:
		r.isDigest = true
		b, err := encoding.DecodeBase64(*in.Digest)
		if err != nil {
			errs.Add("digest", nil, "must be base64")
		}
		r.digest = b
	default:
		b, err := encoding.DecodeBase64(*in.Message)
		if err != nil {
			errs.Add("message", nil, "must be base64")
		}
		r.message = b
	}
	switch f := strings.ToLower(strings.TrimSpace(in.Format)); f {
	case "", SignatureDER:
	case SignatureRaw:
		r.format = SignatureRaw
	default:
		errs.Add("format", in.Format, "must be der or raw")
	}
	if r.algorithm != "" {
		if _, ok := findSigAlg(r.algorithm); !ok {
			errs.Add("algorithm", in.Algorithm, "must be one of "+strings.Join(SigningAlgorithmNames(), ", "))
		}
	}
	if verify {
		if in.Signature == nil {
			errs.Add("signature", nil, "a signature (base64) is required")
		} else if b, err := encoding.DecodeBase64(*in.Signature); err != nil {
			errs.Add("signature", nil, "must be base64")
		} else {
			r.signature = b
		}
	}
	if len(errs) > 0 {
		// The message names the first field; the details name them all.
		return nil, &signer.Error{Kind: signer.KindInvalid, Msg: errs[0].Field + ": " + errs[0].Msg, Fields: errs}
	}
	return r, nil
}

// pss is nil when the token signs RSA-PSS, else why it does not.
func (s *Service) pss() error { return s.core.SupportsFeature(hsm.FeaturePSS) }

// prepare picks the algorithm for the key and returns what goes to the
// signer: the digest (hashing the message when one was sent) or, for
// EdDSA, the message. noPSS, when set, is why the token cannot sign
// RSA-PSS: a PS* algorithm is then refused with it.
func (r *signRequest) prepare(pub crypto.PublicKey, noPSS error) (sigAlg, []byte, error) {
	var alg sigAlg
	if r.algorithm == "" {
		a, ok := defaultSigAlg(pub)
		if !ok {
			return alg, nil, signer.E(signer.KindInvalid, "this key's type cannot sign through the keys API")
		}
		alg = a
	} else {
		alg, _ = findSigAlg(r.algorithm)
		if !alg.fits(pub) {
			names := algorithmsFor(pub, noPSS)
			if len(names) == 0 {
				names = []string{"nothing"}
			}
			return alg, nil, signer.Invalid("algorithm", r.algorithm, "does not fit the key; it signs with "+
				strings.Join(names, ", "))
		}
		if alg.family == famPSS && noPSS != nil {
			return alg, nil, signer.Unsupported(noPSS, "", "algorithm", r.algorithm,
				"this key signs with "+strings.Join(algorithmsFor(pub, noPSS), ", "))
		}
	}
	if alg.family == famEdDSA {
		if r.isDigest {
			return alg, nil, signer.Invalid("digest", nil, "EdDSA signs the message itself: send message, not digest")
		}
		if len(r.message) == 0 {
			return alg, nil, signer.Invalid("message", "", "must not be empty for EdDSA")
		}
		return alg, r.message, nil
	}
	if r.isDigest {
		if len(r.digest) != alg.hash.Size() {
			return alg, nil, signer.Invalid("digest", nil, fmt.Sprintf("must be %d bytes (the %s hash) for %s, got %d",
				alg.hash.Size(), alg.hash, alg.name, len(r.digest)))
		}
		return alg, r.digest, nil
	}
	h := alg.hash.New()
	h.Write(r.message)
	return alg, h.Sum(nil), nil
}

// algorithmsFor lists the names of the algorithms that sign with pub, in
// table order, leaving out RSA-PSS when noPSS says the token lacks it;
// none is an empty list.
func algorithmsFor(pub crypto.PublicKey, noPSS error) []string {
	out := []string{}
	for _, a := range signingAlgorithms {
		if a.fits(pub) && (a.family != famPSS || noPSS == nil) {
			out = append(out, a.name)
		}
	}
	return out
}

// algorithmsFor lists the algorithms the token signs with pub.
func (s *Service) algorithmsFor(pub crypto.PublicKey) []string {
	if _, ok := pub.(*rsa.PublicKey); !ok {
		return algorithmsFor(pub, nil)
	}
	return algorithmsFor(pub, s.pss())
}
