package dts

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The hook the AuthorityInfoAccess of signer certificates reads.
func TestOCSPURLOfRoot(t *testing.T) {
	r := &dtsRoot{OCSP: true}
	u, ok := ocspURL(r, "https://ca.example.com")
	assert.True(t, ok)
	assert.Equal(t, "https://ca.example.com/ocsp", u)
	_, ok = ocspURL(r, "")
	assert.False(t, ok)
	r.OCSP = false
	_, ok = ocspURL(r, "https://ca.example.com")
	assert.False(t, ok)
}
