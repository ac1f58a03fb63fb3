package signer

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/hsmca/hsmca/store"
)

// Tenant roles and platform roles (API.md, "Identity, tenants, roles").
const (
	RoleAdmin       = "admin"
	RoleDTSProvider = "dts-provider"
	RoleCAOperator  = "ca-operator"
	RoleSigner      = "signer"
	RoleAuditor     = "auditor"

	RoleSuperAdministrator = "superAdministrator"
	RoleAdministrator      = "administrator"
)

// TenantRoles lists the roles a token may carry.
var TenantRoles = []string{RoleAdmin, RoleDTSProvider, RoleCAOperator, RoleSigner, RoleAuditor}

// PlatformRoles are the roles an administrator may hold.
var PlatformRoles = []string{RoleSuperAdministrator, RoleAdministrator}

const (
	kindToken = "apitoken"
	// tokenPrefix makes leaked tokens easy to find with secret scanners.
	tokenPrefix = "hsmca_"
	// tokenLastUsedEvery bounds last-used writes to one per token and period.
	tokenLastUsedEvery = time.Minute
)

// Token is an API token's stored metadata. The secret itself is never
// stored: only its SHA-256, which is enough for a 256-bit random secret.
type Token struct {
	ID        string     `json:"id"`
	Tenant    string     `json:"tenant"`
	Roles     []string   `json:"roles"`
	Created   time.Time  `json:"created"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	LastUsed  *time.Time `json:"lastUsed,omitempty"`
	CreatedBy string     `json:"createdBy,omitempty"`
	// Client is the OAuth client that minted this access token
	// (oauthclients.go); empty for tokens an operator created.
	Client string `json:"client,omitempty"`
	Hash   string `json:"hash"`
}

func hashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ValidTenant reports whether s can name a tenant: 1 to 64 characters of
// letters, digits, '-' and '_', not starting with '_' (reserved).
func ValidTenant(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '_' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// CreateToken makes a new API token and returns its secret, shown once.
func (e *Core) CreateToken(ctx context.Context, tenant string, roles []string, expiresAt *time.Time) (string, *Token, error) {
	return createCredential(e, ctx, tenant, "API_TOKEN_CREATE",
		func() (string, *Token, error) { return e.createToken(ctx, tenant, roles, expiresAt) },
		func(t *Token) string { return t.ID })
}

// createToken checks the request and stores the token; tok is set when
// storing it fails too, so that the event names it.
func (e *Core) createToken(ctx context.Context, tenant string, roles []string, expiresAt *time.Time) (string, *Token, error) {
	roles, err := checkCredential(tenant, roles)
	if err != nil {
		return "", nil, err
	}
	now := e.now().UTC().Truncate(time.Second)
	if expiresAt != nil && !expiresAt.After(now) {
		return "", nil, Invalid("expires_at", expiresAt.Format(time.RFC3339), "must be in the future")
	}
	return e.mintToken(ctx, tenant, roles, expiresAt, "")
}

// AuthenticateToken resolves a presented secret to its token. Every failure
// is the same unauthenticated error, so a caller learns nothing about why.
func (e *Core) AuthenticateToken(ctx context.Context, secret string) (*Token, error) {
	tok, _, err := e.authenticateKnown(ctx, secret, nil)
	return tok, err
}

// RateLimitAnswer is a rate limiter's answer: Wait 0 admits the request,
// Err says the limiter could not answer.
type RateLimitAnswer = store.ThrottleResult

// AuthenticateTokenThrottled is AuthenticateToken that also counts the
// request against the credential's rate limit (rate per second, bursts of
// burst), in the same store round trip as the token's lookup. The limit is
// keyed by the presented credential's hash, so it is the token's own; a
// secret of the wrong form is refused before it reaches the store. The
// limiter's answer is only meaningful when the token is valid.
func (e *Core) AuthenticateTokenThrottled(ctx context.Context, secret string, rate float64, burst int64) (*Token, RateLimitAnswer, error) {
	return e.authenticateKnown(ctx, secret, &store.ThrottleRequest{Rate: rate, Burst: burst})
}

// authenticateKnown checks a presented token: one this process checked
// in full lately by a guard alone (checkKnown); the others, and those
// whose guard fails, in full (authenticateHash), a token found valid and
// under its limit being known from then on.
func (e *Core) authenticateKnown(ctx context.Context, secret string, limit *store.ThrottleRequest) (*Token, store.ThrottleResult, error) {
	if !tokenForm(secret) {
		return nil, store.ThrottleResult{}, tokenDenied()
	}
	return e.authenticateKnownHash(ctx, hashToken(secret), limit)
}

// authenticateKnownHash is authenticateKnown of a secret of the right
// form, by its hash.
func (e *Core) authenticateKnownHash(ctx context.Context, h string, limit *store.ThrottleRequest) (*Token, store.ThrottleResult, error) {
	kt := e.knownTokens.get(h)
	if tok, ok := e.checkKnown(ctx, h, kt, limit); ok {
		return tok, store.ThrottleResult{}, nil
	}
	tok, tr, ver, err := e.authenticateHash(ctx, h, limit)
	switch {
	case err == nil && tr.Err == nil && tr.Wait <= 0:
		e.knownTokens.put(h, tok, ver, e.now())
	case kt != nil && KindOf(err) == KindUnauthenticated:
		e.knownTokens.forget(h, kt)
	}
	return tok, tr, err
}

// throttleKeyOf is the rate limiter's key of a token's hash.
func throttleKeyOf(hash string) string { return "credential:" + hash }

// tokenForm reports whether secret has the form of an API token; any
// other is refused before it reaches the store.
func tokenForm(secret string) bool {
	return strings.HasPrefix(secret, tokenPrefix) && len(secret) <= 128
}

// tokenDenied is every refusal of a token: the caller learns nothing of
// why.
func tokenDenied() *Error { return &Error{Kind: KindUnauthenticated, Msg: "invalid or expired token"} }

// authenticateHash is the full check of the token whose secret hashes to
// h (a secret of the right form); it also returns the version of the
// token's record.
func (e *Core) authenticateHash(ctx context.Context, h string, limit *store.ThrottleRequest) (*Token, store.ThrottleResult, uint64, error) {
	var tr store.ThrottleResult
	denied := tokenDenied()
	var (
		rec *store.Record
		err error
	)
	if limit != nil {
		limit.Key = throttleKeyOf(h)
		rec, tr, err = e.store.GetByUniqueThrottled(ctx, kindToken, store.PlatformTenant, "hash:"+h, *limit)
		if tr.Err != nil {
			tr.Err = StoreErr(tr.Err, "rate limit")
		}
	} else {
		rec, err = e.store.GetByUnique(ctx, kindToken, store.PlatformTenant, "hash:"+h)
	}
	if err != nil {
		if KindOf(StoreErr(err, "token")) == KindNotFound {
			return nil, tr, 0, denied
		}
		return nil, tr, 0, StoreErr(err, "token")
	}
	tok, err := e.tokens.Get(rec.Data)
	if err != nil {
		return nil, tr, 0, StoreErr(err, "token")
	}
	if subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(h)) != 1 {
		return nil, tr, 0, denied
	}
	now := e.now()
	if tok.ExpiresAt != nil && !now.Before(*tok.ExpiresAt) {
		return nil, tr, 0, denied
	}
	e.touchCredential(rec, tok.ID, tok.LastUsed, now, func(used time.Time) ([]byte, error) {
		t := tok
		t.LastUsed = &used
		return json.Marshal(&t)
	})
	return &tok, tr, rec.Version, nil
}

// ListTokens lists tokens, of one tenant or (tenant empty) of all.
func (e *Core) ListTokens(ctx context.Context, tenant string) ([]Token, error) {
	op := e.Start(ctx, "", "API_TOKEN_RETRIEVE_LIST")
	out, err := listCredentials(e, ctx, kindToken, "token", tenant, func(t *Token) Token { return *t })
	return out, op.Done("", err)
}

// RevokeToken deletes a token; the next request with it fails on every
// replica because authentication reads the store.
func (e *Core) RevokeToken(ctx context.Context, id string) error {
	op := e.Start(ctx, e.credentialTenant(ctx, kindToken, id), "API_TOKEN_DELETE")
	err := StoreErr(e.store.Delete(ctx, kindToken, store.PlatformTenant, id, store.WriteOpts{}), "token")
	if err == nil {
		e.tokenSeen.Delete(id)
		e.forgetKnownTokens()
	}
	return op.Done(id, err)
}
