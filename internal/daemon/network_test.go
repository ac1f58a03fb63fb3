package daemon

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
)

// startTLSDaemon runs a daemon serving HTTPS with a certificate of a test
// CA and returns its address and the CA's pool.
func startTLSDaemon(t *testing.T) (*Daemon, *x509.CertPool) {
	t.Helper()
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	ca := testpki.NewCA(t, "hsmca network test CA")
	server := ca.Issue(t, testpki.Options{CommonName: "hsmcad", Server: true,
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}})
	cfg.TLS.Cert, cfg.TLS.Key = server.WriteFiles(t, t.TempDir(), "server")
	d, _ := startDaemon(t, cfg, nil)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return d, pool
}

// TestTLSVersionFloor: a client that offers at most TLS 1.1 (or 1.0) is
// refused in the handshake; TLS 1.2 is accepted and TLS 1.3 is what a
// current client gets.
func TestTLSVersionFloor(t *testing.T) {
	d, pool := startTLSDaemon(t)

	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS 1.0", tls.VersionTLS10}, {"TLS 1.1", tls.VersionTLS11}} {
		conn, err := tls.Dial("tcp", d.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
			MinVersion: tls.VersionTLS10, MaxVersion: v.max}) //nolint:gosec // the old versions under test
		if err == nil {
			conn.Close()
		}
		require.Error(t, err, "%s handshake must fail", v.name)
		assert.Contains(t, err.Error(), "protocol version", "%s: %v", v.name, err)
	}

	for _, v := range []struct {
		name     string
		min, max uint16
	}{{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS12, 0}} {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, MinVersion: v.min, MaxVersion: v.max}}}
		resp, err := client.Get("https://" + d.Addr() + "/healthz")
		require.NoError(t, err, v.name)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, v.name)
		want := v.max
		if want == 0 {
			want = tls.VersionTLS13
		}
		assert.Equal(t, want, resp.TLS.Version, "%s negotiated", v.name)
	}
}

// TestTLS12ModernSuitesOnly: a TLS 1.2 client offering only CBC suites
// (with SHA-1 or SHA-256 MACs) or RSA key exchange fails the handshake;
// one offering an ECDHE suite with AES-GCM or ChaCha20-Poly1305 gets it.
// Every HTTPS answer carries Strict-Transport-Security and nosniff.
func TestTLS12ModernSuitesOnly(t *testing.T) {
	d, pool := startTLSDaemon(t)
	dial := func(suite uint16) (*tls.Conn, error) {
		return tls.Dial("tcp", d.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
			MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}}) //nolint:gosec // the weak suites under test
	}
	for _, suite := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
	} {
		conn, err := dial(suite)
		if err == nil {
			conn.Close()
		}
		assert.Error(t, err, "TLS 1.2 with %s must fail", tls.CipherSuiteName(suite))
	}
	// The server certificate's key is ECDSA: the ECDSA suites of the list.
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256} {
		conn, err := dial(suite)
		require.NoError(t, err, tls.CipherSuiteName(suite))
		assert.Equal(t, suite, conn.ConnectionState().CipherSuite)
		conn.Close()
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, path := range []string{"/healthz", "/v1/keys", "/v1/none"} {
		resp, err := client.Get("https://" + d.Addr() + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "max-age=63072000", resp.Header.Get("Strict-Transport-Security"), path)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
	}
}

// TestPlainHTTPHasNoHSTS: without TLS there is no Strict-Transport-Security
// (browsers ignore it over HTTP, and it would be false); nosniff is there.
func TestPlainHTTPHasNoHSTS(t *testing.T) {
	d, _ := startDaemon(t, testConfig(t, testenv.NewToken(t)), nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + d.Addr() + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, resp.Header.Get("Strict-Transport-Security"))
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
}

// TestPublicRateLimitFromConfig: rate_limit.public_* reach the router: a
// client address past the burst on a CRL route gets 429 with Retry-After,
// while the probes stay unlimited.
func TestPublicRateLimitFromConfig(t *testing.T) {
	cfg := testConfig(t, testenv.NewToken(t))
	rps := 0.01 // one request per 100 s: nothing refills during the test
	cfg.RateLimit.PublicRequestsPerSecond = &rps
	cfg.RateLimit.PublicBurst = 2
	d, _ := startDaemon(t, cfg, nil)
	base := "http://" + d.Addr()
	crl := base + "/v1/private-certificate-authorities/5b6f2c1e-3a4d-4e8f-9a0b-1c2d3e4f5a6b/crl"
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 2; i++ {
		resp, err := client.Get(crl)
		require.NoError(t, err)
		resp.Body.Close()
		assert.NotEqual(t, http.StatusTooManyRequests, resp.StatusCode, "request %d of the burst", i)
	}
	resp, err := client.Get(crl)
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "100", resp.Header.Get("Retry-After"))
	assert.Contains(t, string(raw), `"error_code":"APIG.0308"`)
	for i := 0; i < 10; i++ {
		code, _ := get(t, base+"/healthz")
		assert.Equal(t, http.StatusOK, code)
	}
}

// TestHTTPServerTimeouts: the listener's read-header, read, write and idle
// timeouts are the configured ones (defaults included), so that no client
// holds a connection or a handler's goroutine without bound.
func TestHTTPServerTimeouts(t *testing.T) {
	tok := testenv.NewToken(t)

	cfg := testConfig(t, tok)
	d, _ := startDaemon(t, cfg, nil)
	assert.Equal(t, 5*time.Second, d.srv.ReadHeaderTimeout, "default read-header timeout")
	assert.Equal(t, 30*time.Second, d.srv.ReadTimeout, "default read timeout")
	assert.Equal(t, 30*time.Second, d.srv.WriteTimeout, "default write timeout")
	assert.Equal(t, 120*time.Second, d.srv.IdleTimeout, "default idle timeout")
	assert.Equal(t, 16<<10, d.srv.MaxHeaderBytes, "default header limit")

	path := t.TempDir() + "/hsmcad.yaml"
	require.NoError(t, os.WriteFile(path, []byte("http:\n  read_header_timeout: 2s\n  read_timeout: 7s\n"+
		"  write_timeout: 11s\n  idle_timeout: 13s\n  max_header_bytes: 32768\nadmin_socket: \"off\"\n"), 0o600))
	testConfig(t, tok) // a data directory of its own
	loaded, err := config.Load(path)
	require.NoError(t, err)
	d2, _ := startDaemon(t, loaded, nil)
	assert.Equal(t, 2*time.Second, d2.srv.ReadHeaderTimeout)
	assert.Equal(t, 7*time.Second, d2.srv.ReadTimeout)
	assert.Equal(t, 11*time.Second, d2.srv.WriteTimeout)
	assert.Equal(t, 13*time.Second, d2.srv.IdleTimeout)
	assert.Equal(t, 32<<10, d2.srv.MaxHeaderBytes)
}

// TestSlowClientsAreCutOthersServed: 200 loopback connections that send
// their request header a byte at a time (and some that send nothing at
// all) do not keep a normal client from being served, and the server
// closes every one of them once the read-header timeout has passed.
func TestSlowClientsAreCutOthersServed(t *testing.T) {
	const slow = 200
	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	cfg.HTTP.ReadHeaderTimeout = 500 * time.Millisecond
	d, _ := startDaemon(t, cfg, nil)
	addr := d.Addr()

	// Each slow client trickles a header that never ends, one byte every
	// 100ms, for at most 10s: far past the timeout, and bounded.
	header := []byte("GET /healthz HTTP/1.1\r\nHost: hsmcad\r\nX-Slow: " + strings.Repeat("a", 64))
	var (
		wg          sync.WaitGroup
		cut         atomic.Int64
		outlived    atomic.Int64
		dialed      = make(chan struct{}, slow)
		stopTrickle = make(chan struct{})
	)
	for i := 0; i < slow; i++ {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err, "slow client %d", i)
		t.Cleanup(func() { conn.Close() })
		silent := i%4 == 0
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			dialed <- struct{}{}
			if silent {
				return
			}
			for _, b := range header {
				select {
				case <-stopTrickle:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := conn.Write([]byte{b}); err != nil {
					return
				}
			}
		}()
		go func() { // reader: the server must close the connection
			defer wg.Done()
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := io.Copy(io.Discard, bufio.NewReader(conn))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				outlived.Add(1)
				return
			}
			cut.Add(1)
		}()
	}
	for i := 0; i < slow; i++ {
		<-dialed
	}

	// Meanwhile a normal client is served.
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 5; i++ {
		resp, err := client.Get("http://" + addr + "/healthz")
		require.NoError(t, err, "a normal client must be served while slow clients hold connections")
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}

	wg.Wait()
	close(stopTrickle)
	assert.Equal(t, int64(slow), cut.Load(), "every slow connection is closed by the server")
	assert.Zero(t, outlived.Load(), "no slow connection stays open 20s, long past the read-header timeout")

	resp, err := client.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the daemon still serves after the slow clients are gone")
}
