package signer

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/store"
)

// OAuth 2.0 client credentials (RFC 6749 §4.4), as MATTR VII callers get
// their bearer tokens: a client id and secret per tenant with roles,
// exchanged at POST /oauth/token for a short-lived access token. The
// access token is an API token of the client's tenant and roles with an
// expiry, marked with the client that minted it: every family accepts it
// as it accepts any token, revoking the client deletes its live access
// tokens, and a janitor purges expired ones.

const (
	kindOAuthClient = "oauthclient"
	// clientSecretPrefix makes leaked client secrets easy to find with
	// secret scanners, as tokenPrefix does for tokens.
	clientSecretPrefix = "hsmca_cs_"
	// DefaultAccessTokenTTL is an access token's lifetime unless
	// configured otherwise.
	DefaultAccessTokenTTL = time.Hour
)

// OAuthClient is a client's stored metadata; the secret is stored only as
// its SHA-256 (a 256-bit random secret needs no slow hash).
type OAuthClient struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Roles     []string  `json:"roles"`
	Name      string    `json:"name,omitempty"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"createdBy,omitempty"`
	Hash      string    `json:"hash"`
}

// Public returns the client without its secret's hash.
func (c *OAuthClient) Public() OAuthClient {
	out := *c
	out.Hash = ""
	return out
}

// CreateOAuthClient makes client credentials for tenant and returns the
// client secret, shown once.
func (e *Core) CreateOAuthClient(ctx context.Context, tenant string, roles []string, name string) (string, *OAuthClient, error) {
	secret, cl, err := createCredential(e, ctx, tenant, "OAUTH_CLIENT_CREATE",
		func() (string, *OAuthClient, error) { return e.createOAuthClient(ctx, tenant, roles, name) },
		func(c *OAuthClient) string { return c.ID })
	if err != nil {
		return "", nil, err
	}
	pub := cl.Public()
	return secret, &pub, nil
}

func (e *Core) createOAuthClient(ctx context.Context, tenant string, roles []string, name string) (string, *OAuthClient, error) {
	roles, err := checkCredential(tenant, roles)
	if err != nil {
		return "", nil, err
	}
	if len(name) > 128 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", nil, Invalid("name", nil, "at most 128 printable characters")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, err
	}
	secret := clientSecretPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	id, err := randomAlnum(32, alnum)
	if err != nil {
		return "", nil, err
	}
	cl := &OAuthClient{ID: id, Tenant: tenant, Roles: roles, Name: name,
		Created: e.now().UTC().Truncate(time.Second), CreatedBy: CallerFrom(ctx).Principal, Hash: hashToken(secret)}
	data, err := json.Marshal(cl)
	if err != nil {
		return "", cl, err
	}
	rec := &store.Record{Kind: kindOAuthClient, Tenant: store.PlatformTenant, ID: id,
		Fields: map[string]string{"tenant": tenant}, Data: data}
	return secret, cl, StoreErr(e.store.Create(ctx, rec, store.WriteOpts{}), "OAuth client")
}

// ListOAuthClients lists clients, of one tenant or of all, without secrets.
func (e *Core) ListOAuthClients(ctx context.Context, tenant string) ([]OAuthClient, error) {
	op := e.Start(ctx, "", "OAUTH_CLIENT_RETRIEVE_LIST")
	out, err := listCredentials(e, ctx, kindOAuthClient, "OAuth client", tenant, (*OAuthClient).Public)
	return out, op.Done("", err)
}

// RevokeOAuthClient deletes a client: it gets no new access token from
// the next request on, on every replica, and the access tokens it holds
// are deleted too.
func (e *Core) RevokeOAuthClient(ctx context.Context, id string) error {
	op := e.Start(ctx, e.credentialTenant(ctx, kindOAuthClient, id), "OAUTH_CLIENT_DELETE")
	err := StoreErr(e.store.Delete(ctx, kindOAuthClient, store.PlatformTenant, id, store.WriteOpts{}), "OAuth client")
	if err == nil {
		_, err = e.deleteClientTokens(ctx, id, false)
	}
	return op.Done(id, err)
}

// deleteClientTokens deletes the access tokens client minted (all of them,
// or only the expired ones), or of every client when client is empty.
func (e *Core) deleteClientTokens(ctx context.Context, client string, expiredOnly bool) (int, error) {
	q := store.Query{Kind: kindToken, Tenant: store.PlatformTenant}
	if client != "" {
		q.Filters = []store.Filter{{Field: "client", Value: client}}
	}
	now := e.now()
	n := 0
	for {
		page, err := e.store.List(ctx, q)
		if err != nil {
			return n, StoreErr(err, "token")
		}
		for _, r := range page.Records {
			var t Token
			if json.Unmarshal(r.Data, &t) != nil || t.Client == "" {
				continue
			}
			if expiredOnly && (t.ExpiresAt == nil || now.Before(*t.ExpiresAt)) {
				continue
			}
			if err := e.store.Delete(ctx, kindToken, store.PlatformTenant, r.ID, store.WriteOpts{}); err != nil &&
				KindOf(StoreErr(err, "token")) != KindNotFound {
				return n, StoreErr(err, "token")
			}
			e.tokenSeen.Delete(r.ID)
			if !expiredOnly {
				e.forgetKnownTokens()
			}
			n++
		}
		if page.NextCursor == "" {
			return n, nil
		}
		q.Cursor = page.NextCursor
	}
}

// purgeExpiredAccessTokens is the core's janitor: access tokens minted for
// OAuth clients are deleted once expired, so that they do not pile up.
func purgeExpiredAccessTokens(ctx context.Context, c *Core) (int, error) {
	if c.store == nil { // a core built without a store (tests of the core alone)
		return 0, nil
	}
	return c.deleteClientTokens(ctx, "", true)
}

// IssueAccessToken exchanges client credentials for an access token valid
// for ttl (DefaultAccessTokenTTL when 0). Every failure of the credentials
// is the same unauthenticated error.
func (e *Core) IssueAccessToken(ctx context.Context, clientID, secret string, ttl time.Duration) (string, *Token, error) {
	if ttl <= 0 {
		ttl = DefaultAccessTokenTTL
	}
	denied := &Error{Kind: KindUnauthenticated, Msg: "invalid client credentials"}
	if len(clientID) != 32 || !strings.HasPrefix(secret, clientSecretPrefix) || len(secret) > 128 {
		return "", nil, denied
	}
	rec, err := e.store.Get(ctx, kindOAuthClient, store.PlatformTenant, clientID)
	if err != nil {
		if KindOf(StoreErr(err, "OAuth client")) == KindNotFound {
			return "", nil, denied
		}
		return "", nil, StoreErr(err, "OAuth client")
	}
	var cl OAuthClient
	if err := json.Unmarshal(rec.Data, &cl); err != nil {
		return "", nil, StoreErr(err, "OAuth client")
	}
	if subtle.ConstantTimeCompare([]byte(cl.Hash), []byte(hashToken(secret))) != 1 {
		return "", nil, denied
	}
	ctx = WithCaller(ctx, Caller{Tenant: cl.Tenant, Principal: "oauth-client:" + cl.ID, Roles: cl.Roles})
	op := e.Start(ctx, cl.Tenant, "OAUTH_TOKEN_CREATE")
	exp := e.now().UTC().Truncate(time.Second).Add(ttl)
	tokSecret, tok, err := e.mintToken(ctx, cl.Tenant, cl.Roles, &exp, cl.ID)
	resource := ""
	if tok != nil {
		resource = tok.ID
	}
	if err := op.Done(resource, err); err != nil {
		return "", nil, err
	}
	return tokSecret, tok, nil
}

// mintToken stores a token for a client (client set) or an operator.
func (e *Core) mintToken(ctx context.Context, tenant string, roles []string, expiresAt *time.Time, client string) (string, *Token, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, err
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	tok := &Token{ID: uuid.NewString(), Tenant: tenant, Roles: roles, Created: e.now().UTC().Truncate(time.Second),
		ExpiresAt: expiresAt, CreatedBy: CallerFrom(ctx).Principal, Client: client, Hash: hashToken(secret)}
	data, err := json.Marshal(tok)
	if err != nil {
		return "", nil, err
	}
	fields := map[string]string{"tenant": tenant}
	if client != "" {
		fields["client"] = client
	}
	rec := &store.Record{Kind: kindToken, Tenant: store.PlatformTenant, ID: tok.ID,
		Unique: []string{"hash:" + tok.Hash}, Fields: fields, Data: data}
	return secret, tok, StoreErr(e.store.Create(ctx, rec, store.WriteOpts{}), "token")
}
