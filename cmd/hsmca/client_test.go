package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/hsmca/hsmca/internal/testenv"
)

var clientLine = regexp.MustCompile(`^[A-Za-z0-9]{32} hsmca_cs_[A-Za-z0-9_-]{43}\n$`)

// tokenWorks fetches an access token with the standard client-credentials
// client and lists DTS roots with it.
func tokenWorks(t *testing.T, addr, id, secret string) {
	t.Helper()
	cfg := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: "http://" + addr + "/oauth/token",
		EndpointParams: url.Values{"audience": {"https://vii.mattr.global"}}}
	resp, err := cfg.Client(context.Background()).Get("http://" + addr + "/v1/ecosystems/certificates/ca")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestClientCreateWithoutAndThroughTheDaemon(t *testing.T) {
	tok := testenv.NewToken(t)
	isolate(t, tok)
	code, stdout, stderr := cli("client", "create", "--tenant", "acme", "--role", "dts-provider", "--name", "issuer")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, clientLine, stdout)
	assert.Contains(t, stderr, "written to the bolt store")
	id, secret, _ := strings.Cut(strings.TrimSpace(stdout), " ")
	assert.NotContains(t, stderr, secret)

	d := startDaemon(t)
	tokenWorks(t, d.Addr(), id, secret)

	code, stdout, stderr = cli("client", "create", "--tenant", "acme", "--role", "dts-provider", "--json")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "through the running daemon")
	var out map[string]string
	require.NoError(t, json.Unmarshal([]byte(stdout), &out))
	tokenWorks(t, d.Addr(), out["client_id"], out["client_secret"])

	code, stdout, stderr = cli("client", "create", "--tenant", "acme", "--role", "root")
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "unknown role")
}
