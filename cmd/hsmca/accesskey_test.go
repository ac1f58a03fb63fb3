package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	hwconfig "github.com/huaweicloud/huaweicloud-sdk-go-v3/core/config"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	apigv2 "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/apig/v2"
	apigmodel "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/apig/v2/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/testenv"
)

var accessKeyLine = regexp.MustCompile(`^[A-Z0-9]{20} [A-Za-z0-9]{40}\n$`)

// listWithSDK lists APIG certificates through the official Huawei SDK
// with an access key, as a user would after `hsmca accesskey create`.
func listWithSDK(t *testing.T, addr, ak, sk, project string) error {
	t.Helper()
	cred, err := basic.NewCredentialsBuilder().WithAk(ak).WithSk(sk).WithProjectId(project).SafeBuild()
	require.NoError(t, err)
	hc, err := apigv2.ApigClientBuilder().WithEndpoints([]string{"http://" + addr}).WithCredential(cred).
		WithHttpConfig(hwconfig.DefaultHttpConfig().WithTimeout(20 * time.Second)).SafeBuild()
	require.NoError(t, err)
	_, err = apigv2.NewApigClient(hc).ListCertificatesV2(&apigmodel.ListCertificatesV2Request{})
	return err
}

func startDaemon(t *testing.T) *daemon.Daemon {
	t.Helper()
	cfg, err := config.Load("")
	require.NoError(t, err)
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Shutdown(context.Background()) })
	require.Eventually(t, func() bool {
		r, err := http.Get("http://" + d.Addr() + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond)
	return d
}

func TestAccessKeyCreateWithoutDaemonSealsWithTheHSM(t *testing.T) {
	tok := testenv.NewToken(t)
	isolate(t, tok)
	code, stdout, stderr := cli("accesskey", "create", "--tenant", "acme", "--role", "ca-operator")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, accessKeyLine, stdout, "stdout holds the key id and the secret key")
	assert.Contains(t, stderr, "written to the bolt store")
	assert.Contains(t, stderr, "opening the HSM token")
	ak, sk, _ := strings.Cut(strings.TrimSpace(stdout), " ")
	assert.NotContains(t, stderr, sk)

	d := startDaemon(t)
	require.NoError(t, listWithSDK(t, d.Addr(), ak, sk, "acme"))
}

func TestAccessKeyCreateGoesThroughRunningDaemon(t *testing.T) {
	tok := testenv.NewToken(t)
	isolate(t, tok)
	d := startDaemon(t)
	code, stdout, stderr := cli("accesskey", "create", "--tenant", "acme", "--role", "admin", "--json")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "through the running daemon")
	var out map[string]string
	require.NoError(t, json.Unmarshal([]byte(stdout), &out))
	require.NoError(t, listWithSDK(t, d.Addr(), out["access_key"], out["secret_key"], "acme"))

	err := listWithSDK(t, d.Addr(), out["access_key"], out["secret_key"], "other")
	var se *sdkerr.ServiceResponseError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusForbidden, se.StatusCode)

	code, stdout, stderr = cli("accesskey", "create", "--tenant", "acme")
	assert.Equal(t, 2, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "--role")
}
