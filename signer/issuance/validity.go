package issuance

import (
	"crypto/x509"
	"fmt"
	"time"
)

// WithinIssuer refuses a child period that the issuer's certificate does
// not cover: a child never outlives its issuer, and is never cut short
// silently. field names the request's validity.
func WithinIssuer(field string, nb, na time.Time, issuer *x509.Certificate) error {
	if na.After(issuer.NotAfter) {
		return refuse(BadValidity, field, na.UTC().Format(time.RFC3339),
			"the certificate would end after its issuer ("+issuer.NotAfter.UTC().Format(time.RFC3339)+")")
	}
	if nb.Before(issuer.NotBefore) {
		return refuse(BadValidity, field+".start_from", nb.UnixMilli(),
			"the certificate would start before its issuer ("+issuer.NotBefore.UTC().Format(time.RFC3339)+")")
	}
	return nil
}

// Path lengths: a subordinate allows 0 to MaxPathLength CA levels below
// it; UnlimitedPathLength stands for a root's "no limit".
const (
	MaxPathLength       = 6
	UnlimitedPathLength = 7
)

// CheckPathLength validates a requested path length against its issuer's:
// the issuer must allow one more CA level below it, and the child must
// allow fewer than the issuer.
func CheckPathLength(field string, child, issuer int) error {
	switch {
	case child < 0 || child > MaxPathLength:
		return refuse(BadValue, field, child, fmt.Sprintf("must be from 0 to %d", MaxPathLength))
	case issuer <= 0:
		return refuse(BadPathLength, field, child, "the issuer has path length 0 and may issue only end-entity certificates")
	case child >= issuer:
		return refuse(BadPathLength, field, child, fmt.Sprintf("must be below the issuer's path length %d", issuer))
	}
	return nil
}
