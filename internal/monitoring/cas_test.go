package monitoring_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// createCAs makes one CA certificate of every kind, so that the CA expiry
// panel has a series for each.
func createCAs(t *testing.T, c *client) {
	code, body := c.do("POST", "/v1/ecosystems/certificates/ca", map[string]any{"organisationName": "Example Inc."})
	require.Equal(t, 201, code, "%v", body)
}
