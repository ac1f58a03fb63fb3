package acme

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// Request is one ACME request as the HTTP layer hands it over.
type Request struct {
	Dir  string // the directory id of the URL
	ID   string // the resource id of the URL, if any
	Type string // the challenge type of a challenge URL
	Base string // the daemon's public base URL
	URL  string // the request's own URL (Base and the path)
	Body []byte // the JWS
}

// Answer is what an ACME request answers on success.
type Answer struct {
	Created  bool   // 201
	Location string // Location header
	Links    []string
	Body     any    // a JSON object, or nil for an empty body
	PEM      []byte // a certificate chain (application/pem-certificate-chain)
	// RetryAfter is sent as Retry-After when set.
	RetryAfter time.Duration
}

// accountAlgs are the JWS algorithms account keys may use.
var accountAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.PS256}

// directoryOf resolves a directory id of the URL.
func (s *Service) directoryOf(ctx context.Context, id string) (*directory, error) {
	_, d, err := getJSON[directory](ctx, s.store, RecordDirectory, store.PlatformTenant, id, "directory")
	if err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return nil, &signer.Error{Kind: signer.KindNotFound, Reason: ReasonMalformed, Msg: "no such ACME directory"}
		}
		return nil, err
	}
	d.ID = id
	return d, nil
}

// urls of a directory's resources.
func dirURL(base, dir string) string         { return base + "/acme/" + dir }
func accountURL(base, dir, id string) string { return dirURL(base, dir) + "/acct/" + id }
func orderURL(base, dir, id string) string   { return dirURL(base, dir) + "/order/" + id }
func authzURL(base, dir, id string) string   { return dirURL(base, dir) + "/authz/" + id }
func certURL(base, dir, id string) string    { return dirURL(base, dir) + "/cert/" + id }
func challURL(base, dir, id, typ string) string {
	return dirURL(base, dir) + "/chall/" + id + "/" + typ
}

// signed is a verified request.
type signed struct {
	payload []byte
	// jwk is the key that signed: an account's, or the one in the header.
	jwk *jose.JSONWebKey
	// account and its record, for a request signed by an account (kid).
	account *account
	acctRec *store.Record
	// header is the protected header, for the inner JWS of key changes.
	header jose.Header
	raw    flattened
}

// flattened is the flattened JSON serialization RFC 8555 §6.2 requires.
type flattened struct {
	Protected  string          `json:"protected"`
	Payload    *string         `json:"payload"`
	Signature  string          `json:"signature"`
	Header     json.RawMessage `json:"header"`
	Signatures json.RawMessage `json:"signatures"`
}

// parseJWS reads a flattened JWS and its protected header, unverified.
func parseJWS(body []byte, algs []jose.SignatureAlgorithm) (*jose.JSONWebSignature, flattened, error) {
	var f flattened
	if err := json.Unmarshal(body, &f); err != nil || f.Protected == "" || f.Payload == nil || f.Signature == "" {
		return nil, f, problem(ReasonMalformed, "the body must be a JWS in flattened JSON serialization")
	}
	if len(f.Header) > 0 || len(f.Signatures) > 0 {
		return nil, f, problem(ReasonMalformed, "the JWS must have exactly one signature and no unprotected header")
	}
	jws, err := jose.ParseSigned(string(body), algs)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected signature algorithm") {
			return nil, f, problem(ReasonBadSignatureAlgorithm, "the JWS algorithm must be one of RS256, ES256, ES384, ES512, EdDSA or PS256")
		}
		return nil, f, problem(ReasonMalformed, "the JWS cannot be read")
	}
	if len(jws.Signatures) != 1 {
		return nil, f, problem(ReasonMalformed, "the JWS must have exactly one signature")
	}
	return jws, f, nil
}

// verify checks a request's JWS: its URL, its nonce (consumed, so each is
// used once across replicas), and its signature by the account (kid) or,
// when byKey, by the key in the header (jwk). either accepts both.
func (s *Service) verify(ctx context.Context, d *directory, r Request, byKey, either bool) (*signed, error) {
	jws, f, err := parseJWS(r.Body, accountAlgs)
	if err != nil {
		return nil, err
	}
	h := jws.Signatures[0].Protected
	if u, _ := h.ExtraHeaders["url"].(string); u != r.URL {
		return nil, problem(ReasonUnauthorized, "the JWS url header does not name this request's URL")
	}
	if h.Nonce == "" {
		return nil, problem(ReasonBadNonce, "the JWS has no nonce")
	}
	if err := s.useNonce(ctx, h.Nonce); err != nil {
		return nil, err
	}
	out := &signed{header: h, raw: f}
	switch {
	case h.JSONWebKey != nil && h.KeyID != "":
		return nil, problem(ReasonMalformed, "the JWS names both jwk and kid")
	case h.JSONWebKey != nil:
		if !byKey && !either {
			return nil, problem(ReasonMalformed, "this request must be signed by an account (kid)")
		}
		if !h.JSONWebKey.Valid() || !h.JSONWebKey.IsPublic() {
			return nil, problem(ReasonBadPublicKey, "the jwk is not a valid public key")
		}
		if err := checkAccountKey(h.JSONWebKey); err != nil {
			return nil, err
		}
		out.jwk = h.JSONWebKey
	case h.KeyID != "":
		if byKey && !either {
			return nil, problem(ReasonMalformed, "this request must carry the key (jwk), not kid")
		}
		prefix := accountURL(r.Base, d.ID, "")
		if !strings.HasPrefix(h.KeyID, prefix) {
			return nil, problem(ReasonAccountDoesNotExist, "kid names no account of this directory")
		}
		rec, a, err := getJSON[account](ctx, s.store, RecordAccount, d.Tenant, strings.TrimPrefix(h.KeyID, prefix), "account")
		if err != nil || a.Dir != d.ID {
			if err == nil || signer.KindOf(err) == signer.KindNotFound {
				return nil, problem(ReasonAccountDoesNotExist, "kid names no account of this directory")
			}
			return nil, err
		}
		if a.Status != StatusValid {
			return nil, problem(ReasonUnauthorized, "the account is "+a.Status)
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(a.JWK); err != nil {
			return nil, signer.StoreErr(err, "account key")
		}
		out.jwk, out.account, out.acctRec = &k, a, rec
	default:
		return nil, problem(ReasonMalformed, "the JWS names neither jwk nor kid")
	}
	payload, err := jws.Verify(out.jwk)
	if err != nil {
		return nil, problem(ReasonMalformed, "the JWS signature does not verify")
	}
	out.payload = payload
	return out, nil
}

// checkAccountKey accepts RSA keys of 2048 to 8192 bits, P-256/384/521
// and Ed25519.
func checkAccountKey(k *jose.JSONWebKey) error {
	if err := keyTypeAllowed(k.Key, nil); err != nil {
		return problem(ReasonBadPublicKey, "account keys must be RSA (2048 to 8192 bits), ECDSA P-256, P-384 or P-521, or Ed25519")
	}
	return nil
}

// postAsGet reports a POST-as-GET (an empty payload).
func (r *signed) postAsGet() bool { return len(r.payload) == 0 }

// decode reads the payload into v (strictly: a payload that is not a
// JSON object is malformed).
func (r *signed) decode(v any) error {
	dec := json.NewDecoder(bytes.NewReader(r.payload))
	if err := dec.Decode(v); err != nil {
		return problem(ReasonMalformed, "the payload is not the JSON object this request takes")
	}
	return nil
}

// thumbprint is a key's RFC 7638 SHA-256 thumbprint, base64url.
func thumbprint(k *jose.JSONWebKey) (string, error) {
	b, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", problem(ReasonBadPublicKey, "the key has no thumbprint")
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// NonceFor makes a nonce for an answer of a directory; an unknown
// directory gets none (an anonymous request writes nothing).
func (s *Service) NonceFor(ctx context.Context, dir string) (string, error) {
	if _, err := s.directoryOf(ctx, dir); err != nil {
		return "", err
	}
	return s.NewNonce(ctx)
}

// NewNonce makes a nonce, kept in the store until used or expired.
func (s *Service) NewNonce(ctx context.Context) (string, error) {
	n := newID()
	rec := &store.Record{Kind: RecordNonce, Tenant: store.PlatformTenant, ID: n,
		Fields: map[string]string{"expires": msField(s.now().Add(s.cfg.NonceTTL))}, Data: json.RawMessage(`{}`)}
	if err := s.store.Create(ctx, rec, store.WriteOpts{}); err != nil {
		return "", signer.StoreErr(err, "nonce")
	}
	return n, nil
}

// useNonce consumes a nonce: of two requests with one nonce, only the one
// whose delete succeeds goes on.
func (s *Service) useNonce(ctx context.Context, n string) error {
	bad := problem(ReasonBadNonce, "the nonce is unknown, used or expired")
	if len(n) > 64 {
		return bad
	}
	rec, err := s.store.Get(ctx, RecordNonce, store.PlatformTenant, n)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return bad
	}
	if err != nil {
		return signer.StoreErr(err, "nonce")
	}
	err = s.store.Delete(ctx, RecordNonce, store.PlatformTenant, n, store.WriteOpts{})
	if errors.Is(err, store.ErrNotFound) {
		return bad
	}
	if err != nil {
		return signer.StoreErr(err, "nonce")
	}
	if rec.Fields["expires"] < msField(s.now()) {
		return bad
	}
	return nil
}

// purgeNonces deletes expired nonces.
func purgeNonces(ctx context.Context, c *signer.Core) (int, error) {
	st := c.Store()
	n := 0
	for {
		page, err := st.List(ctx, store.Query{Kind: RecordNonce, Tenant: store.PlatformTenant, SortBy: "expires",
			Filters: []store.Filter{{Field: "expires", Value: msField(c.Now()), Match: store.Less}}, Limit: 500, NoTotal: true})
		if err != nil {
			return n, err
		}
		for _, r := range page.Records {
			if err := st.Delete(ctx, RecordNonce, store.PlatformTenant, r.ID, store.WriteOpts{}); err == nil {
				n++
			}
		}
		if len(page.Records) < 500 {
			return n, nil
		}
	}
}
