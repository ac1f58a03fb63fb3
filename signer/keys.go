package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/store"
)

// The keys API (family 5): raw keys generated in the HSM, and signing with
// any key the tenant owns, including keys that other families' records own
// (see keyowners.go).

// Key states as the keys API shows them.
const (
	KeyStateEnabled = "enabled"
	// KeyStateDisabled ("disabled") is declared in keyowners.go.
)

// ECDSA signature encodings. DER (ASN.1 SEQUENCE{r, s}) is what openssl,
// X.509, CMS and most KMS APIs produce and accept, so it is the default;
// raw is r||s, each left-padded to the curve size, as JWS (RFC 7518 §3.4)
// wants.
const (
	SignatureDER = "der"
	SignatureRaw = "raw"
)

const (
	maxKeyLabel = 128
	// keysListMax bounds one page of GET /v1/keys.
	keysListMax = 1000
	maxKeyRetry = 5
)

// Key is a key as the keys API shows it.
type Key struct {
	ID        string
	Label     string
	Algorithm string // hsm.Algorithm name; imported keys may carry RSA<bits>
	State     string // enabled or disabled
	// Owner is the kind of record that owns the key: "key" for keys of
	// this API, "apig_certificate" for an APIG certificate's imported key.
	Owner             string
	Created           time.Time
	PublicKeyPEM      string
	PublicKeyJWK      map[string]any
	SigningAlgorithms []string

	pub crypto.PublicKey
}

// keyData is the Data of a "key" record. The public key is kept so that
// reading a key needs no HSM call.
type keyData struct {
	Label        string `json:"label,omitempty"`
	Algorithm    string `json:"algorithm"`
	PublicKeyPEM string `json:"publicKeyPem"`
	CreatedBy    string `json:"createdBy,omitempty"`
}

// CreateKey generates a key in the HSM and records it, taking one unit of
// the tenant's keys quota in the same atomic step.
func (e *Engine) CreateKey(ctx context.Context, tenant, algorithm, label string) (*Key, error) {
	var out *Key
	err := e.run(ctx, tenant, "KEY_CREATE", func() (string, error) {
		alg, err := hsm.ParseAlgorithm(algorithm)
		if err != nil {
			return "", Invalid("algorithm", algorithm, "must be one of EC256, EC384, EC521, RSA2048, RSA3072, RSA4096, ED25519")
		}
		if err := checkLabel(label); err != nil {
			return "", err
		}
		limit := e.QuotaLimit(QuotaKeys)
		// Generating a key is slow and serialised in SoftHSM2: refuse early
		// when the quota is plainly used up. The reservation in Create below
		// is what actually enforces it.
		if limit >= 0 {
			used, err := e.store.QuotaUsage(ctx, tenant, QuotaKeys)
			if err != nil {
				return "", storeErr(err, "key quota")
			}
			if used >= limit {
				return "", keyQuotaErr(limit, nil)
			}
		}
		id := uuid.NewString()
		nk, err := e.GenerateKey(ctx, tenant, KindKey, id, alg)
		if err != nil {
			return id, err
		}
		pubPEM, err := publicPEM(nk.Signer.Public())
		if err != nil {
			e.AbandonKey(nk)
			return id, err
		}
		data, _ := json.Marshal(keyData{Label: label, Algorithm: alg.String(), PublicKeyPEM: pubPEM,
			CreatedBy: CallerFrom(ctx).Principal})
		rec := &store.Record{Kind: KindKey, Tenant: tenant, ID: id, Data: data, Fields: map[string]string{
			KeyField: nk.ID, KeyAlgorithmField: alg.String(), KeyStateField: KeyStateEnabled,
		}}
		err = e.store.Create(ctx, rec, store.WriteOpts{Intent: nk.Intent,
			Quota: &store.Quota{Resource: QuotaKeys, Limit: limit}})
		if err != nil {
			// Only a definite refusal proves the record is not there. After
			// a timeout it may have been written: the intent then settles
			// the key at the next reconciliation instead of destroying a
			// key that a record may own.
			if errors.Is(err, store.ErrQuotaExceeded) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrInvalid) {
				e.AbandonKey(nk)
			} else {
				e.log.Warn("key commit failed; its intent is left for the reconciler", "key_id", nk.ID, "err", err)
			}
			if errors.Is(err, store.ErrQuotaExceeded) {
				return id, keyQuotaErr(limit, err)
			}
			return id, storeErr(err, "key")
		}
		out, err = e.keyView(ctx, rec)
		return id, err
	})
	return out, err
}

func keyQuotaErr(limit int64, cause error) error {
	return &Error{Kind: KindQuotaExceeded, Code: "quota." + QuotaKeys, Err: cause,
		Msg: fmt.Sprintf("the tenant's quota of %d keys is used up; delete a key first", limit)}
}

func checkLabel(label string) error {
	if len(label) > maxKeyLabel {
		return Invalid("label", nil, fmt.Sprintf("must be at most %d bytes", maxKeyLabel))
	}
	for _, r := range label {
		if !unicode.IsPrint(r) {
			return Invalid("label", label, "must be printable text")
		}
	}
	return nil
}

// KeyPage is one page of GET /v1/keys.
type KeyPage struct {
	Keys       []Key
	NextCursor string
}

// ListKeys lists the tenant's keys of this API in creation order. Keys that
// other families' records own are not listed (each family lists what it
// created) but can be read and used by id.
func (e *Engine) ListKeys(ctx context.Context, tenant string, limit int, cursor string) (*KeyPage, error) {
	var out *KeyPage
	err := e.run(ctx, tenant, "KEY_RETRIEVE_LIST", func() (string, error) {
		if limit == 0 {
			limit = 100
		}
		if limit < 1 || limit > keysListMax {
			return "", queryErr("limit", limit, fmt.Sprintf("must be from 1 to %d", keysListMax))
		}
		page, err := e.store.List(ctx, store.Query{Kind: KindKey, Tenant: tenant, Limit: limit, Cursor: cursor})
		if errors.Is(err, store.ErrInvalid) {
			return "", queryErr("cursor", cursor, "not a cursor of this list")
		}
		if err != nil {
			return "", storeErr(err, "key")
		}
		out = &KeyPage{Keys: make([]Key, 0, len(page.Records)), NextCursor: page.NextCursor}
		for i := range page.Records {
			k, err := e.keyView(ctx, &page.Records[i])
			if err != nil {
				return "", err
			}
			out.Keys = append(out.Keys, *k)
		}
		return "", nil
	})
	return out, err
}

func queryErr(field string, value any, msg string) *Error {
	e := Invalid(field, value, msg)
	e.Fields[0].Location = "query"
	return e
}

// GetKey returns one key, of any owner kind.
func (e *Engine) GetKey(ctx context.Context, tenant, id string) (*Key, error) {
	var out *Key
	err := e.run(ctx, tenant, "KEY_RETRIEVE", func() (string, error) {
		rec, err := e.resolveKey(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		out, err = e.keyView(ctx, rec)
		return id, err
	})
	return out, err
}

// resolveKey finds the record owning key id, searching the owner kinds in
// order. A key of another tenant is not found, like a missing one.
func (e *Engine) resolveKey(ctx context.Context, tenant, id string) (*store.Record, error) {
	for _, o := range e.KeyOwners() {
		rec, err := e.store.Get(ctx, o.RecordKind, tenant, id)
		switch {
		case err == nil:
			if rec.Fields[KeyField] == "" {
				continue
			}
			return rec, nil
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
			continue
		default:
			return nil, storeErr(err, "key")
		}
	}
	return nil, &Error{Kind: KindNotFound, Msg: "key " + quoteID(id) + " not found"}
}

// keyView builds the API view of an owner record. Keys of this API carry
// their public key; for other owners it comes from the (cached) signer.
func (e *Engine) keyView(ctx context.Context, rec *store.Record) (*Key, error) {
	k := &Key{ID: rec.ID, Owner: rec.Kind, Created: rec.Created.UTC(),
		Algorithm: rec.Fields[KeyAlgorithmField], State: KeyStateEnabled}
	if rec.Fields[KeyStateField] == KeyStateDisabled {
		k.State = KeyStateDisabled
	}
	var pub crypto.PublicKey
	if rec.Kind == KindKey {
		var d keyData
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return nil, storeErr(err, "key")
		}
		k.Label = d.Label
		if k.Algorithm == "" {
			k.Algorithm = d.Algorithm
		}
		blk, _ := pem.Decode([]byte(d.PublicKeyPEM))
		if blk == nil {
			return nil, &Error{Kind: KindInternal, Msg: "internal error", Err: fmt.Errorf("key %s: stored public key is not PEM", rec.ID)}
		}
		p, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, &Error{Kind: KindInternal, Msg: "internal error", Err: fmt.Errorf("key %s: %w", rec.ID, err)}
		}
		pub, k.PublicKeyPEM = p, d.PublicKeyPEM
	} else {
		s, err := e.Signer(ctx, rec.Fields[KeyField])
		if err != nil {
			return nil, err
		}
		pub = s.Public()
		if k.PublicKeyPEM, err = publicPEM(pub); err != nil {
			return nil, err
		}
	}
	jwk, err := publicJWK(pub, rec.ID)
	if err != nil {
		return nil, err
	}
	k.PublicKeyJWK, k.pub = jwk, pub
	for _, a := range signingAlgorithms {
		if a.fits(pub) {
			k.SigningAlgorithms = append(k.SigningAlgorithms, a.name)
		}
	}
	if k.SigningAlgorithms == nil {
		k.SigningAlgorithms = []string{}
	}
	return k, nil
}

// SetKeyEnabled enables or disables a key of this API. The state lives in
// the record, which every replica reads on every signature, so a disabled
// key stops signing everywhere at once.
func (e *Engine) SetKeyEnabled(ctx context.Context, tenant, id string, enabled bool) (*Key, error) {
	name, want := "KEY_DISABLE", KeyStateDisabled
	if enabled {
		name, want = "KEY_ENABLE", KeyStateEnabled
	}
	var out *Key
	err := e.run(ctx, tenant, name, func() (string, error) {
		for attempt := 0; ; attempt++ {
			rec, err := e.resolveKey(ctx, tenant, id)
			if err != nil {
				return id, err
			}
			if err := e.ownKey(rec); err != nil {
				return id, err
			}
			if rec.Fields[KeyStateField] != want {
				rec.Fields[KeyStateField] = want
				err = e.store.Update(ctx, rec, store.WriteOpts{})
				if errors.Is(err, store.ErrVersionConflict) && attempt < maxKeyRetry {
					continue
				}
				if err != nil {
					return id, storeErr(err, "key")
				}
			}
			out, err = e.keyView(ctx, rec)
			return id, err
		}
	})
	return out, err
}

// DeleteKey deletes a key of this API and destroys its HSM object,
// releasing one unit of the keys quota.
func (e *Engine) DeleteKey(ctx context.Context, tenant, id string) error {
	return e.run(ctx, tenant, "KEY_DELETE", func() (string, error) {
		rec, err := e.resolveKey(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		if err := e.ownKey(rec); err != nil {
			return id, err
		}
		err = e.DeleteWithKey(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: QuotaKeys, Limit: e.QuotaLimit(QuotaKeys)}})
		if KindOf(err) == KindNotFound {
			// Deleted concurrently: answer like any missing key.
			return id, &Error{Kind: KindNotFound, Msg: "key " + quoteID(id) + " not found", Err: err}
		}
		return id, err
	})
}

// ownKey refuses to manage a key that another family's record owns: its
// life (state, deletion) follows that record and is changed through that
// family, which keeps the two views from disagreeing.
func (e *Engine) ownKey(rec *store.Record) error {
	if rec.Kind == KindKey {
		return nil
	}
	owner := rec.Kind
	for _, o := range e.KeyOwners() {
		if o.RecordKind == rec.Kind && o.Describe != "" {
			owner = o.Describe
		}
	}
	return &Error{Kind: KindConflict, Code: "key.owned",
		Msg: fmt.Sprintf("key %q belongs to %s", rec.ID, owner)}
}

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
func (e *Engine) Sign(ctx context.Context, tenant, id string, in SignInput) (*Signature, error) {
	var out *Signature
	err := e.run(ctx, tenant, "KEY_SIGN", func() (string, error) {
		req, err := parseSignInput(in, false)
		if err != nil {
			return id, err
		}
		rec, err := e.resolveKey(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		if rec.Fields[KeyStateField] == KeyStateDisabled {
			return id, &Error{Kind: KindWrongState, Code: "key.disabled", Msg: fmt.Sprintf("key %q is disabled", id)}
		}
		s, err := e.Signer(ctx, rec.Fields[KeyField])
		if err != nil {
			return id, err
		}
		alg, input, err := req.prepare(s.Public())
		if err != nil {
			return id, err
		}
		opts := alg.opts()
		release, err := e.signTurn(ctx, tenant, s.Public())
		if err != nil {
			return id, err
		}
		start := time.Now()
		sig, err := s.Sign(rand.Reader, input, opts)
		release()
		if err != nil {
			return id, HSMError(err, "key")
		}
		e.metrics.ObserveSigning("key_sign", keyAlgorithmLabel(rec, s.Public()), time.Since(start))
		out = &Signature{KeyID: id, Algorithm: alg.name, Value: sig}
		if alg.family == famECDSA {
			out.Format = req.format
			if req.format == SignatureRaw {
				if out.Value, err = derToRaw(sig, s.Public().(*ecdsa.PublicKey)); err != nil {
					return id, &Error{Kind: KindInternal, Msg: "internal error", Err: err}
				}
			}
		}
		return id, nil
	})
	return out, err
}

// Verify checks a signature with a key's public key. A disabled key still
// verifies: old signatures stay checkable. A signature that does not
// verify is a valid answer (false), not an error.
func (e *Engine) Verify(ctx context.Context, tenant, id string, in SignInput) (bool, string, error) {
	var (
		ok   bool
		name string
	)
	err := e.run(ctx, tenant, "KEY_VERIFY", func() (string, error) {
		req, err := parseSignInput(in, true)
		if err != nil {
			return id, err
		}
		rec, err := e.resolveKey(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		k, err := e.keyView(ctx, rec)
		if err != nil {
			return id, err
		}
		alg, input, err := req.prepare(k.pub)
		if err != nil {
			return id, err
		}
		name = alg.name
		ok = alg.verify(k.pub, input, req.signature, req.format)
		return id, nil
	})
	return ok, name, err
}

// keyAlgorithmLabel is the metrics label of a key: its algorithm name,
// from the record or else from the public key. Bounded: a handful of
// names.
func keyAlgorithmLabel(rec *store.Record, pub crypto.PublicKey) string {
	if a := rec.Fields[KeyAlgorithmField]; a != "" {
		return a
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA%d", p.N.BitLen())
	case *ecdsa.PublicKey:
		return "EC-" + p.Curve.Params().Name
	case ed25519.PublicKey:
		return string(hsm.ED25519)
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
		// crypto11 refuses PSSSaltLengthAuto; salt = hash length is what
		// RFC 7518 §3.5 asks for PS256/384/512.
		return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: a.hash}
	}
	return a.hash // 0 for EdDSA: sign the message itself
}

func (a sigAlg) verify(pub crypto.PublicKey, input, sig []byte, format string) bool {
	switch a.family {
	case famECDSA:
		p := pub.(*ecdsa.PublicKey)
		if format == SignatureRaw {
			size := (p.Curve.Params().BitSize + 7) / 8
			if len(sig) != 2*size {
				return false
			}
			r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
			return ecdsa.Verify(p, input, r, s)
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
	var errs []FieldError
	bad := func(field string, value any, msg string) {
		errs = append(errs, FieldError{Field: field, Value: value, Msg: msg, Location: "body"})
	}
	switch {
	case in.Digest != nil && in.Message != nil:
		bad("digest", nil, "send either digest or message, not both")
	case in.Digest == nil && in.Message == nil:
		bad("message", nil, "a message or a digest (base64) is required")
	case in.Digest != nil:
		r.isDigest = true
		b, err := decodeB64(*in.Digest)
		if err != nil {
			bad("digest", nil, "must be base64")
		}
		r.digest = b
	default:
		b, err := decodeB64(*in.Message)
		if err != nil {
			bad("message", nil, "must be base64")
		}
		r.message = b
	}
	switch f := strings.ToLower(strings.TrimSpace(in.Format)); f {
	case "", SignatureDER:
	case SignatureRaw:
		r.format = SignatureRaw
	default:
		bad("format", in.Format, "must be der or raw")
	}
	if r.algorithm != "" {
		if _, ok := findSigAlg(r.algorithm); !ok {
			bad("algorithm", in.Algorithm, "must be one of "+strings.Join(SigningAlgorithmNames(), ", "))
		}
	}
	if verify {
		if in.Signature == nil {
			bad("signature", nil, "a signature (base64) is required")
		} else if b, err := decodeB64(*in.Signature); err != nil {
			bad("signature", nil, "must be base64")
		} else {
			r.signature = b
		}
	}
	if len(errs) > 0 {
		return nil, &Error{Kind: KindInvalid, Msg: errs[0].Field + ": " + errs[0].Msg, Fields: errs}
	}
	return r, nil
}

// prepare picks the algorithm for the key and returns what goes to the
// signer: the digest (hashing the message when one was sent) or, for
// EdDSA, the message.
func (r *signRequest) prepare(pub crypto.PublicKey) (sigAlg, []byte, error) {
	var alg sigAlg
	if r.algorithm == "" {
		a, ok := defaultSigAlg(pub)
		if !ok {
			return alg, nil, E(KindInvalid, "this key's type cannot sign through the keys API")
		}
		alg = a
	} else {
		alg, _ = findSigAlg(r.algorithm)
		if !alg.fits(pub) {
			return alg, nil, Invalid("algorithm", r.algorithm, "does not fit the key; it signs with "+
				strings.Join(fitting(pub), ", "))
		}
	}
	if alg.family == famEdDSA {
		if r.isDigest {
			return alg, nil, Invalid("digest", nil, "EdDSA signs the message itself: send message, not digest")
		}
		if len(r.message) == 0 {
			return alg, nil, Invalid("message", "", "must not be empty for EdDSA")
		}
		return alg, r.message, nil
	}
	if r.isDigest {
		if len(r.digest) != alg.hash.Size() {
			return alg, nil, Invalid("digest", nil, fmt.Sprintf("must be %d bytes (the %s hash) for %s, got %d",
				alg.hash.Size(), alg.hash, alg.name, len(r.digest)))
		}
		return alg, r.digest, nil
	}
	h := alg.hash.New()
	h.Write(r.message)
	return alg, h.Sum(nil), nil
}

func fitting(pub crypto.PublicKey) []string {
	var out []string
	for _, a := range signingAlgorithms {
		if a.fits(pub) {
			out = append(out, a.name)
		}
	}
	if out == nil {
		return []string{"nothing"}
	}
	return out
}

// decodeB64 accepts standard and URL-safe base64, padded or not; clients
// of JOSE tooling send the second, everyone else the first.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

func derToRaw(der []byte, pub *ecdsa.PublicKey) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("ECDSA signature is not DER: %v", err)
	}
	size := (pub.Curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}

func publicPEM(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", &Error{Kind: KindInternal, Msg: "internal error", Err: err}
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// publicJWK is the RFC 7517 form of a public key, with kid = the key id.
func publicJWK(pub crypto.PublicKey, kid string) (map[string]any, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		ek, err := p.ECDH()
		if err != nil {
			return nil, &Error{Kind: KindInternal, Msg: "internal error", Err: err}
		}
		pt := ek.Bytes() // 0x04 || X || Y, each of the curve size
		size := (len(pt) - 1) / 2
		return map[string]any{"kty": "EC", "crv": p.Curve.Params().Name, "kid": kid, "use": "sig",
			"x": b64(pt[1 : 1+size]), "y": b64(pt[1+size:])}, nil
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "use": "sig",
			"n": b64(p.N.Bytes()), "e": b64(big.NewInt(int64(p.E)).Bytes())}, nil
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "x": b64(p)}, nil
	}
	return nil, &Error{Kind: KindInternal, Msg: "internal error", Err: fmt.Errorf("unsupported public key %T", pub)}
}
