package config_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/testenv"
)

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
	} `yaml:"services"`
}

func readCompose(t *testing.T, name string) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", name))
	require.NoError(t, err)
	var f composeFile
	require.NoError(t, yaml.Unmarshal(raw, &f), name)
	return f
}

// daemonEnv is the environment compose gives hsmcad-1 with the files in
// order (an override's environment entries replace the base's).
func daemonEnv(t *testing.T, files ...string) map[string]string {
	env := map[string]string{}
	for _, name := range files {
		for k, v := range readCompose(t, name).Services["hsmcad-1"].Environment {
			env[k] = v
		}
	}
	require.NotEmpty(t, env)
	return env
}

func loadWith(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	for _, e := range config.Env {
		t.Setenv(e.Name, "")
		os.Unsetenv(e.Name)
	}
	// The token and its PIN are the container's; only the store settings
	// are checked here.
	t.Setenv("HSMCA_PKCS11_MODULE", "/dev/null")
	for k, v := range env {
		if k == "HSMCA_PIN_FILE" {
			continue
		}
		t.Setenv(k, v)
	}
	cfg, err := config.Load("")
	require.NoError(t, err)
	return cfg
}

// Every setting the compose files give the daemon is one it knows, and
// the Sentinel variant turns the store into Sentinel mode with the three
// sentinels and the master name they monitor.
func TestComposeSettings(t *testing.T) {
	known := map[string]bool{}
	for _, e := range config.Env {
		known[e.Name] = true
	}
	for _, name := range []string{"compose.yaml", "compose.sentinel.yaml"} {
		for svc, s := range readCompose(t, name).Services {
			for k := range s.Environment {
				if strings.HasPrefix(k, "HSMCA_") && !strings.Contains(k, "SO_PIN") {
					assert.True(t, known[k], "%s %s: %s is not a setting of hsmcad", name, svc, k)
				}
			}
		}
	}
	base := loadWith(t, daemonEnv(t, "compose.yaml"))
	assert.Equal(t, "standalone", base.RedisMode())
	cfg := loadWith(t, daemonEnv(t, "compose.yaml", "compose.sentinel.yaml"))
	assert.Equal(t, "redis", cfg.Store.Backend)
	assert.Equal(t, "sentinel", cfg.RedisMode())
	assert.Len(t, cfg.Store.Redis.Addrs, 3)
	master, _ := sentinelConf(t)
	assert.Equal(t, master, cfg.Store.Redis.MasterName)
}

// sentinelConf is the configuration the Sentinel variant's sentinels
// write at start, and the master name they monitor.
func sentinelConf(t *testing.T) (master string, lines []string) {
	t.Helper()
	s := readCompose(t, "compose.sentinel.yaml").Services["sentinel-1"]
	require.Len(t, s.Command, 3, "sentinel-1 runs sh -c SCRIPT")
	for _, m := range regexp.MustCompile(`'([^']*)'`).FindAllStringSubmatch(s.Command[2], -1) {
		if m[1] == "%s\\n" {
			continue
		}
		lines = append(lines, m[1])
		if f := strings.Fields(m[1]); len(f) == 6 && f[0] == "sentinel" && f[1] == "monitor" {
			master = f[2]
		}
	}
	require.NotEmpty(t, master, "no sentinel monitor line in %q", s.Command[2])
	return master, lines
}

// The sentinels' configuration is one a real redis-sentinel accepts: it
// finds the master (the compose host name replaced by a loopback Redis).
func TestComposeSentinelConfigRuns(t *testing.T) {
	master, lines := sentinelConf(t)
	r := testenv.StartRedis(t)
	host, port, _ := strings.Cut(r.Addr, ":")
	sentinelPort := testenv.FreePort(t)
	var b strings.Builder
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "port "):
			l = fmt.Sprintf("port %d", sentinelPort)
		case strings.HasPrefix(l, "sentinel monitor "):
			f := strings.Fields(l)
			l = strings.Join([]string{f[0], f[1], f[2], host, port, "1"}, " ")
		}
		fmt.Fprintln(&b, l)
	}
	fmt.Fprintln(&b, "bind 127.0.0.1")
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	require.NoError(t, os.WriteFile(conf, []byte(b.String()), 0o600))
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		testenv.Missing(t, "redis-sentinel not on PATH (apt-get install redis-sentinel)")
	}
	cmd := exec.Command(bin, conf)
	cmd.Dir = dir
	out, _ := os.Create(filepath.Join(dir, "sentinel.log"))
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", sentinelPort)})
	defer c.Close()
	require.Eventually(t, func() bool {
		addr, err := c.Do(context.Background(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master).StringSlice()
		return err == nil && len(addr) == 2 && addr[1] == port
	}, 10*time.Second, 50*time.Millisecond, "redis-sentinel did not take the compose configuration; log: %s", filepath.Join(dir, "sentinel.log"))
}
