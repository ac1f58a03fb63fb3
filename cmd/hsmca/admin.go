package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
)

// adminBootstrap creates the first superAdministrator from a client
// certificate: through the running daemon's admin socket, or straight in
// the store when no daemon holds it.
func adminBootstrap(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("admin bootstrap", stderr)
	cfgPath := configFlag(fs)
	certFile := fs.String("cert", "", "the administrator's client certificate, PEM or DER (required)")
	username := fs.String("username", "", "username (required)")
	name := fs.String("name", "", "first name")
	surname := fs.String("surname", "", "surname")
	email := fs.String("email", "", "email address")
	description := fs.String("description", "", "description")
	recoverFlag := fs.Bool("recover", false, "add a superAdministrator even though administrators exist (lost or expired certificate)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *certFile == "" || *username == "" {
		fmt.Fprintln(stderr, "hsmca admin bootstrap: --cert and --username are required")
		return 2
	}
	raw, err := os.ReadFile(*certFile)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca admin bootstrap:", err)
		return 2
	}
	cert := string(raw)
	if !strings.Contains(cert, "-----BEGIN") {
		cert = base64.StdEncoding.EncodeToString(raw) // DER file
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca admin bootstrap:", err)
		return 2
	}
	req := api.OpsAdminRequest{Certificate: cert, Username: *username, Name: *name, Surname: *surname,
		Email: *email, Description: *description, Recover: *recoverFlag}
	resp, via, err := bootstrapAdmin(cfg, req)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca admin bootstrap:", err)
		if !*recoverFlag && strings.Contains(err.Error(), "an administrator already exists") {
			fmt.Fprintln(stderr, "hsmca admin bootstrap: to add a superAdministrator anyway (lost or expired certificate), rerun with --recover")
		}
		return 1
	}
	fmt.Fprintf(stderr, "created enabled %s %q, certificate serial %s, valid until %s (%s)\n",
		resp.Role, resp.Username, resp.SerialNumber, resp.NotAfter.Format(time.RFC3339), via)
	fmt.Fprintln(stdout, resp.UUID)
	return 0
}

func bootstrapAdmin(cfg *config.Config, req api.OpsAdminRequest) (*api.OpsAdminResponse, string, error) {
	var resp api.OpsAdminResponse
	via, err := storeWrite(cfg, "/ops/admins", req, &resp, 15*time.Second, func(ctx context.Context, eng *signer.Core) error {
		a, err := admins.New(eng).Bootstrap(ctx, req.Input(), admins.BootstrapOptions{Recover: req.Recover, ProfileOptional: true})
		if err != nil {
			return err
		}
		resp = api.OpsAdminResponseFrom(a)
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return &resp, via, nil
}
