package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store/boltstore"
)

// With no daemon running, `hsmca admin bootstrap` writes the store itself.
func TestAdminBootstrapWritesTheStore(t *testing.T) {
	for _, e := range config.Env {
		if _, ok := os.LookupEnv(e.Name); ok {
			t.Setenv(e.Name, "")
			os.Unsetenv(e.Name)
		}
	}
	t.Setenv("HSMCA_CONFIG", "")
	mod := testenv.SoftHSMModule()
	if mod == "" {
		testenv.Missing(t, "SoftHSM2 module (config needs one)")
	}
	dir := t.TempDir()
	t.Setenv("HSMCA_DATA_DIR", dir)
	t.Setenv("HSMCA_PKCS11_MODULE", mod)

	ca := testpki.NewCA(t, "CA")
	first := ca.Issue(t, testpki.Options{CommonName: "root"})
	pemPath, _ := first.WriteFiles(t, dir, "root")
	second := ca.Issue(t, testpki.Options{CommonName: "spare"})
	derPath := filepath.Join(dir, "spare.der")
	require.NoError(t, os.WriteFile(derPath, second.Cert.Raw, 0o600))

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := dispatch(append([]string{"admin", "bootstrap"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, _, _ := run("--username", "root")
	assert.Equal(t, 2, code, "--cert is required")

	code, out, errs := run("--cert", pemPath, "--username", "root", "--email", "root@example.com")
	require.Equal(t, 0, code, errs)
	_, err := uuid.Parse(strings.TrimSpace(out))
	assert.NoError(t, err, "stdout is the new admin's uuid: %q", out)
	assert.Contains(t, errs, "superAdministrator")

	code, _, errs = run("--cert", derPath, "--username", "spare")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "--recover")

	code, _, errs = run("--cert", derPath, "--username", "spare", "--recover")
	require.Equal(t, 0, code, errs)

	st, err := boltstore.Open(filepath.Join(dir, "hsmca.db"), boltstore.Options{})
	require.NoError(t, err)
	defer st.Close()
	eng := signer.New(signer.Options{Store: st})
	defer eng.Close()
	list, err := admins.New(eng).List(context.Background())
	require.NoError(t, err)
	require.Len(t, list, 2)
	for _, a := range list {
		assert.True(t, a.Enabled)
		assert.Equal(t, signer.RoleSuperAdministrator, a.Role)
	}
	assert.Equal(t, "root@example.com", list[0].Email)
	assert.Equal(t, encoding.SerialHex(second.Cert.SerialNumber), list[1].SerialNumber)
}
