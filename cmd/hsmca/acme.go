package main

import (
	"fmt"
	"io"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/config"
)

// acmeEABCreate makes an ACME external account binding key through the
// running daemon: the MAC key is sealed by the daemon's HSM.
func acmeEABCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("acme eab create", stderr)
	cfgPath := configFlag(fs)
	tenant := fs.String("tenant", "", "tenant of the directory (required)")
	dir := fs.String("directory", "", "ACME directory id (required; POST /v1/acme/directories answers it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *tenant == "" || *dir == "" {
		fmt.Fprintln(stderr, "hsmca acme eab create: --tenant and --directory are required")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca acme eab create:", err)
		return 2
	}
	if cfg.AdminSocket == "" || !daemonListening(cfg.AdminSocket) {
		fmt.Fprintln(stderr, "hsmca acme eab create: the daemon must be running (its admin socket): the key is sealed by its HSM")
		return 1
	}
	var resp api.OpsEABResponse
	if err := opsCall(cfg.AdminSocket, "POST", "/ops/acme/eab-keys", api.OpsEABRequest{Tenant: *tenant, Directory: *dir}, &resp); err != nil {
		fmt.Fprintln(stderr, "hsmca acme eab create:", err)
		return 1
	}
	fmt.Fprintf(stderr, "created EAB key for directory %s of tenant %q; the MAC key is shown only this once\n", resp.Directory, resp.Tenant)
	fmt.Fprintf(stdout, "kid %s\nhmac %s\n", resp.KeyID, resp.HMACKey)
	return 0
}
