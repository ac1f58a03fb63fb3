package families

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/hsmca/hsmca/signer"
)

// The keys API resolves an id through the key owners in registration
// order: its own keys first, then the keys APIG certificates imported.
func TestKeyOwnersOrder(t *testing.T) {
	c := signer.New(signer.Options{Families: All()})
	t.Cleanup(func() { c.Close() })
	var kinds []string
	for _, o := range c.KeyOwners() {
		kinds = append(kinds, o.RecordKind)
	}
	assert.Equal(t, []string{"key", "apig_certificate"}, kinds)
	assert.Empty(t, c.KeyOwners()[0].Describe, "the keys API manages its own keys")
	assert.Contains(t, c.KeyOwners()[1].Describe, "/v2/{project_id}/apigw/certificates")
}
