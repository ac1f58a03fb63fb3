package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHTTPMethodAndStatusSets(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"} {
		assert.Equal(t, m, HTTPMethod(m))
		assert.True(t, KnownHTTPMethod(m))
	}
	for _, m := range []string{"", "get", "PROPFIND", "ABCDEFGHIJKLMNOP", strings.Repeat("X", 60000)} {
		assert.Equal(t, Other, HTTPMethod(m), "%.20q", m)
		assert.False(t, KnownHTTPMethod(m))
	}
	for status, want := range map[int]string{100: "1xx", 200: "2xx", 204: "2xx", 404: "4xx", 501: "5xx", 599: "5xx",
		0: "other", 99: "other", 600: "other", -1: "other", 1 << 30: "other"} {
		assert.Equal(t, want, StatusClass(status), "%d", status)
	}
}

func TestKeyAlgorithmBuckets(t *testing.T) {
	for in, want := range map[string]string{
		"EC256": "EC256", "EC384": "EC384", "EC521": "EC521", "ED25519": "ED25519",
		"RSA2048": "RSA2048", "RSA3072": "RSA3072", "RSA4096": "RSA4096",
		"RSA2049": "RSA_OTHER", "RSA8192": "RSA_OTHER", "RSA1": "RSA_OTHER",
		"EC-P-256": "EC256", "EC-P-384": "EC384", "EC-P-521": "EC521", "EC-P-224": Other,
		"RSA": Other, "RSAx": Other, "unknown": Other, "": Other, strings.Repeat("A", 1000): Other,
	} {
		assert.Equal(t, want, KeyAlgorithm(in), "%.20q", in)
	}
}

func TestHSMLabelBuckets(t *testing.T) {
	for _, c := range []string{"CKR_DEVICE_ERROR", "CKR_PIN_INCORRECT", "CKR_SESSION_HANDLE_INVALID", "CKR_VENDOR_DEFINED",
		"timeout", "unavailable", "not_found", "other"} {
		assert.Equal(t, c, HSMErrorCode(c))
	}
	for _, c := range []string{"CKR_0x80000123", "CKR_0xDEAD", "CKR_", "CKR_NOT_A_CODE", "", "ok"} {
		assert.Equal(t, Other, HSMErrorCode(c), c)
	}
	for _, f := range []string{"C_Sign", "C_Login", "C_GenerateKeyPair", "C_Encrypt", "C_Decrypt", "C_GetSessionInfo"} {
		assert.Equal(t, f, HSMFunction(f))
	}
	assert.Equal(t, Other, HSMFunction("C_Whatever"))
	assert.Equal(t, Other, HSMFunction("sign"))
}

// series counts the series of one metric family on the registry.
func series(t *testing.T, m *Metrics, name string) int {
	t.Helper()
	mfs, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// TestObserveBoundsSeries: whatever values reach the observers, the number
// of series stops growing once each fixed value has been seen.
func TestObserveBoundsSeries(t *testing.T) {
	m := New("test")
	m.AllowRoutes("/v1/keys")
	m.ObserveHTTP("/v1/keys", "GET", 200, time.Millisecond)
	m.ObserveHTTP("", "BREW", 404, time.Millisecond)
	m.ObserveHTTP("/v1/keys", "BREW", 200, time.Millisecond)
	m.ObserveSigning("key_sign", "RSA2049", time.Millisecond)
	m.ObserveSigning("key_sign", "weird", time.Millisecond)
	m.ObserveHSMCall("C_Vendor", time.Millisecond, "CKR_0x80000001")
	before := map[string]int{}
	names := []string{"hsmca_http_requests_total", "hsmca_http_request_duration_seconds",
		"hsmca_signing_duration_seconds", "hsmca_hsm_call_duration_seconds", "hsmca_hsm_call_errors_total"}
	for _, n := range names {
		before[n] = series(t, m, n)
	}
	for i := 0; i < 500; i++ {
		m.ObserveHTTP(fmt.Sprintf("/v1/keys/%d", i), fmt.Sprintf("M%015d", i), 400+i%100, time.Millisecond)
		m.ObserveHTTP("/v1/keys", fmt.Sprintf("X%d", i), 200, time.Millisecond)
		m.ObserveSigning("key_sign", fmt.Sprintf("RSA%d", 2049+i), time.Millisecond)
		m.ObserveSigning("key_sign", fmt.Sprintf("weird-%d", i), time.Millisecond)
		m.ObserveHSMCall(fmt.Sprintf("C_Vendor%d", i), time.Millisecond, fmt.Sprintf("CKR_0x%X", 0x80000000+i))
	}
	for _, n := range names {
		assert.Equal(t, before[n], series(t, m, n), n)
	}
}
