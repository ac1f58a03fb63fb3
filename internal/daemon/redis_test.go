package daemon

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/redisstore"
)

func redisEnv(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	for _, e := range config.Env {
		if _, ok := os.LookupEnv(e.Name); ok {
			t.Setenv(e.Name, "")
			os.Unsetenv(e.Name)
		}
	}
	t.Setenv("HSMCA_PKCS11_MODULE", "/x/lib.so")
	t.Setenv("HSMCA_STORE", "redis")
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Load("")
	require.NoError(t, err)
	return cfg
}

func secretFile(t *testing.T, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(p, []byte(value+"\n"), 0o600))
	return p
}

// The daemon opens the store in each mode from its settings alone: TLS
// files, passwords from files or the environment, ACL users.
func TestOpenStoreSentinelAndCluster(t *testing.T) {
	opts := testenv.HAOptions{TLS: true, ACL: true}
	sen := testenv.StartSentinel(t, opts)
	clu := testenv.StartCluster(t, opts)
	tlsEnv := func(a testenv.RedisAuth) map[string]string {
		return map[string]string{"HSMCA_REDIS_TLS": "true", "HSMCA_REDIS_TLS_CA": a.CAFile,
			"HSMCA_REDIS_TLS_CERT": a.CertFile, "HSMCA_REDIS_TLS_KEY": a.KeyFile, "HSMCA_REDIS_USERNAME": a.Username}
	}
	sentinel := tlsEnv(sen.Auth)
	sentinel["HSMCA_REDIS_MODE"] = "sentinel"
	sentinel["HSMCA_REDIS_MASTER_NAME"] = sen.MasterName
	sentinel["HSMCA_REDIS_ADDRS"] = strings.Join(sen.SentinelAddrs(), ",")
	sentinel["HSMCA_REDIS_PASSWORD_FILE"] = secretFile(t, sen.Auth.Password)
	sentinel["HSMCA_REDIS_SENTINEL_USERNAME"] = sen.Auth.SentinelUsername
	sentinel["HSMCA_REDIS_SENTINEL_PASSWORD"] = sen.Auth.SentinelPassword
	cluster := tlsEnv(clu.Auth)
	cluster["HSMCA_REDIS_MODE"] = "cluster"
	cluster["HSMCA_REDIS_ADDRS"] = strings.Join(clu.Addrs()[:2], ",")
	cluster["HSMCA_REDIS_PASSWORD"] = clu.Auth.Password
	standalone := map[string]string{"HSMCA_REDIS_URL": "rediss://" + sen.Data[0].Addr + "/0",
		"HSMCA_REDIS_TLS_CA": sen.Auth.CAFile, "HSMCA_REDIS_TLS_CERT": sen.Auth.CertFile, "HSMCA_REDIS_TLS_KEY": sen.Auth.KeyFile,
		"HSMCA_REDIS_USERNAME": sen.Auth.Username, "HSMCA_REDIS_PASSWORD_FILE": secretFile(t, sen.Auth.Password)}
	ctx := context.Background()
	for name, env := range map[string]map[string]string{"sentinel": sentinel, "cluster": cluster, "standalone": standalone} {
		t.Run(name, func(t *testing.T) {
			cfg := redisEnv(t, env)
			st, err := OpenStore(ctx, cfg)
			require.NoError(t, err)
			defer st.Close()
			assert.Equal(t, redisstore.Mode(name), st.(*redisstore.Store).Mode())
			require.NoError(t, st.Create(ctx, &store.Record{Kind: "k", Tenant: "t", ID: name, Data: json.RawMessage(`{}`)}, store.WriteOpts{}))

			// A wrong password is refused and not shown.
			env := maps.Clone(env)
			env["HSMCA_REDIS_PASSWORD_FILE"] = secretFile(t, "wrong-password-123")
			delete(env, "HSMCA_REDIS_PASSWORD")
			_, err = OpenStore(ctx, redisEnv(t, env))
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "wrong-password-123")

			// A missing file is named.
			env["HSMCA_REDIS_PASSWORD_FILE"] = "/nonexistent/redis.pass"
			_, err = OpenStore(ctx, redisEnv(t, env))
			assert.ErrorContains(t, err, "/nonexistent/redis.pass")
		})
	}
}
