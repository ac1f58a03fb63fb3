package signer

import "github.com/hsmca/hsmca/store"

// StoreIndexes are the store indexes the engine's lists rely on; every
// process that opens the store passes them (see store.Index), so that no
// list reads every record of a large kind:
//
//   - certificates by status, common_name, not_after and expiry (the
//     stored status, "/", and not_after: the derived ISSUED and EXPIRED
//     states are ranges of it, and within one status it is not_after
//     order);
//   - revocations by issuer_id (a CRL reads its issuer's only);
//   - API tokens by tenant;
//   - CAs by status (the purge sweep reads the deleted ones) and the CA
//     index by purge_at (the janitor reads the due ones). CA lists
//     otherwise read the tenant's CAs, which the CA quota bounds;
//   - the CA and DTS root indexes by crl_due (the CRL refresher reads
//     the due ones).
func StoreIndexes() []store.Index {
	return []store.Index{
		{Kind: kindPCACert, Field: "status"},
		{Kind: kindPCACert, Field: "common_name"},
		{Kind: kindPCACert, Field: "not_after"},
		{Kind: kindPCACert, Field: certExpiryField},
		{Kind: kindPCARevocation, Field: "issuer_id"},
		{Kind: kindToken, Field: "tenant"},
		{Kind: kindPCACA, Field: "status"},
		{Kind: kindPCAIndex, Field: "purge_at"},
		{Kind: kindPCAIndex, Field: crlDueField},
		{Kind: kindDTSRootIndex, Field: crlDueField},
	}
}
