package signer

import (
	"context"
	"encoding/json"
	"time"

	"github.com/hsmca/hsmca/store"
)

// What the three credential kinds (API tokens, access keys, OAuth
// clients) share: their events go to the chain of the tenant they are
// for, so the tenant's auditors see every credential issued to it; a name
// that cannot be a tenant (and so cannot hold a chain) logs to the
// platform.

func credentialEventTenant(tenant string) string {
	if ValidTenant(tenant) {
		return tenant
	}
	return ""
}

// createCredential runs mk as the operation name in tenant's chain; id
// names the credential in the event, also when storing it failed.
func createCredential[T any](e *Core, ctx context.Context, tenant, name string, mk func() (string, *T, error), id func(*T) string) (string, *T, error) {
	op := e.Start(ctx, credentialEventTenant(tenant), name)
	secret, v, err := mk()
	resource := ""
	if v != nil {
		resource = id(v)
	}
	if err := op.Done(resource, err); err != nil {
		return "", nil, err
	}
	return secret, v, nil
}

// credentialTenant is the tenant a stored credential of kind is for, the
// chain its revocation is logged to ("" when it does not exist).
func (e *Core) credentialTenant(ctx context.Context, kind, id string) string {
	rec, err := e.store.Get(ctx, kind, store.PlatformTenant, id)
	if err != nil {
		return ""
	}
	return credentialEventTenant(rec.Fields["tenant"])
}

// listCredentials lists the stored credentials of kind, of one tenant or
// (tenant empty) of all, each passed through shown (which drops what must
// not leave the core).
func listCredentials[T any](e *Core, ctx context.Context, kind, what, tenant string, shown func(*T) T) ([]T, error) {
	q := store.Query{Kind: kind, Tenant: store.PlatformTenant}
	if tenant != "" {
		q.Filters = []store.Filter{{Field: "tenant", Value: tenant}}
	}
	page, err := e.store.List(ctx, q)
	if err != nil {
		return nil, StoreErr(err, what)
	}
	out := make([]T, 0, len(page.Records))
	for _, r := range page.Records {
		var v T
		if err := json.Unmarshal(r.Data, &v); err != nil {
			return out, StoreErr(err, what)
		}
		out = append(out, shown(&v))
	}
	return out, nil
}

// touchCredential records a credential's last use at most once per period
// (seen keys the in-memory mark), off the request path: a lost update only
// makes "last used" slightly older, and an update of a credential revoked
// meanwhile fails. used returns the record's data with the new time.
func (e *Core) touchCredential(rec *store.Record, seen string, last *time.Time, now time.Time, used func(time.Time) ([]byte, error)) {
	if v, ok := e.tokenSeen.Load(seen); ok && now.Sub(v.(time.Time)) < tokenLastUsedEvery {
		return
	}
	if last != nil && now.Sub(*last) < tokenLastUsedEvery {
		e.tokenSeen.Store(seen, *last)
		return
	}
	e.tokenSeen.Store(seen, now)
	data, err := used(now.UTC().Truncate(time.Second))
	if err != nil {
		return
	}
	r := *rec
	r.Data = data
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = e.store.Update(ctx, &r, store.WriteOpts{})
	}()
}
