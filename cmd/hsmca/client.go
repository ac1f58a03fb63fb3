package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/signer"
)

// clientCreate makes OAuth client credentials for POST /oauth/token (the
// client-credentials grant MATTR VII callers use).
func clientCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("client create", stderr)
	cfgPath := configFlag(fs)
	tenant := fs.String("tenant", "", "tenant the client's access tokens act for (required)")
	name := fs.String("name", "", "a name to recognise the client by in listings")
	var roles listFlag
	fs.Var(&roles, "role", "role, repeatable or comma-separated: "+strings.Join(signer.TenantRoles, ", "))
	asJSON := fs.Bool("json", false, "print client_id and client_secret as one JSON object on stdout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *tenant == "" || len(roles) == 0 {
		fmt.Fprintln(stderr, "hsmca client create: --tenant and at least one --role are required")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca client create:", err)
		return 2
	}
	req := api.OpsClientRequest{Tenant: *tenant, Roles: roles, Name: *name}
	var resp api.OpsClientResponse
	via, err := storeWrite(cfg, "/ops/oauth-clients", req, &resp, 10*time.Second, func(ctx context.Context, eng *signer.Core) error {
		secret, cl, err := eng.CreateOAuthClient(ctx, req.Tenant, req.Roles, req.Name)
		if err != nil {
			return err
		}
		resp = api.OpsClientResponse{ClientID: cl.ID, ClientSecret: secret, Tenant: cl.Tenant, Roles: cl.Roles}
		return nil
	})
	if err != nil {
		fmt.Fprintln(stderr, "hsmca client create:", err)
		return 1
	}
	fmt.Fprintf(stderr, "created OAuth client %s for tenant %q, roles %s (%s); the client secret, on stdout, is shown only this once\n",
		resp.ClientID, resp.Tenant, strings.Join(resp.Roles, ","), via)
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(map[string]string{"client_id": resp.ClientID, "client_secret": resp.ClientSecret})
	} else {
		fmt.Fprintf(stdout, "%s %s\n", resp.ClientID, resp.ClientSecret)
	}
	return 0
}
