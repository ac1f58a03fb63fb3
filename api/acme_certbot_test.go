package api_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// certbot runs Debian's certbot against the directory, its files under
// the env's temp dir; it fails the test with certbot's output on error.
func (e *acmeEnv) certbot(args ...string) string {
	e.t.Helper()
	if _, err := exec.LookPath("certbot"); err != nil {
		if os.Getenv("CI") != "" {
			e.t.Fatal("certbot is not installed (softhsm/ensure-packages.sh certbot)")
		}
		e.t.Skip("certbot is not installed (softhsm/ensure-packages.sh certbot)")
	}
	base := []string{"--non-interactive", "--config-dir", filepath.Join(e.dir, "cb", "config"),
		"--work-dir", filepath.Join(e.dir, "cb", "work"), "--logs-dir", filepath.Join(e.dir, "cb", "logs"),
		"--server", e.dirURL}
	cmd := exec.Command("certbot", append(args[:1:1], append(base, args[1:]...)...)...)
	cmd.Env = append(os.Environ(), "HOME="+e.dir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	e.t.Logf("certbot %s: %s", args[0], time.Since(start))
	if os.Getenv("ACME_DEBUG") != "" {
		logs, _ := os.ReadFile(filepath.Join(e.dir, "cb", "logs", "letsencrypt.log"))
		e.t.Logf("%s", logs)
	}
	require.NoError(e.t, err, "certbot %v:\n%s", args, out)
	return string(out)
}

// Debian's certbot obtains a certificate over http-01 (standalone, on a
// loopback port), renews it and revokes it; each certificate verifies
// against the CA chain with openssl, names the CA's CRL and certificate,
// and is a certificate of the PCA family (revoked there, on its CRL).
func TestACMECertbot(t *testing.T) {
	e := newACME(t, "bolt", map[string]any{"allowed_domains": []string{"acme.test"}})
	const name = "www.acme.test"
	e.certbot("certonly", "--standalone", "--http-01-port", strconv.Itoa(e.httpPort), "--http-01-address", "127.0.0.1",
		"--preferred-challenges", "http", "--agree-tos", "--register-unsafely-without-email", "-d", name)
	live := filepath.Join(e.dir, "cb", "config", "live", name)
	first := e.verifyCert(filepath.Join(live, "cert.pem"), name)
	chain, err := os.ReadFile(filepath.Join(live, "chain.pem"))
	require.NoError(t, err)
	assert.Contains(t, string(chain), e.subPEM[:64])

	e.certbot("renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", name)
	second := e.verifyCert(filepath.Join(live, "cert.pem"), name)
	require.NotEqual(t, first.SerialNumber, second.SerialNumber)

	e.certbot("revoke", "--cert-name", name, "--reason", "keycompromise", "--no-delete-after-revoke")
	// The PCA family shows the certificate revoked, on its issuer's CRL.
	e.requireRevoked(second)
}
