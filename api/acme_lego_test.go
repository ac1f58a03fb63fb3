package api_test

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lego runs Debian's lego against the directory with its files under
// path; env adds variables (the DNS provider's).
func (e *acmeEnv) lego(path string, env []string, args ...string) string {
	e.t.Helper()
	if _, err := exec.LookPath("lego"); err != nil {
		if os.Getenv("CI") != "" {
			e.t.Fatal("lego is not installed (softhsm/ensure-packages.sh lego)")
		}
		e.t.Skip("lego is not installed (softhsm/ensure-packages.sh lego)")
	}
	cmd := exec.Command("lego", append([]string{"--server", e.dirURL, "--path", path, "--accept-tos",
		"--email", "ops@acme.test"}, args...)...)
	cmd.Env = append(append(os.Environ(), "HOME="+e.dir), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	e.t.Logf("lego %s: %s", strings.Join(args, " "), time.Since(start))
	require.NoError(e.t, err, "lego %v:\n%s", args, out)
	return string(out)
}

// dnsProvider serves lego's httpreq DNS provider on loopback: present
// and cleanup set and clear the TXT records the test DNS server answers.
func (e *acmeEnv) dnsProvider() string {
	e.t.Helper()
	mux := http.NewServeMux()
	handle := func(set bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var m struct{ FQDN, Value string }
			if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if set {
				e.dns.addTXT(m.FQDN, m.Value)
			} else {
				e.dns.removeTXT(m.FQDN, m.Value)
			}
		}
	}
	mux.HandleFunc("/present", handle(true))
	mux.HandleFunc("/cleanup", handle(false))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(e.t, err)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	e.t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

// Debian's lego obtains, renews and revokes over http-01 (its own server
// on a loopback port), then obtains a wildcard over dns-01 (its httpreq
// provider writing into the test's DNS server, which the validator
// asks); every certificate verifies against the CA chain with openssl
// and names the CA's CRL and certificate.
func TestACMELego(t *testing.T) {
	e := newACME(t, "redis", map[string]any{"allowed_domains": []string{"acme.test"}})
	path := filepath.Join(e.dir, "lego")
	httpArgs := []string{"--http", "--http.port", "127.0.0.1:" + strconv.Itoa(e.httpPort), "-d", "lego.acme.test"}
	e.lego(path, nil, append(httpArgs, "run")...)
	crt := filepath.Join(path, "certificates", "lego.acme.test.crt")
	e.splitLeaf(crt)
	first := e.verifyCert(crt+".leaf", "lego.acme.test")

	e.lego(path, nil, append(httpArgs, "renew", "--days", "1000", "--no-random-sleep")...)
	e.splitLeaf(crt)
	second := e.verifyCert(crt+".leaf", "lego.acme.test")
	require.NotEqual(t, first.SerialNumber, second.SerialNumber)

	e.lego(path, nil, append(httpArgs, "revoke", "--reason", "4")...)
	e.requireRevoked(second)

	env := []string{"HTTPREQ_ENDPOINT=" + e.dnsProvider(), "HTTPREQ_PROPAGATION_TIMEOUT=10", "HTTPREQ_POLLING_INTERVAL=1"}
	e.lego(path, env, "--dns", "httpreq", "--dns.disable-cp", "--dns.resolvers", e.dns.addr,
		"-d", "*.dns.acme.test", "-d", "dns.acme.test", "run")
	wild := filepath.Join(path, "certificates", "_.dns.acme.test.crt")
	e.splitLeaf(wild)
	e.verifyCert(wild+".leaf", "*.dns.acme.test", "dns.acme.test")
}

// A directory that requires external account binding refuses lego
// without it and serves it with a key from the tenant's route.
func TestACMELegoEAB(t *testing.T) {
	e := newACME(t, "bolt", map[string]any{"allowed_domains": []string{"acme.test"}, "external_account_binding": "required"})
	path := filepath.Join(e.dir, "lego")
	args := []string{"--http", "--http.port", "127.0.0.1:" + strconv.Itoa(e.httpPort), "-d", "eab.acme.test"}
	cmd := exec.Command("lego", append([]string{"--server", e.dirURL, "--path", path, "--accept-tos",
		"--email", "ops@acme.test"}, append(args, "run")...)...)
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "lego without EAB: %s", out)
	assert.Contains(t, string(out), "External Account Binding") // lego reads meta.externalAccountRequired

	k := e.ok(e.do("POST", "/v1/acme/directories/"+e.dirID+"/eab-keys", nil), http.StatusCreated)
	e.lego(path, nil, append([]string{"--eab", "--kid", k["key_id"].(string), "--hmac", k["hmac_key"].(string)}, append(args, "run")...)...)
	crt := filepath.Join(path, "certificates", "eab.acme.test.crt")
	e.splitLeaf(crt)
	e.verifyCert(crt+".leaf", "eab.acme.test")

	// The key bound one account: another account cannot use it.
	other := filepath.Join(e.dir, "lego2")
	cmd = exec.Command("lego", append([]string{"--server", e.dirURL, "--path", other, "--accept-tos", "--email", "two@acme.test",
		"--eab", "--kid", k["key_id"].(string), "--hmac", k["hmac_key"].(string)}, append(args, "run")...)...)
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "a second account with one EAB key: %s", out)
	assert.Contains(t, string(out), "already bound")
}

// splitLeaf writes the first certificate of a bundle to file.leaf.
func (e *acmeEnv) splitLeaf(bundle string) {
	e.t.Helper()
	raw, err := os.ReadFile(bundle)
	require.NoError(e.t, err)
	end := strings.Index(string(raw), "-----END CERTIFICATE-----")
	require.Positive(e.t, end)
	require.NoError(e.t, os.WriteFile(bundle+".leaf", raw[:end+len("-----END CERTIFICATE-----\n")], 0o600))
}
