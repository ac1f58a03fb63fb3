package signer

import (
	"context"

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
