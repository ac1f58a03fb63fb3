package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store/boltstore"
)

func cli(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = dispatch(args, &o, &e)
	return code, o.String(), e.String()
}

// isolate points every HSMCA_* variable at a fresh data dir and token.
func isolate(t *testing.T, tok *testenv.Token) string {
	t.Helper()
	return isolateModule(t, tok.Module, tok.Label, tok.PINFile)
}

// isolateModule is isolate for a token of any module.
func isolateModule(t *testing.T, module, label, pinFile string) string {
	t.Helper()
	for _, e := range config.Env {
		if _, ok := os.LookupEnv(e.Name); ok {
			t.Setenv(e.Name, "")
			os.Unsetenv(e.Name)
		}
	}
	dir := t.TempDir()
	t.Setenv("HSMCA_DATA_DIR", dir)
	t.Setenv("HSMCA_PKCS11_MODULE", module)
	t.Setenv("HSMCA_TOKEN_LABEL", label)
	t.Setenv("HSMCA_PIN_FILE", pinFile)
	t.Setenv("HSMCA_LISTEN_ADDR", "127.0.0.1:0")
	return dir
}

var tokenLine = regexp.MustCompile(`^hsmca_[A-Za-z0-9_-]{43}\n$`)

func TestUsage(t *testing.T) {
	code, _, stderr := cli()
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "slot init")
	code, _, stderr = cli("nonsense")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `unknown command "nonsense"`)
}

func TestTokenCreateWritesStoreWithoutDaemon(t *testing.T) {
	tok := testenv.NewToken(t)
	dir := isolate(t, tok)
	code, stdout, stderr := cli("token", "create", "--tenant", "acme", "--role", "admin,auditor", "--expires", "30d")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, tokenLine, stdout, "stdout holds only the token")
	assert.Contains(t, stderr, "written to the bolt store")
	assert.NotContains(t, stderr, strings.TrimSpace(stdout), "the token goes to stdout only")

	st, err := boltstore.Open(filepath.Join(dir, "hsmca.db"), boltstore.Options{})
	require.NoError(t, err)
	defer st.Close()
	eng := signer.New(signer.Options{Store: st})
	defer eng.Close()
	got, err := eng.AuthenticateToken(context.Background(), strings.TrimSpace(stdout))
	require.NoError(t, err)
	assert.Equal(t, "acme", got.Tenant)
	assert.Equal(t, []string{"admin", "auditor"}, got.Roles)
	require.NotNil(t, got.ExpiresAt)
	assert.WithinDuration(t, time.Now().Add(30*24*time.Hour), *got.ExpiresAt, time.Minute)
}

func TestTokenCreateGoesThroughRunningDaemon(t *testing.T) {
	tok := testenv.NewToken(t)
	isolate(t, tok)
	cfg, err := config.Load("")
	require.NoError(t, err)
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer d.Shutdown(context.Background())

	code, stdout, stderr := cli("token", "create", "--tenant", "acme", "--role", "signer")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, tokenLine, stdout)
	assert.Contains(t, stderr, "through the running daemon")
	got, err := d.Engine().AuthenticateToken(context.Background(), strings.TrimSpace(stdout))
	require.NoError(t, err)
	assert.Equal(t, []string{"signer"}, got.Roles)

	// A bad request is explained, and nothing is printed on stdout.
	code, stdout, stderr = cli("token", "create", "--tenant", "acme", "--role", "root")
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "unknown role")
}

func TestTokenCreateRejectsBadFlags(t *testing.T) {
	tok := testenv.NewToken(t)
	isolate(t, tok)
	for _, args := range [][]string{
		{"token", "create", "--role", "admin"},
		{"token", "create", "--tenant", "acme"},
		{"token", "create", "--tenant", "acme", "--role", "admin", "--expires", "soon"},
		{"token", "create", "--tenant", "acme", "--role", "admin", "--expires", "-5h"},
	} {
		code, stdout, _ := cli(args...)
		assert.Equal(t, 2, code, args)
		assert.Empty(t, stdout, args)
	}
}

func TestSlotInitAndList(t *testing.T) {
	sh := testenv.NewSoftHSM(t)
	dir := t.TempDir()
	so, user := filepath.Join(dir, "so"), filepath.Join(dir, "user")
	require.NoError(t, os.WriteFile(so, []byte("so-secret-9931\n"), 0o600))
	require.NoError(t, os.WriteFile(user, []byte("user-secret-4417\n"), 0o600))
	label := "cli-init-" + filepath.Base(dir)
	if len(label) > 32 {
		label = label[:32]
	}
	code, stdout, stderr := cli("slot", "init", "--module", sh.Module, "--label", label, "--so-pin-file", so, "--pin-file", user)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "initialised in slot")
	assert.NotContains(t, stdout+stderr, "secret-")

	code, stdout, _ = cli("slot", "list", "--module", sh.Module)
	require.Equal(t, 0, code)
	assert.Regexp(t, `ready\s+`+regexp.QuoteMeta(label), stdout)

	// The same label twice is refused.
	code, _, stderr = cli("slot", "init", "--module", sh.Module, "--label", label, "--so-pin-file", so, "--pin-file", user)
	assert.Equal(t, 1, code)
	assert.NotContains(t, stderr, "secret-")

	code, _, stderr = cli("slot", "init", "--module", sh.Module, "--label", "x")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "required")
}

func TestDoctor(t *testing.T) {
	tok := testenv.NewToken(t)
	isolate(t, tok)
	code, stdout, stderr := cli("doctor")
	require.Equal(t, 0, code, stdout+stderr)
	for _, step := range []string{"config", "public URL", "module", "token", "login", "test signature", "mechanisms",
		"algorithms", "sessions", "store"} {
		assert.Regexp(t, `(?m)^ok\s+`+step, stdout)
	}
	// SoftHSM2 offers every algorithm and feature; the table names the
	// mechanisms with their key sizes and uses.
	assert.Regexp(t, `(?m)^ok\s+test signature\s+EC256 key made`, stdout)
	assert.Regexp(t, `(?m)^ok\s+algorithms\s+EC256, EC384, EC521, RSA2048, RSA3072, RSA4096, ED25519$`, stdout)
	assert.Regexp(t, `(?m)^\s+CKM_ECDSA\s+112-521 bits\s+sign verify$`, stdout)
	assert.Regexp(t, `(?m)^\s+secret wrapping\s+✓$`, stdout)
	assert.Regexp(t, `(?m)^ok\s+sessions\s+token limit .*hsmca's pool 16; keys sign through session copies \(pkcs11.session_copies\)$`, stdout)
	assert.Regexp(t, `(?m)^ok\s+public URL\s+not set: .*public_base_url \(HSMCA_PUBLIC_BASE_URL\)`, stdout)
	assert.NotContains(t, stdout+stderr, tok.PIN)

	// The public base URL, when set, is named; a bad one fails the config.
	t.Setenv("HSMCA_PUBLIC_BASE_URL", "https://ca.example.com/pki/")
	code, stdout, stderr = cli("doctor")
	require.Equal(t, 0, code, stdout+stderr)
	assert.Regexp(t, `(?m)^ok\s+public URL\s+https://ca\.example\.com/pki$`, stdout)
	t.Setenv("HSMCA_PUBLIC_BASE_URL", "ca.example.com")
	code, stdout, _ = cli("doctor")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `(?m)^FAIL\s+config\s+.*public_base_url "ca.example.com"`, stdout)
	t.Setenv("HSMCA_PUBLIC_BASE_URL", "")

	// A wrong PIN fails the login line, without showing either PIN.
	bad := filepath.Join(t.TempDir(), "bad.pin")
	require.NoError(t, os.WriteFile(bad, []byte("99999999\n"), 0o600))
	t.Setenv("HSMCA_PIN_FILE", bad)
	code, stdout, stderr = cli("doctor")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `(?m)^FAIL\s+login`, stdout)
	assert.NotContains(t, stdout+stderr, "99999999")
	assert.NotContains(t, stdout+stderr, tok.PIN)

	// A missing token is named.
	t.Setenv("HSMCA_PIN_FILE", tok.PINFile)
	t.Setenv("HSMCA_TOKEN_LABEL", "absent-token")
	code, stdout, _ = cli("doctor")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `(?m)^FAIL\s+token\s+.*absent-token`, stdout)
}
