package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

var eabLines = regexp.MustCompile(`^kid [A-Za-z0-9_-]{22}\nhmac [A-Za-z0-9_-]{43}\n$`)

// call sends a JSON request to the daemon with a tenant token.
func call(t *testing.T, addr, tok, method, path string, body any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(method, "http://"+addr+path, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Less(t, resp.StatusCode, 300, "%s %s: %v", method, path, out)
	return out
}

// hsmca acme eab create makes an EAB key of a directory through the
// running daemon (its HSM seals the MAC key) and refuses without one.
func TestACMEEABCreate(t *testing.T) {
	tok := testenv.NewToken(t)
	isolate(t, tok)
	code, _, stderr := cli("acme", "eab", "create", "--tenant", "t1", "--directory", "x")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "must be running")

	d := startDaemon(t)
	code, secret, stderr := cli("token", "create", "--tenant", "t1", "--role", "ca-operator")
	require.Equal(t, 0, code, stderr)
	api := string(bytes.TrimSpace([]byte(secret)))
	ca := call(t, d.Addr(), api, "POST", "/v1/private-certificate-authorities", map[string]any{"type": "ROOT",
		"distinguished_name": map[string]any{"common_name": "EAB Root", "country": "DE", "state": "Berlin", "locality": "Berlin", "organization": "hsmca tests", "organizational_unit": "PKI"},
		"key_algorithm":      "EC256", "signature_algorithm": "SHA256", "validity": map[string]any{"type": "YEAR", "value": 1}})
	dir := call(t, d.Addr(), api, "POST", "/v1/acme/directories", map[string]any{"ca_id": ca["ca_id"],
		"policy": map[string]any{"external_account_binding": "required"}})

	code, stdout, stderr := cli("acme", "eab", "create", "--tenant", "t1", "--directory", dir["id"].(string))
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, eabLines, stdout)
	assert.Contains(t, stderr, "shown only this once")

	code, _, stderr = cli("acme", "eab", "create", "--tenant", "t2", "--directory", dir["id"].(string))
	assert.Equal(t, 1, code, "another tenant's directory")
	assert.Contains(t, stderr, "no such ACME directory")
	code, _, _ = cli("acme", "eab", "create", "--tenant", "t1")
	assert.Equal(t, 2, code)
}
