package families

import (
	"testing"

	"github.com/hsmca/hsmca/store"
	"github.com/stretchr/testify/assert"
)

// The daemon, the ops CLI, the bench and the chaos checks open the store
// with this list: it must name the indexes the engine's lists rely on,
// the ones declared before families registered them (a store opened
// without one drops it; the store reads them as a set).
func TestIndexes(t *testing.T) {
	var names []string
	for _, f := range All() {
		names = append(names, f.Name)
	}
	assert.Equal(t, []string{"keys", "apig", "dts", "pca", "admins", "ocsp", "acme"}, names)
	assert.ElementsMatch(t, []store.Index{
		{Kind: "pca_certificate", Field: "status"},
		{Kind: "pca_certificate", Field: "common_name"},
		{Kind: "pca_certificate", Field: "not_after"},
		{Kind: "pca_certificate", Field: "expiry"},
		{Kind: "pca_revocation", Field: "issuer_id"},
		{Kind: "apitoken", Field: "tenant"},
		{Kind: "apitoken", Field: "client"},
		{Kind: "accesskey", Field: "tenant"},
		{Kind: "oauthclient", Field: "tenant"},
		{Kind: "pca_ca", Field: "status"},
		{Kind: "pca_ca_index", Field: "purge_at"},
		{Kind: "pca_ca_index", Field: "crl_due"},
		{Kind: "dts_root_index", Field: "crl_due"},
		{Kind: "dts_intermediate_index", Field: "crl_due"},
		{Kind: "dts_intermediate_ca", Field: "ca_id"},
		{Kind: "ocsp_response", Field: "issuer"},
		{Kind: "ocsp_response", Field: "due"},
		{Kind: "ocsp_issuer", Field: "rotate_at"},
		{Kind: "acme_directory", Field: "tenant"},
		{Kind: "acme_order", Field: "account"},
		{Kind: "acme_order", Field: "open"},
		{Kind: "acme_nonce", Field: "expires"},
		{Kind: "acme_eab", Field: "directory"},
	}, Indexes())
}
