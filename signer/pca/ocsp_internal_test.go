package pca

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The hook the AuthorityInfoAccess of issued certificates reads: the OCSP
// URL when the issuer's OCSP is on and the daemon has a public base URL.
func TestOCSPURLOfIssuer(t *testing.T) {
	is := &issuer{ca: &caRecord{OCSP: true}}
	u, ok := ocspURL(is, "https://ca.example.com/")
	assert.True(t, ok)
	assert.Equal(t, "https://ca.example.com/ocsp", u)
	_, ok = ocspURL(is, "")
	assert.False(t, ok, "no public base URL")
	is.ca.OCSP = false
	_, ok = ocspURL(is, "https://ca.example.com")
	assert.False(t, ok, "OCSP off")
}
