package api_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

// BenchmarkRequest runs the bench's two hot requests through the router
// alone (no sockets, no contract check), on each store, for their
// allocations and the daemon's share of their time beside the HSM:
//
//	go test -run '^$' -bench Request -benchmem ./api/
func BenchmarkRequest(b *testing.B) {
	for _, backend := range apitest.Backends {
		b.Run(backend, func(b *testing.B) {
			env := apitest.New(b, backend, apitest.Options{InfoLog: true})
			tok := env.NewToken("bench", "admin")
			var ca struct {
				ID string `json:"ca_id"`
			}
			r := env.Do("POST", pcaCAs, tok, map[string]any{
				"type": "ROOT", "key_algorithm": "EC256", "signature_algorithm": "SHA256",
				"distinguished_name": map[string]string{"common_name": "bench root", "country": "NZ",
					"state": "Wellington", "locality": "Wellington", "organization": "hsmca", "organizational_unit": "bench"},
				"validity": map[string]any{"type": "YEAR", "value": 10}})
			require.Equal(b, http.StatusOK, r.Status, string(r.Body))
			r.JSON(b, &ca)
			var key struct {
				ID string `json:"id"`
			}
			r = env.Do("POST", "/v1/keys", tok, map[string]string{"algorithm": "EC256"})
			require.Equal(b, http.StatusCreated, r.Status, string(r.Body))
			r.JSON(b, &key)
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(b, err)
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				Subject: pkix.Name{CommonName: "bench.hsmca.test"}, DNSNames: []string{"bench.hsmca.test"}}, k)
			require.NoError(b, err)
			issue, err := json.Marshal(map[string]any{"issuer_id": ca.ID,
				"csr":      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
				"validity": map[string]any{"type": "DAY", "value": 30}})
			require.NoError(b, err)
			sign, err := json.Marshal(map[string]string{"algorithm": "ES256",
				"digest": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))})
			require.NoError(b, err)
			for _, c := range []struct {
				name, path string
				body       []byte
			}{{"sign", "/v1/keys/" + key.ID + "/sign", sign}, {"issue", pcaCerts + "/csr", issue}} {
				b.Run(c.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						req := httptest.NewRequest("POST", c.path, bytes.NewReader(c.body))
						req.Header.Set("Authorization", "Bearer "+tok)
						req.Header.Set("Content-Type", "application/json")
						rec := httptest.NewRecorder()
						env.Handler.ServeHTTP(rec, req)
						if rec.Code != http.StatusOK {
							b.Fatalf("%s: %d %s", c.name, rec.Code, rec.Body)
						}
					}
				})
			}
		})
	}
}
