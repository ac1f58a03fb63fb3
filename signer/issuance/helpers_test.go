package issuance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every test here signs with in-memory Go keys: issuance needs no HSM.

func ecKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	return k
}

var (
	t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	t1 = t0.AddDate(10, 0, 0)
)
