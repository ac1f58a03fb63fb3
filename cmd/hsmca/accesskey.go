package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/signer"
)

// accessKeyCreate makes an access key and secret key for the Huawei
// families' AK/SK request signing. The secret key is sealed by the HSM,
// so the direct path (no daemon running) opens the token too.
func accessKeyCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("accesskey create", stderr)
	cfgPath := configFlag(fs)
	tenant := fs.String("tenant", "", "tenant (Huawei project and domain) the key acts for (required)")
	var roles listFlag
	fs.Var(&roles, "role", "role, repeatable or comma-separated: "+strings.Join(signer.TenantRoles, ", "))
	expires := fs.String("expires", "", "expiry: a duration (720h, 90d) or an RFC 3339 time; default never")
	asJSON := fs.Bool("json", false, "print access_key and secret_key as one JSON object on stdout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *tenant == "" || len(roles) == 0 {
		fmt.Fprintln(stderr, "hsmca accesskey create: --tenant and at least one --role are required")
		return 2
	}
	exp, err := parseExpiry(*expires, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "hsmca accesskey create:", err)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca accesskey create:", err)
		return 2
	}
	req := api.OpsTokenRequest{Tenant: *tenant, Roles: roles, ExpiresAt: exp}
	var resp api.OpsAccessKeyResponse
	via, err := storeWrite(cfg, "/ops/access-keys", req, &resp, 30*time.Second, func(ctx context.Context, eng *signer.Core) error {
		fmt.Fprintln(stderr, "opening the HSM token to seal the secret key...")
		hc, err := daemon.HSMConfig(cfg, nil, nil)
		if err != nil {
			return err
		}
		h, err := hsm.Open(hc)
		if err != nil {
			return fmt.Errorf("open HSM: %w", err)
		}
		eng.SetHSM(h)
		secret, k, err := eng.CreateAccessKey(ctx, req.Tenant, req.Roles, req.ExpiresAt)
		if err != nil {
			return err
		}
		resp = api.OpsAccessKeyResponse{AccessKey: k.ID, SecretKey: secret, Tenant: k.Tenant, Roles: k.Roles, ExpiresAt: k.ExpiresAt}
		return nil
	})
	if err != nil {
		fmt.Fprintln(stderr, "hsmca accesskey create:", err)
		return 1
	}
	exps := "never"
	if resp.ExpiresAt != nil {
		exps = resp.ExpiresAt.Format(time.RFC3339)
	}
	fmt.Fprintf(stderr, "created access key %s for tenant %q, roles %s, expires %s (%s); the secret key, on stdout, is shown only this once\n",
		resp.AccessKey, resp.Tenant, strings.Join(resp.Roles, ","), exps, via)
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(map[string]string{"access_key": resp.AccessKey, "secret_key": resp.SecretKey})
	} else {
		fmt.Fprintf(stdout, "%s %s\n", resp.AccessKey, resp.SecretKey)
	}
	return 0
}
