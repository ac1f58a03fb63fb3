package signer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/store"
)

// Access keys: the second credential kind beside API tokens, for clients
// that sign each request with an access key id and a secret key (Huawei
// Cloud's AK/SK). Checking such a signature needs the secret itself, not
// a hash of it, so the secret is stored sealed under an AES key of the HSM
// (Seal), bound to the key id and tenant, and opened only to check a
// signature.

const (
	kindAccessKey = "accesskey"
	// accessKeyWrapID names the HSM wrapping key that seals secret keys.
	accessKeyWrapID    = "hsmca-access-key-wrap"
	accessKeyWrapLabel = "hsmca/access-key-wrap"
	// accessKeyIDLen and accessKeySecretLen follow the shape of Huawei
	// Cloud's credentials (20 and 40 characters), so that tools which
	// check the shape accept ours.
	accessKeyIDLen     = 20
	accessKeySecretLen = 40
	// secretCacheTTL bounds how long an opened secret stays in memory:
	// within it a request costs a store read (revocation is still seen at
	// once) but no HSM call.
	secretCacheTTL  = 5 * time.Minute
	secretCacheSize = 4096
)

// AccessKey is an access key's stored metadata. Sealed is the secret key
// encrypted by the HSM; it is never shown.
type AccessKey struct {
	ID        string     `json:"id"`
	Tenant    string     `json:"tenant"`
	Roles     []string   `json:"roles"`
	Created   time.Time  `json:"created"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	LastUsed  *time.Time `json:"lastUsed,omitempty"`
	CreatedBy string     `json:"createdBy,omitempty"`
	Sealed    []byte     `json:"sealed"`
}

// Public returns the key without its sealed secret.
func (k *AccessKey) Public() AccessKey {
	out := *k
	out.Sealed = nil
	return out
}

func accessKeyAAD(id, tenant string) []byte {
	return []byte("hsmca/access-key/" + tenant + "/" + id)
}

// randomAlnum returns n characters drawn uniformly from alphabet.
func randomAlnum(n int, alphabet string) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	limit := 256 - 256%len(alphabet)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

const (
	upperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	alnum       = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// ValidAccessKeyID reports whether s has the shape of an access key id.
func ValidAccessKeyID(s string) bool {
	if len(s) != accessKeyIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(upperDigits, rune(s[i])) {
			return false
		}
	}
	return true
}

// CreateAccessKey makes an access key for tenant and returns its secret
// key, shown once.
func (e *Core) CreateAccessKey(ctx context.Context, tenant string, roles []string, expiresAt *time.Time) (string, *AccessKey, error) {
	secret, k, err := createCredential(e, ctx, tenant, "ACCESS_KEY_CREATE",
		func() (string, *AccessKey, error) { return e.createAccessKey(ctx, tenant, roles, expiresAt) },
		func(k *AccessKey) string { return k.ID })
	if err != nil {
		return "", nil, err
	}
	pub := k.Public()
	return secret, &pub, nil
}

func (e *Core) createAccessKey(ctx context.Context, tenant string, roles []string, expiresAt *time.Time) (string, *AccessKey, error) {
	roles, err := checkCredential(tenant, roles)
	if err != nil {
		return "", nil, err
	}
	now := e.now().UTC().Truncate(time.Second)
	if expiresAt != nil && !expiresAt.After(now) {
		return "", nil, Invalid("expires_at", expiresAt.Format(time.RFC3339), "must be in the future")
	}
	// The secret key is kept sealed by the token: one that cannot wrap
	// secrets can keep none.
	if err := e.SupportsFeature(hsm.FeatureWrap); err != nil {
		return "", nil, Unsupported(err, "", "", nil, "it cannot keep an access key's secret; use an API token or an OAuth client instead")
	}
	id, err := randomAlnum(accessKeyIDLen, upperDigits)
	if err != nil {
		return "", nil, err
	}
	secret, err := randomAlnum(accessKeySecretLen, alnum)
	if err != nil {
		return "", nil, err
	}
	k := &AccessKey{ID: id, Tenant: tenant, Roles: roles, Created: now, ExpiresAt: expiresAt,
		CreatedBy: CallerFrom(ctx).Principal}
	k.Sealed, err = e.Seal(ctx, accessKeyWrapID, accessKeyWrapLabel, []byte(secret), accessKeyAAD(id, tenant))
	if err != nil {
		return "", k, err
	}
	data, err := json.Marshal(k)
	if err != nil {
		return "", k, err
	}
	rec := &store.Record{Kind: kindAccessKey, Tenant: store.PlatformTenant, ID: id,
		Fields: map[string]string{"tenant": tenant}, Data: data}
	return secret, k, StoreErr(e.store.Create(ctx, rec, store.WriteOpts{}), "access key")
}

// checkCredential checks the tenant and roles of a new credential and
// returns the roles sorted, without duplicates.
func checkCredential(tenant string, roles []string) ([]string, error) {
	if !ValidTenant(tenant) {
		return nil, Invalid("tenant", tenant, "must be 1-64 letters, digits, '-' or '_', not starting with '_'")
	}
	if len(roles) == 0 {
		return nil, Invalid("roles", roles, "at least one role is required")
	}
	roles = slices.Clone(roles)
	slices.Sort(roles)
	roles = slices.Compact(roles)
	for _, r := range roles {
		if !slices.Contains(TenantRoles, r) {
			return nil, Invalid("roles", r, "unknown role; want one of "+strings.Join(TenantRoles, ", "))
		}
	}
	return roles, nil
}

// ListAccessKeys lists access keys, of one tenant or (tenant empty) of
// all, without their secrets.
func (e *Core) ListAccessKeys(ctx context.Context, tenant string) ([]AccessKey, error) {
	op := e.Start(ctx, "", "ACCESS_KEY_RETRIEVE_LIST")
	out, err := listCredentials(e, ctx, kindAccessKey, "access key", tenant, (*AccessKey).Public)
	return out, op.Done("", err)
}

// RevokeAccessKey deletes an access key; the next request signed with it
// fails on every replica, because every check reads the store.
func (e *Core) RevokeAccessKey(ctx context.Context, id string) error {
	op := e.Start(ctx, e.credentialTenant(ctx, kindAccessKey, id), "ACCESS_KEY_DELETE")
	err := StoreErr(e.store.Delete(ctx, kindAccessKey, store.PlatformTenant, id, store.WriteOpts{}), "access key")
	if err == nil {
		e.secrets.drop(id)
		e.tokenSeen.Delete("ak:" + id)
	}
	return op.Done(id, err)
}

// AccessKeyCheck is what authenticating a signed request needs: the key
// id it names, and a check of the signature under a secret key.
type AccessKeyCheck struct {
	ID    string
	Valid func(secret []byte) bool
}

// AuthenticateAccessKey resolves a signed request to its access key. Every
// failure of the credential is the same unauthenticated error.
func (e *Core) AuthenticateAccessKey(ctx context.Context, chk AccessKeyCheck) (*AccessKey, error) {
	denied := &Error{Kind: KindUnauthenticated, Msg: "invalid access key or signature"}
	if !ValidAccessKeyID(chk.ID) {
		return nil, denied
	}
	rec, err := e.store.Get(ctx, kindAccessKey, store.PlatformTenant, chk.ID)
	if err != nil {
		if KindOf(StoreErr(err, "access key")) == KindNotFound {
			return nil, denied
		}
		return nil, StoreErr(err, "access key")
	}
	var k AccessKey
	if err := json.Unmarshal(rec.Data, &k); err != nil {
		return nil, StoreErr(err, "access key")
	}
	now := e.now()
	if k.ID != chk.ID || (k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)) {
		return nil, denied
	}
	secret, err := e.accessKeySecret(ctx, &k, now)
	if err != nil {
		return nil, err
	}
	ok := chk.Valid(secret)
	clear(secret)
	if !ok {
		return nil, denied
	}
	e.touchCredential(rec, "ak:"+k.ID, k.LastUsed, now, func(used time.Time) ([]byte, error) {
		c := k
		c.LastUsed = &used
		return json.Marshal(&c)
	})
	pub := k.Public()
	return &pub, nil
}

// accessKeySecret opens the key's sealed secret, from the cache when the
// same sealed blob was opened recently. The caller owns (and clears) the
// slice returned.
func (e *Core) accessKeySecret(ctx context.Context, k *AccessKey, now time.Time) ([]byte, error) {
	sum := sha256.Sum256(k.Sealed)
	if s, ok := e.secrets.get(k.ID, sum, now); ok {
		return s, nil
	}
	secret, err := e.Unseal(ctx, accessKeyWrapID, k.Sealed, accessKeyAAD(k.ID, k.Tenant))
	if err != nil {
		if KindOf(err) == KindUnavailable {
			return nil, err
		}
		// A blob that does not open under this key id and tenant was not
		// made for them: the credential is refused, not the server.
		return nil, &Error{Kind: KindUnauthenticated, Msg: "invalid access key or signature"}
	}
	e.secrets.put(k.ID, sum, secret, now)
	return secret, nil
}

// secretCache holds opened secret keys for a short time, keyed by key id
// and the hash of the sealed blob they came from.
type secretCache struct {
	mu sync.Mutex
	m  map[string]cachedSecret
}

type cachedSecret struct {
	blob   [32]byte
	secret []byte
	until  time.Time
}

func (c *secretCache) get(id string, blob [32]byte, now time.Time) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[id]
	if !ok || s.blob != blob || now.After(s.until) {
		return nil, false
	}
	return slices.Clone(s.secret), true
}

func (c *secretCache) put(id string, blob [32]byte, secret []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= secretCacheSize {
		for k, s := range c.m {
			clear(s.secret)
			delete(c.m, k)
		}
		c.m = make(map[string]cachedSecret)
	}
	c.m[id] = cachedSecret{blob: blob, secret: slices.Clone(secret), until: now.Add(secretCacheTTL)}
}

func (c *secretCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[id]; ok {
		clear(s.secret)
		delete(c.m, id)
	}
}
