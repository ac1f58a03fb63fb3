package monitoring_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// createCAs makes one CA certificate of every kind, so that the CA expiry
// panel has a series for each, and issues a certificate under the private
// CA hierarchy.
func createCAs(t *testing.T, c *client) {
	code, body := c.do("POST", "/v1/ecosystems/certificates/ca", map[string]any{"organisationName": "Example Inc."})
	require.Equal(t, 201, code, "%v", body)

	dn := func(cn string) map[string]any {
		return map[string]any{"common_name": cn, "country": "DE", "state": "Berlin", "locality": "Berlin",
			"organization": "Example", "organizational_unit": "PKI"}
	}
	code, body = c.do("POST", "/v1/private-certificate-authorities", map[string]any{"type": "ROOT",
		"distinguished_name": dn("Example Root"), "key_algorithm": "EC256", "signature_algorithm": "SHA256",
		"validity": map[string]any{"type": "YEAR", "value": 10}})
	require.Equal(t, 200, code, "%v", body)
	root := body["ca_id"].(string)
	code, body = c.do("POST", "/v1/private-certificate-authorities", map[string]any{"type": "SUBORDINATE",
		"distinguished_name": dn("Example Issuing CA"), "key_algorithm": "EC256", "signature_algorithm": "SHA256",
		"issuer_id": root, "path_length": 0, "validity": map[string]any{"type": "YEAR", "value": 5}})
	require.Equal(t, 200, code, "%v", body)
	sub := body["ca_id"].(string)
	code, body = c.do("POST", "/v1/private-certificates", map[string]any{"issuer_id": sub,
		"distinguished_name":        map[string]any{"common_name": "www.example.com"},
		"validity":                  map[string]any{"type": "DAY", "value": 30},
		"subject_alternative_names": []map[string]any{{"type": "DNS", "value": "www.example.com"}}})
	require.Equal(t, 200, code, "%v", body)
}
