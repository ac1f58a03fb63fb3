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
// Options.Families is nil and by StoreIndexes without arguments. keys
// comes before apig: the keys API resolves an id through the key owners
// in registration order. (The PCA family is package signer/pca.)
func BuiltinFamilies() []Family {
	return []Family{BuiltinKeys(), BuiltinAPIG(), BuiltinDTS(), BuiltinAdmins()}
}

// BuiltinKeys: the keys API (/v1/keys) and the keys it owns.
func BuiltinKeys() Family {
	return Family{
		Name:      "keys",
		Quotas:    []QuotaDefault{{Resource: QuotaKeys, Default: 1000}},
		KeyOwners: []KeyOwner{{RecordKind: KindKey}},
	}
}

// BuiltinAPIG: APIG SSL certificates, whose imported keys the keys API
// can use but not manage.
func BuiltinAPIG() Family {
	return Family{
		Name:   "apig",
		Quotas: []QuotaDefault{{Resource: QuotaAPIGCerts, Default: 1000}},
		KeyOwners: []KeyOwner{{RecordKind: KindAPIGCertificate,
			Describe: "an APIG certificate; manage it through /v2/{project_id}/apigw/certificates"}},
	}
}

// BuiltinDTS: MATTR DTS root CAs and VICAL signers. Their limits are part
// of the public contract and cannot be raised.
func BuiltinDTS() Family {
	return Family{
		Name: "dts",
		// The root index by crl_due: the CRL refresher reads the due ones.
		Indexes: []store.Index{{Kind: kindDTSRootIndex, Field: crlDueField}},
		Quotas: []QuotaDefault{
			{Resource: QuotaDTSRootCAs, Default: 3, Fixed: true},
			{Resource: QuotaDTSSigners, Default: 5, Fixed: true},
		},
		CAExpiry: builtinCAExpiry(KindDTSRootCA),
		// Re-signs the root CRLs due for refresh (crl_refresh.go).
		Janitors: []Janitor{{Name: "refresh-crls", Run: func(ctx context.Context, c *Core) (int, error) {
			return c.RefreshDueCRLs(ctx)
		}}},
	}
}

// BuiltinAdmins: platform administrators. The core needs nothing of them;
// the entry keeps every family registered.
func BuiltinAdmins() Family {
	return Family{Name: "admins"}
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
