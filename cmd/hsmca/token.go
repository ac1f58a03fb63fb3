package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/families"
	"github.com/hsmca/hsmca/signer"
)

var getenv = os.Getenv

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", getenv("HSMCA_CONFIG"), "daemon configuration file (HSMCA_CONFIG); HSMCA_* variables apply too")
}

// parseExpiry accepts a duration ("720h", "30d") or an RFC 3339 time.
func parseExpiry(s string, now time.Time) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if strings.HasSuffix(s, "d") {
		if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && n > 0 {
			t := now.Add(time.Duration(n) * 24 * time.Hour).UTC().Truncate(time.Second)
			return &t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return nil, fmt.Errorf("--expires %q: must be positive", s)
		}
		t := now.Add(d).UTC().Truncate(time.Second)
		return &t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("--expires %q: want a duration like 720h or 90d, or an RFC 3339 time", s)
	}
	return &t, nil
}

func tokenCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("token create", stderr)
	cfgPath := configFlag(fs)
	tenant := fs.String("tenant", "", "tenant the token acts for (required)")
	var roles listFlag
	fs.Var(&roles, "role", "role, repeatable or comma-separated: "+strings.Join(signer.TenantRoles, ", "))
	expires := fs.String("expires", "", "expiry: a duration (720h, 90d) or an RFC 3339 time; default never")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *tenant == "" || len(roles) == 0 {
		fmt.Fprintln(stderr, "hsmca token create: --tenant and at least one --role are required")
		return 2
	}
	exp, err := parseExpiry(*expires, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "hsmca token create:", err)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca token create:", err)
		return 2
	}
	req := api.OpsTokenRequest{Tenant: *tenant, Roles: roles, ExpiresAt: exp}
	resp, via, err := createToken(cfg, req)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca token create:", err)
		return 1
	}
	exps := "never"
	if resp.ExpiresAt != nil {
		exps = resp.ExpiresAt.Format(time.RFC3339)
	}
	fmt.Fprintf(stderr, "created token %s for tenant %q, roles %s, expires %s (%s); the secret, on stdout, is shown only this once\n",
		resp.ID, resp.Tenant, strings.Join(resp.Roles, ","), exps, via)
	fmt.Fprintln(stdout, resp.Token)
	return 0
}

// createToken goes through the running daemon when it holds the store,
// and writes the store directly otherwise.
func createToken(cfg *config.Config, req api.OpsTokenRequest) (*api.OpsTokenResponse, string, error) {
	var resp api.OpsTokenResponse
	via, err := storeWrite(cfg, "/ops/tokens", req, &resp, 10*time.Second, func(ctx context.Context, eng *signer.Core) error {
		secret, tok, err := eng.CreateToken(ctx, req.Tenant, req.Roles, req.ExpiresAt)
		if err != nil {
			return err
		}
		resp = api.OpsTokenResponse{ID: tok.ID, Token: secret, Tenant: tok.Tenant, Roles: tok.Roles, ExpiresAt: tok.ExpiresAt}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return &resp, via, nil
}

// storeWrite makes one write to the store: through the running daemon's
// admin socket when the daemon holds the store (POST path with req,
// answer into resp), else with an engine of its own on the opened store,
// acting as the CLI principal. It says which way it went.
func storeWrite(cfg *config.Config, path string, req, resp any, timeout time.Duration,
	direct func(ctx context.Context, eng *signer.Core) error) (string, error) {
	if cfg.AdminSocket != "" && daemonListening(cfg.AdminSocket) {
		if err := opsCall(cfg.AdminSocket, "POST", path, req, resp); err != nil {
			return "", err
		}
		return "through the running daemon", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := daemon.OpenStore(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	eng := signer.New(signer.Options{Families: families.All(), Store: st})
	defer eng.Close()
	if err := direct(signer.WithCaller(ctx, signer.Caller{Principal: "ops:cli"}), eng); err != nil {
		return "", err
	}
	return "written to the " + cfg.Store.Backend + " store", nil
}

func daemonListening(sock string) bool {
	c, err := net.DialTimeout("unix", sock, 300*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func opsCall(sock, method, path string, body, out any) error {
	client := &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://hsmcad"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("daemon admin socket %s: %w", sock, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e api.OpsError
		if json.Unmarshal(raw, &e) == nil && e.Message != "" {
			return errors.New(e.Message)
		}
		return fmt.Errorf("daemon answered %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
