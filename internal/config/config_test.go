package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func clearEnv(t *testing.T) {
	for _, e := range Env {
		if _, ok := os.LookupEnv(e.Name); ok {
			t.Setenv(e.Name, "")
			os.Unsetenv(e.Name)
		}
	}
}

func TestDefaults(t *testing.T) {
	clearEnv(t)
	c, err := Load("")
	if DefaultModule() == "" {
		require.ErrorContains(t, err, "no PKCS#11 module")
		return
	}
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8080", c.ListenAddr)
	assert.Equal(t, "bolt", c.Store.Backend)
	assert.Equal(t, filepath.Join(".data", "hsmca.db"), c.Store.BoltPath)
	assert.Equal(t, "hsmca", c.PKCS11.TokenLabel)
	assert.Equal(t, "HSMCA_PIN", c.PKCS11.PINEnv)
	assert.Equal(t, 5*time.Second, c.HTTP.ReadHeaderTimeout)
	assert.Equal(t, int64(1<<20), c.HTTP.MaxBodyBytes)
	assert.Equal(t, filepath.Join(".data", "admin.sock"), c.AdminSocket)
	assert.Equal(t, 16384, c.HTTP.MaxHeaderBytes)
	require.NotNil(t, c.RateLimit.PublicRequestsPerSecond)
	assert.Equal(t, 20.0, *c.RateLimit.PublicRequestsPerSecond)
	assert.Zero(t, c.RateLimit.PublicBurst, "twice the rate")
	assert.Equal(t, 5*time.Second, c.PKCS11.CallTimeout)
	assert.Equal(t, 60*time.Second, c.PKCS11.KeygenTimeout)
	assert.Equal(t, 3, c.PKCS11.BreakerThreshold)
}

func TestPKCS11Deadlines(t *testing.T) {
	clearEnv(t)
	t.Setenv("HSMCA_PKCS11_MODULE", "/x/lib.so")
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("pkcs11:\n  call_timeout: 2s\n  keygen_timeout: 2m\n  breaker_threshold: 5\n"), 0o600))
	c, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, c.PKCS11.CallTimeout)
	assert.Equal(t, 2*time.Minute, c.PKCS11.KeygenTimeout)
	assert.Equal(t, 5, c.PKCS11.BreakerThreshold)
	assert.Equal(t, "auto", c.PKCS11.SessionCopies)
	t.Setenv("HSMCA_PKCS11_CALL_TIMEOUT", "750ms")
	t.Setenv("HSMCA_PKCS11_SESSION_COPIES", "off")
	c, err = Load(path)
	require.NoError(t, err)
	assert.Equal(t, 750*time.Millisecond, c.PKCS11.CallTimeout, "the variable wins")
	assert.Equal(t, "off", c.PKCS11.SessionCopies)
}

func TestEdgeSettings(t *testing.T) {
	clearEnv(t)
	t.Setenv("HSMCA_PKCS11_MODULE", "/x/lib.so")
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
http:
  max_header_bytes: 8192
rate_limit:
  public_requests_per_second: 5
  public_burst: 7
`), 0o600))
	c, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, 8192, c.HTTP.MaxHeaderBytes)
	assert.Equal(t, 5.0, *c.RateLimit.PublicRequestsPerSecond)
	assert.Equal(t, 7, c.RateLimit.PublicBurst)

	t.Setenv("HSMCA_RATE_LIMIT_PUBLIC_RPS", "0")
	t.Setenv("HSMCA_RATE_LIMIT_PUBLIC_BURST", "3")
	t.Setenv("HSMCA_MAX_HEADER_BYTES", "65536")
	c, err = Load(path)
	require.NoError(t, err)
	assert.Equal(t, 65536, c.HTTP.MaxHeaderBytes)
	assert.Zero(t, *c.RateLimit.PublicRequestsPerSecond, "0 disables")
	assert.Equal(t, 3, c.RateLimit.PublicBurst)
}

func TestFileThenEnv(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
listen_addr: 127.0.0.1:9000
store:
  backend: redis
  redis_url: redis://127.0.0.1:1/0
pkcs11:
  module: /x/lib.so
  token_label: fromfile
http:
  read_timeout: 7s
`), 0o600))
	t.Setenv("HSMCA_TOKEN_LABEL", "fromenv")
	t.Setenv("HSMCA_SLOT", "42")
	t.Setenv("HSMCA_ADMIN_SOCKET", "off")
	c, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9000", c.ListenAddr)
	assert.Equal(t, "redis", c.Store.Backend)
	assert.Equal(t, "fromenv", c.PKCS11.TokenLabel)
	require.NotNil(t, c.PKCS11.Slot)
	assert.Equal(t, uint(42), *c.PKCS11.Slot)
	assert.Equal(t, 7*time.Second, c.HTTP.ReadTimeout)
	assert.Empty(t, c.AdminSocket)
}

func TestInvalid(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		file string
		want string
	}{
		"unknown backend":    {env: map[string]string{"HSMCA_STORE": "etcd"}, want: `store.backend "etcd"`},
		"redis without url":  {env: map[string]string{"HSMCA_STORE": "redis"}, want: "no redis_url"},
		"bad slot":           {env: map[string]string{"HSMCA_SLOT": "one"}, want: "HSMCA_SLOT"},
		"bad pool":           {env: map[string]string{"HSMCA_POOL_SIZE": "0"}, want: "HSMCA_POOL_SIZE"},
		"bad call timeout":   {env: map[string]string{"HSMCA_PKCS11_CALL_TIMEOUT": "soon"}, want: "HSMCA_PKCS11_CALL_TIMEOUT"},
		"zero keygen":        {env: map[string]string{"HSMCA_PKCS11_KEYGEN_TIMEOUT": "0s"}, want: "HSMCA_PKCS11_KEYGEN_TIMEOUT"},
		"bad breaker":        {env: map[string]string{"HSMCA_PKCS11_BREAKER_THRESHOLD": "-1"}, want: "HSMCA_PKCS11_BREAKER_THRESHOLD"},
		"bad session copies": {env: map[string]string{"HSMCA_PKCS11_SESSION_COPIES": "yes"}, want: `pkcs11.session_copies "yes"`},
		"cert without key":   {env: map[string]string{"HSMCA_TLS_CERT": "/c.pem"}, want: "go together"},
		"client ca, no tls":  {env: map[string]string{"HSMCA_CLIENT_CA": "/ca.pem"}, want: "client certificates need TLS"},
		"bad listen address": {env: map[string]string{"HSMCA_LISTEN_ADDR": "nonsense"}, want: "listen_addr"},
		"bad log level":      {env: map[string]string{"HSMCA_LOG_LEVEL": "loud"}, want: "log_level"},
		"unknown yaml key":   {file: "listen_adr: x\n", want: "listen_adr"},
		"bad trusted proxy":  {env: map[string]string{"HSMCA_TRUSTED_PROXY": "maybe"}, want: "HSMCA_TRUSTED_PROXY"},
		"bad public rate":    {env: map[string]string{"HSMCA_RATE_LIMIT_PUBLIC_RPS": "-1"}, want: "HSMCA_RATE_LIMIT_PUBLIC_RPS"},
		"bad public burst":   {env: map[string]string{"HSMCA_RATE_LIMIT_PUBLIC_BURST": "x"}, want: "HSMCA_RATE_LIMIT_PUBLIC_BURST"},
		"huge public rate":   {file: "rate_limit:\n  public_requests_per_second: 2000000\n", want: "public_requests_per_second"},
		"bad header limit":   {env: map[string]string{"HSMCA_MAX_HEADER_BYTES": "0"}, want: "HSMCA_MAX_HEADER_BYTES"},
		"tiny header limit":  {env: map[string]string{"HSMCA_MAX_HEADER_BYTES": "100"}, want: "http.max_header_bytes"},
		"huge header limit":  {file: "http:\n  max_header_bytes: 10000000\n", want: "http.max_header_bytes"},
		"relative base url":  {env: map[string]string{"HSMCA_PUBLIC_BASE_URL": "/pki"}, want: "public_base_url"},
		"base url, no host":  {file: "public_base_url: https:///x\n", want: "no host"},
		"redis bad mode":     {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_MODE": "ring"}, want: `store.redis.mode "ring"`},
		"sentinel no name": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_MODE": "sentinel",
			"HSMCA_REDIS_ADDRS": "a:1"}, want: "needs master_name"},
		"cluster no addrs": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_MODE": "cluster"}, want: "cluster needs addrs"},
		"cluster with url": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_MODE": "cluster",
			"HSMCA_REDIS_ADDRS": "a:1", "HSMCA_REDIS_URL": "redis://x:1"}, want: "takes addrs, not redis_url"},
		"cluster with db": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_MODE": "cluster",
			"HSMCA_REDIS_ADDRS": "a:1", "HSMCA_REDIS_DB": "2"}, want: "neither master_name nor db"},
		"addr without port": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_MODE": "cluster",
			"HSMCA_REDIS_ADDRS": "a:1,b"}, want: `addrs "b"`},
		"standalone addrs": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_URL": "redis://x:1",
			"HSMCA_REDIS_ADDRS": "a:1"}, want: "standalone takes redis_url"},
		"not a redis url": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_URL": "http://x:1"}, want: "want a redis:// or rediss:// URL"},
		"tls files, no tls": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_URL": "redis://x:1",
			"HSMCA_REDIS_TLS_CA": "/ca.pem"}, want: "TLS is off"},
		"tls with redis://": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_URL": "redis://x:1",
			"HSMCA_REDIS_TLS": "true"}, want: "use rediss://"},
		"redis cert, no key": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_URL": "rediss://x:1",
			"HSMCA_REDIS_TLS_CERT": "/c.pem"}, want: "cert_file and key_file"},
		"bad redis tls": {env: map[string]string{"HSMCA_REDIS_TLS": "yes please"}, want: "HSMCA_REDIS_TLS"},
		"bad redis db":  {env: map[string]string{"HSMCA_REDIS_DB": "-1"}, want: "HSMCA_REDIS_DB"},
		"bad wait":      {env: map[string]string{"HSMCA_REDIS_WAIT_REPLICAS": "-1"}, want: "HSMCA_REDIS_WAIT_REPLICAS"},
		"bad wait time": {env: map[string]string{"HSMCA_REDIS_WAIT_TIMEOUT": "soon"}, want: "HSMCA_REDIS_WAIT_TIMEOUT"},
		"negative wait": {file: "store:\n  backend: redis\n  redis_url: redis://x:1\n  redis:\n    wait_replicas: -2\n", want: "wait_replicas is negative"},
		"two passwords": {env: map[string]string{"HSMCA_STORE": "redis", "HSMCA_REDIS_URL": "redis://u:secret-pw@x:1",
			"HSMCA_REDIS_PASSWORD_FILE": "/pw"}, want: "keep one"},
		"two urls": {file: "store:\n  backend: redis\n  redis_url: redis://a:1\n  redis:\n    url: redis://b:1\n", want: "differ"},
	} {
		t.Run(name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("HSMCA_PKCS11_MODULE", "/x/lib.so")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			path := ""
			if tc.file != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				require.NoError(t, os.WriteFile(path, []byte(tc.file), 0o600))
			}
			_, err := Load(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "secret-pw", "no URL is shown")
		})
	}
}

// The public base URL: absolute http(s) only, kept without a trailing
// slash; the variable wins over the file; unset stays empty.
func TestPublicBaseURL(t *testing.T) {
	clearEnv(t)
	t.Setenv("HSMCA_PKCS11_MODULE", "/x/lib.so")
	c, err := Load("")
	require.NoError(t, err)
	assert.Empty(t, c.PublicBaseURL)

	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("public_base_url: https://ca.example.com/\n"), 0o600))
	c, err = Load(path)
	require.NoError(t, err)
	assert.Equal(t, "https://ca.example.com", c.PublicBaseURL)
	t.Setenv("HSMCA_PUBLIC_BASE_URL", "http://10.0.0.5:8443/pki/")
	c, err = Load(path)
	require.NoError(t, err)
	assert.Equal(t, "http://10.0.0.5:8443/pki", c.PublicBaseURL)

	for raw, want := range map[string]string{
		"https://ca.example.com":           "https://ca.example.com",
		"HTTPS://CA.example.com:443/a/b//": "https://CA.example.com:443/a/b",
		"http://[2001:db8::1]:8080":        "http://[2001:db8::1]:8080",
	} {
		got, err := CheckPublicBaseURL(raw)
		require.NoError(t, err, raw)
		assert.Equal(t, want, got)
	}
	for raw, why := range map[string]string{
		"ca.example.com":               "scheme",
		"ftp://ca.example.com":         "scheme",
		"https://":                     "no host",
		"https://:8443":                "no host",
		"https://u:p@ca.example.com":   "user information",
		"https://ca.example.com/?x=1":  "query",
		"https://ca.example.com/?":     "query",
		"https://ca.example.com/#frag": "fragment",
		"https://ca.example.com:99999": "port",
		"https://ca.example.com/a b":   "spaces",
		"mailto:ops@example.com":       "scheme",
		"https:ca.example.com":         "no host",
		"https://ca.example.com\x7f/x": "",
		"https://bücher.example/":      "non-ASCII",
	} {
		_, err := CheckPublicBaseURL(raw)
		require.Error(t, err, raw)
		assert.Contains(t, err.Error(), why, raw)
		assert.Contains(t, err.Error(), "want an absolute http or https URL", raw)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	clearEnv(t)
	c, err := Load("../../deploy/hsmcad.example.yaml")
	require.NoError(t, err)
	assert.Equal(t, "hsmca", c.PKCS11.TokenLabel)
	assert.Equal(t, "/etc/hsmca/user.pin", c.PKCS11.PINFile)

	// Its Redis Sentinel block, switched on, is a valid configuration.
	raw, err := os.ReadFile("../../deploy/hsmcad.example.yaml")
	require.NoError(t, err)
	lines := strings.Split(string(raw), "\n")
	in := false
	for i, l := range lines {
		switch {
		case l == "  # redis:":
			in = true
		case in && !strings.HasPrefix(l, "  # "):
			in = false
		}
		if in {
			lines[i] = "  " + strings.TrimPrefix(l, "  # ")
		}
		if l == "  backend: bolt              # bolt | redis" {
			lines[i] = "  backend: redis"
		}
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600))
	c, err = Load(path)
	require.NoError(t, err)
	assert.Equal(t, "sentinel", c.RedisMode())
	assert.Equal(t, "hsmca", c.Store.Redis.MasterName)
	assert.Len(t, c.Store.Redis.Addrs, 3)
	assert.True(t, c.RedisTLS())
}

// The Redis modes from the file, and the variables over them; the
// standalone URL under either name.
func TestRedisModes(t *testing.T) {
	clearEnv(t)
	t.Setenv("HSMCA_PKCS11_MODULE", "/x/lib.so")
	dir := t.TempDir()
	write := func(body string) string {
		path := filepath.Join(dir, "c.yaml")
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		return path
	}

	c, err := Load(write("store:\n  backend: redis\n  redis_url: redis://127.0.0.1:6379/2\n"))
	require.NoError(t, err)
	assert.Equal(t, "standalone", c.RedisMode())
	assert.Equal(t, "redis://127.0.0.1:6379/2", c.RedisURL())
	assert.False(t, c.RedisTLS())
	c, err = Load(write("store:\n  backend: redis\n  redis:\n    url: rediss://r.example:6380/0\n    tls:\n      ca_file: /etc/ca.pem\n"))
	require.NoError(t, err)
	assert.Equal(t, "rediss://r.example:6380/0", c.RedisURL())
	assert.True(t, c.RedisTLS(), "rediss:// is TLS")

	path := write(`
store:
  backend: redis
  redis:
    mode: sentinel
    master_name: main
    addrs: [10.0.0.1:26379, 10.0.0.2:26379]
    db: 3
    username: hsmca
    password_file: /etc/hsmca/redis.pass
    sentinel_username: watcher
    sentinel_password_file: /etc/hsmca/sentinel.pass
    wait_replicas: 2
    wait_timeout: 250ms
    tls:
      enabled: true
      ca_file: /etc/hsmca/redis-ca.pem
      cert_file: /etc/hsmca/redis-client.pem
      key_file: /etc/hsmca/redis-client.key
      server_name: redis.internal
`)
	c, err = Load(path)
	require.NoError(t, err)
	r := c.Store.Redis
	assert.Equal(t, "sentinel", c.RedisMode())
	assert.Equal(t, "main", r.MasterName)
	assert.Equal(t, []string{"10.0.0.1:26379", "10.0.0.2:26379"}, r.Addrs)
	assert.Equal(t, 3, r.DB)
	assert.Equal(t, "hsmca", r.Username)
	assert.Equal(t, "/etc/hsmca/redis.pass", r.PasswordFile)
	assert.Equal(t, "watcher", r.SentinelUsername)
	assert.Equal(t, "/etc/hsmca/sentinel.pass", r.SentinelPasswordFile)
	assert.True(t, c.RedisTLS())
	assert.Equal(t, "/etc/hsmca/redis-ca.pem", r.TLS.CAFile)
	assert.Equal(t, "redis.internal", r.TLS.ServerName)
	require.NotNil(t, r.WaitReplicas)
	assert.Equal(t, 2, *r.WaitReplicas)
	assert.Equal(t, 250*time.Millisecond, r.WaitTimeout)

	t.Setenv("HSMCA_REDIS_MODE", "cluster")
	t.Setenv("HSMCA_REDIS_ADDRS", " 10.0.1.1:7000, 10.0.1.2:7000 ,")
	t.Setenv("HSMCA_REDIS_MASTER_NAME", "")
	t.Setenv("HSMCA_REDIS_DB", "0")
	t.Setenv("HSMCA_REDIS_USERNAME", "other")
	t.Setenv("HSMCA_REDIS_PASSWORD_FILE", "/run/secrets/redis")
	t.Setenv("HSMCA_REDIS_TLS_CA", "/run/ca.pem")
	t.Setenv("HSMCA_REDIS_TLS_CERT", "/run/c.pem")
	t.Setenv("HSMCA_REDIS_TLS_KEY", "/run/c.key")
	t.Setenv("HSMCA_REDIS_TLS_SERVER_NAME", "")
	t.Setenv("HSMCA_REDIS_WAIT_REPLICAS", "0")
	t.Setenv("HSMCA_REDIS_WAIT_TIMEOUT", "1s")
	c, err = Load(path)
	require.NoError(t, err)
	r = c.Store.Redis
	assert.Equal(t, "cluster", c.RedisMode())
	assert.Equal(t, []string{"10.0.1.1:7000", "10.0.1.2:7000"}, r.Addrs)
	assert.Equal(t, "other", r.Username)
	assert.Equal(t, "/run/secrets/redis", r.PasswordFile)
	assert.Equal(t, "/run/ca.pem", r.TLS.CAFile)
	assert.Equal(t, "/run/c.pem", r.TLS.CertFile)
	assert.Equal(t, "/run/c.key", r.TLS.KeyFile)
	assert.Empty(t, r.TLS.ServerName)
	require.NotNil(t, r.WaitReplicas)
	assert.Zero(t, *r.WaitReplicas, "0 turns waiting off")
	assert.Equal(t, time.Second, r.WaitTimeout)
	t.Setenv("HSMCA_REDIS_TLS", "false")
	_, err = Load(path)
	assert.ErrorContains(t, err, "TLS is off")

	// HSMCA_REDIS_URL wins over the file's URL.
	clearEnv(t)
	t.Setenv("HSMCA_PKCS11_MODULE", "/x/lib.so")
	t.Setenv("HSMCA_REDIS_URL", "redis://10.9.9.9:6379/0")
	c, err = Load(write("store:\n  backend: redis\n  redis:\n    url: redis://b:1\n"))
	require.NoError(t, err)
	assert.Equal(t, "redis://10.9.9.9:6379/0", c.RedisURL())
}

// The example's events block, switched on, is a valid configuration, and
// the HSMCA_EVENTS_* variables make or change the sinks named file and
// syslog.
func TestEventsConfig(t *testing.T) {
	clearEnv(t)
	raw, err := os.ReadFile("../../deploy/hsmcad.example.yaml")
	require.NoError(t, err)
	lines := strings.Split(string(raw), "\n")
	in := false
	for i, l := range lines {
		if l == "# events:" {
			in = true
		}
		if in && strings.TrimSpace(l) == "" {
			in = false // the block ends at the first blank line
		}
		if in && strings.HasPrefix(l, "# ") {
			lines[i] = strings.TrimPrefix(l, "# ")
		}
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600))
	c, err := Load(path)
	require.NoError(t, err)
	require.Len(t, c.Events.Export, 2)
	assert.Equal(t, "siem.example.com:6514", c.Events.Export[0].Address)
	assert.True(t, c.Events.Export[0].TLS.Enabled)
	assert.Equal(t, 5*time.Minute, c.Events.CheckpointInterval)

	clearEnv(t)
	t.Setenv("HSMCA_EVENTS_EXPORT_SYSLOG", "127.0.0.1:514")
	t.Setenv("HSMCA_EVENTS_EXPORT_SYSLOG_TLS", "true")
	t.Setenv("HSMCA_EVENTS_EXPORT_SYSLOG_TLS_CA", "/ca.pem")
	t.Setenv("HSMCA_EVENTS_EXPORT_FILE", "/var/log/e.jsonl")
	t.Setenv("HSMCA_EVENTS_CHECKPOINT_INTERVAL", "1m")
	c, err = Load("")
	require.NoError(t, err)
	require.Len(t, c.Events.Export, 2)
	byName := map[string]ExportSink{}
	for _, s := range c.Events.Export {
		byName[s.Name] = s
	}
	assert.Equal(t, "syslog", byName["syslog"].Type)
	assert.Equal(t, "/ca.pem", byName["syslog"].TLS.CAFile)
	assert.Equal(t, "file", byName["file"].Type)
	assert.Equal(t, "/var/log/e.jsonl", byName["file"].Path)
	assert.Equal(t, time.Minute, c.Events.CheckpointInterval)
	assert.Equal(t, 500*time.Millisecond, c.Events.ExportPollInterval)

	for yaml, want := range map[string]string{
		"events: {export: [{name: A, type: file, path: /x}]}":                                  `name "A"`,
		"events: {export: [{name: a, type: file, path: /x}, {name: a, type: file, path: /y}]}": "used twice",
		"events: {export: [{name: a, type: kafka}]}":                                           `type "kafka": want syslog or file`,
		"events: {export: [{name: a, type: file}]}":                                            "needs a file",
		"events: {export: [{name: a, type: syslog, address: 'h:1', tls: {ca_file: /c}}]}":      "tls.enabled is false",
	} {
		clearEnv(t)
		p := filepath.Join(t.TempDir(), "c.yaml")
		require.NoError(t, os.WriteFile(p, []byte(yaml+"\n"), 0o600))
		_, err := Load(p)
		assert.ErrorContains(t, err, want, yaml)
	}
}

// The ACME validator's ports, resolver and timeout come from the file and
// the environment, and bad ones stop the daemon with the reason.
func TestACMESettings(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("acme:\n  http01_port: 8080\n  orders_per_hour: 10\n  order_burst: 2\n  open_orders_per_account: 7\n"), 0o600))
	t.Setenv("HSMCA_ACME_TLS_ALPN01_PORT", "8443")
	t.Setenv("HSMCA_ACME_HTTPS_PORT", "9443")
	t.Setenv("HSMCA_ACME_RESOLVER", "127.0.0.1:5353")
	t.Setenv("HSMCA_ACME_VALIDATION_TIMEOUT", "3s")
	c, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, 8080, c.ACME.HTTP01Port)
	assert.Equal(t, 8443, c.ACME.TLSALPN01Port)
	assert.Equal(t, 9443, c.ACME.HTTPSPort)
	assert.Equal(t, "127.0.0.1:5353", c.ACME.Resolver)
	assert.Equal(t, 3*time.Second, c.ACME.ValidationTimeout)
	assert.Equal(t, 10.0, c.ACME.OrdersPerHour)
	assert.EqualValues(t, 2, c.ACME.OrderBurst)
	assert.Equal(t, 7, c.ACME.OpenOrdersPerAccount)

	for env, want := range map[string]string{"HSMCA_ACME_HTTP01_PORT": "HSMCA_ACME_HTTP01_PORT",
		"HSMCA_ACME_VALIDATION_TIMEOUT": "HSMCA_ACME_VALIDATION_TIMEOUT", "HSMCA_ACME_RESOLVER": "acme.resolver"} {
		clearEnv(t)
		bad := map[string]string{"HSMCA_ACME_HTTP01_PORT": "70000", "HSMCA_ACME_VALIDATION_TIMEOUT": "soon",
			"HSMCA_ACME_RESOLVER": "no-port"}[env]
		t.Setenv(env, bad)
		_, err := Load("")
		require.Error(t, err, env)
		assert.Contains(t, err.Error(), want)
	}
}

// TestOnOffSettings: the settings whose default the daemon picks by
// store are nil unless set, in the file or (winning) the environment.
func TestOnOffSettings(t *testing.T) {
	for _, tc := range []struct {
		key, env string
		field    func(*Config) *bool
	}{
		{"idle_one_proc", "HSMCA_IDLE_ONE_PROC", func(c *Config) *bool { return c.IdleOneProc }},
		{"overlap_credential_check", "HSMCA_OVERLAP_CREDENTIAL_CHECK", func(c *Config) *bool { return c.OverlapCredentialCheck }},
	} {
		t.Run(tc.key, func(t *testing.T) {
			clearEnv(t)
			c, err := Load("")
			require.NoError(t, err)
			assert.Nil(t, tc.field(c), "unset: the daemon's default (by store)")

			path := filepath.Join(t.TempDir(), "c.yaml")
			require.NoError(t, os.WriteFile(path, []byte(tc.key+": false\n"), 0o600))
			c, err = Load(path)
			require.NoError(t, err)
			require.NotNil(t, tc.field(c))
			assert.False(t, *tc.field(c))

			t.Setenv(tc.env, "true")
			c, err = Load(path)
			require.NoError(t, err)
			assert.True(t, *tc.field(c), "the environment wins")

			t.Setenv(tc.env, "sometimes")
			_, err = Load("")
			assert.ErrorContains(t, err, tc.env+": want true or false")
		})
	}
}
