package signer

import (
	"context"

	"github.com/hsmca/hsmca/store"
)

// The families that still live in package signer, declared as the data
// the core reads (Family). This file is transitional: when a family moves
// into its own package, its Family() takes over its block below and the
// block is deleted; the file goes with the last one. One function per
// family, so that no two moves edit the same lines.

// BuiltinFamilies are the families of package signer, used when
// Options.Families is nil and by StoreIndexes without arguments. The keys
// API (signer/keys) is a package of its own and comes first in
// internal/families: it resolves an id through the key owners in
// registration order.
func BuiltinFamilies() []Family {
	return []Family{BuiltinPCA()}
}

// BuiltinPCA: CCM private CAs and certificates. Its indexes:
//
//   - certificates by status, common_name, not_after and expiry (the
//     stored status, "/", and not_after: the derived ISSUED and EXPIRED
//     states are ranges of it, and within one status it is not_after
//     order);
//   - revocations by issuer_id (a CRL reads its issuer's only);
//   - CAs by status (the purge sweep reads the deleted ones) and the CA
//     index by purge_at (the janitor reads the due ones). CA lists
//     otherwise read the tenant's CAs, which the CA quota bounds;
//   - the CA index by crl_due (the CRL refresher reads the due ones).
//
// Its janitors purge the CAs whose scheduled deletion fell due, also in
// tenants nobody reads, and re-sign the CRLs due for refresh.
func BuiltinPCA() Family {
	return Family{
		Name: "pca",
		Indexes: []store.Index{
			{Kind: kindPCACert, Field: "status"},
			{Kind: kindPCACert, Field: "common_name"},
			{Kind: kindPCACert, Field: "not_after"},
			{Kind: kindPCACert, Field: certExpiryField},
			{Kind: kindPCARevocation, Field: "issuer_id"},
			{Kind: kindPCACA, Field: "status"},
			{Kind: kindPCAIndex, Field: "purge_at"},
			{Kind: kindPCAIndex, Field: crlDueField},
		},
		Quotas: []QuotaDefault{
			{Resource: QuotaPCACAs, Default: 100},
			{Resource: QuotaPCACerts, Default: 100000},
		},
		CAExpiry: builtinCAExpiry(kindPCACA),
		Janitors: []Janitor{{Name: "purge-deleted-cas", Run: func(ctx context.Context, c *Core) (int, error) {
			return c.SweepDeletedCAs(ctx)
		}}, {Name: "refresh-crls", Run: func(ctx context.Context, c *Core) (int, error) {
			return c.RefreshDueCRLs(ctx)
		}}},
	}
}

// builtinCAExpiry hands the sources a family file declares in its init
// (caExpirySources) to the core, for the family's record kind.
func builtinCAExpiry(kind string) []CAExpirySource {
	var out []CAExpirySource
	for _, s := range caExpirySources {
		if s.kind == kind {
			out = append(out, CAExpirySource{Label: s.label, RecordKind: s.kind, Active: s.active})
		}
	}
	return out
}
