package signer

// Per-tenant quota resources. The name is the store's quota counter and the
// key of the `quotas` configuration map.
const (
	QuotaKeys       = "keys"              // /v1/keys, default 1000
	QuotaDTSRootCAs = "dts_root_cas"      // MATTR DTS root CA certificates, fixed at 3
	QuotaDTSSigners = "dts_signers"       // MATTR VICAL signer certificates, fixed at 5
	QuotaPCACAs     = "pca_cas"           // CCM PCA certificate authorities, default 100
	QuotaPCACerts   = "pca_certificates"  // CCM PCA private certificates, default 100000
	QuotaAPIGCerts  = "apig_certificates" // APIG SSL certificates, default 1000
)

// quotaDefaults are the limits a tenant gets unless configuration says
// otherwise. The DTS limits are part of the public contract and cannot be
// raised.
var quotaDefaults = map[string]int64{
	QuotaKeys:       1000,
	QuotaDTSRootCAs: 3,
	QuotaDTSSigners: 5,
	QuotaPCACAs:     100,
	QuotaPCACerts:   100000,
	QuotaAPIGCerts:  1000,
}

var fixedQuotas = map[string]bool{QuotaDTSRootCAs: true, QuotaDTSSigners: true}

// QuotaResources lists every quota resource, for metrics and reports.
func QuotaResources() []string {
	return []string{QuotaKeys, QuotaDTSRootCAs, QuotaDTSSigners, QuotaPCACAs, QuotaPCACerts, QuotaAPIGCerts}
}

// QuotaLimit is the per-tenant limit of a resource.
func (e *Core) QuotaLimit(resource string) int64 {
	if n, ok := e.quotas[resource]; ok && !fixedQuotas[resource] {
		return n
	}
	if n, ok := quotaDefaults[resource]; ok {
		return n
	}
	return -1
}
