package api_test

import (
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every hash works with every EC key of a CA for certificates; its CRLs
// take the hash of the key's curve whatever the CA's.
func TestPCASignatureAlgorithms(t *testing.T) {
	p := newPCA(t, "bolt")
	want := map[string]x509.SignatureAlgorithm{"SHA256": x509.ECDSAWithSHA256, "SHA384": x509.ECDSAWithSHA384, "SHA512": x509.ECDSAWithSHA512}
	wantCRL := map[string]x509.SignatureAlgorithm{"EC256": x509.ECDSAWithSHA256, "EC384": x509.ECDSAWithSHA384}
	for _, alg := range []string{"EC256", "EC384"} {
		for h, sa := range want {
			root := p.createRoot("R "+alg+" "+h, map[string]any{"key_algorithm": alg, "signature_algorithm": h,
				"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}})
			leaf := p.issueLeaf(root, "x.example.com", map[string]any{"signature_algorithm": h})
			p.ok(p.do("POST", pcaCerts+"/"+leaf+"/revoke", nil), http.StatusNoContent)
			rootPEM, _ := p.exportCA(root)
			rc := pcaParseCert(t, rootPEM)
			assert.Equal(t, sa, rc.SignatureAlgorithm)
			require.NoError(t, rc.CheckSignatureFrom(rc), "%s %s", alg, h)
			crl := pcaFetchCRL(t, p, root)
			assert.Equal(t, wantCRL[alg], crl.SignatureAlgorithm)
			require.NoError(t, crl.CheckSignatureFrom(rc), "%s %s", alg, h)
		}
	}
}

// Operations leave START/SUCCESS/FAIL events in the tenant's chain and
// signatures feed the latency histogram.
func TestPCAEventsAndSigningMetrics(t *testing.T) {
	p := newPCA(t, "redis")
	root := p.createRoot("Evented Root")
	sub := p.createPending("Evented Sub")
	body := map[string]any{"issuer_id": root, "signature_algorithm": "SHA256", "validity": pcaYears(1)}
	p.ok(p.do("POST", pcaCAs+"/"+sub+"/activate", body), http.StatusNoContent)
	pcaFail(t, p.do("POST", pcaCAs+"/"+sub+"/activate", body), http.StatusBadRequest, "PCA.00020301")
	leaf := p.issueLeaf(sub, "ev.example.com")
	p.ok(p.do("POST", pcaCerts+"/"+leaf+"/revoke", nil), http.StatusNoContent)

	evs, err := p.Store.ListEvents(t.Context(), "t1", 0, 0)
	require.NoError(t, err)
	var seen []string
	for _, ev := range evs {
		var rec struct{ Operation, Outcome, Resource, ErrorCode string }
		require.NoError(t, json.Unmarshal(ev.Data, &rec))
		seen = append(seen, rec.Operation+"_"+rec.Outcome+":"+rec.Resource)
	}
	for _, want := range []string{"PCA_CA_CREATE_SUCCESS:" + root, "PCA_CA_ACTIVATE_SUCCESS:" + sub,
		"PCA_CA_ACTIVATE_FAIL:" + sub, "PCA_CERTIFICATE_ISSUE_SUCCESS:" + leaf, "PCA_CERTIFICATE_REVOKE_SUCCESS:" + leaf} {
		assert.True(t, slices.Contains(seen, want), "event %s missing from %v", want, seen)
	}

	r, err := http.Get(p.Server.URL + "/metrics")
	require.NoError(t, err)
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	for _, want := range []string{
		`hsmca_signing_duration_seconds_count{key_algorithm="EC256",operation="pca_certificate"}`,
		`hsmca_signing_duration_seconds_count{key_algorithm="EC256",operation="pca_ca_certificate"}`,
		`hsmca_signing_duration_seconds_count{key_algorithm="EC256",operation="pca_csr"}`,
		`hsmca_events_total{event="PCA_CA_ACTIVATE",stage="FAIL"} 1`,
		`hsmca_events_total{event="PCA_CA_CREATE",stage="START"} 2`,
	} {
		assert.Contains(t, string(raw), want)
	}
}
