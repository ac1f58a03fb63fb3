package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The CSR row parses and verifies the CSR as the daemon does, and counts a
// CSR whose signature does not verify as an error, not as a measurement.
func TestCSRCheckRow(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "row.hsmca.test"}, DNSNames: []string{"row.hsmca.test"}}, k)
	require.NoError(t, err)
	p := Phase{Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond}

	row := csrCheckRow(context.Background(), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), 2, p)
	assert.Equal(t, OpCSRCheck, row.Op)
	assert.Positive(t, row.Ops)
	assert.Zero(t, row.Errors, row.FirstError)
	assert.Positive(t, row.CPUPerOp)

	bad := append([]byte(nil), der...)
	bad[len(bad)-5] ^= 0x40 // inside the signature
	row = csrCheckRow(context.Background(), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad})), 1, p)
	assert.Zero(t, row.Ops)
	assert.Positive(t, row.Errors)
}
