package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hsmca/hsmca/store"
)

// The CRL rows: a CA whose CRL lists cfg.CRLEntries revoked certificates
// (seeded straight into the stopped daemon's store, then signed once
// in-process), then through the daemon: revocations, each of which
// builds, signs and stores that CRL again, at 1 and 8 connections (those
// that arrive during a build share the next); shows of certificates
// while revocations keep the CRL rebuilt; and the CRL route.

// Operation names of the CRL rows.
const (
	OpRevoke    = "POST /v1/private-certificates/{id}/revoke"
	OpCRL       = "GET /v1/private-certificate-authorities/{id}/crl"
	duringBuild = "during CRL builds"
	crlLabel    = "CRL of "
)

// crlLeaves is how many certificates the CRL rows may revoke.
const crlLeaves = 600

func crlPhase(ctx context.Context, cfg Config, d *daemonSetup, fx *fixture, backend string,
	run func(op string, c int, rq request, profile string), add func(Result)) error {
	if err := d.start(ctx); err != nil {
		return err
	}
	c := client(8)
	var ca struct {
		CAID string `json:"ca_id"`
	}
	err := call(ctx, c, d.base, fx.token, "POST", "/v1/private-certificate-authorities", map[string]any{
		"type": "ROOT", "key_algorithm": "EC256", "signature_algorithm": "SHA256",
		"distinguished_name": map[string]string{"common_name": "hsmca bench CRL root", "country": "NZ",
			"state": "Wellington", "locality": "Wellington", "organization": "hsmca", "organizational_unit": "bench"},
		"validity":          map[string]any{"type": "YEAR", "value": 10},
		"crl_configuration": map[string]any{"enabled": true, "valid_days": 7},
	}, http.StatusOK, &ca)
	if err != nil {
		return fmt.Errorf("CRL CA: %w", err)
	}
	leaves := make([]string, 0, crlLeaves)
	body := issueBody(fx)
	body["issuer_id"] = ca.CAID
	for range crlLeaves {
		var cert struct {
			ID string `json:"certificate_id"`
		}
		if err := call(ctx, c, d.base, fx.token, "POST", "/v1/private-certificates/csr", body, http.StatusOK, &cert); err != nil {
			return fmt.Errorf("CRL leaves: %w", err)
		}
		leaves = append(leaves, cert.ID)
	}
	if err := d.stop(); err != nil {
		return err
	}

	in, err := d.openEngine(ctx)
	if err != nil {
		return err
	}
	bs, ok := in.st.(bulkStore)
	if !ok {
		in.close()
		return errors.New("the store has no bulk loader")
	}
	fmt.Fprintf(cfg.Log, "[%s] seeding %d revocation entries, then signing the CRL in-process\n", backend, cfg.CRLEntries)
	start := time.Now()
	err = in.pca.SeedRevocations(ctx, tenant, ca.CAID, cfg.CRLEntries, 5000,
		func(ctx context.Context, recs []store.Record, q store.Quota) error {
			return bs.BulkCreate(ctx, recs, q)
		})
	in.close()
	if err != nil {
		return fmt.Errorf("seed revocations: %w", err)
	}
	fmt.Fprintf(cfg.Log, "[%s] seeded and signed in %s\n", backend, time.Since(start).Round(time.Millisecond))

	if err := d.start(ctx); err != nil {
		return err
	}
	defer d.stop()
	size, err := crlSize(ctx, c, d.base, ca.CAID)
	if err != nil {
		return err
	}
	label := fmt.Sprintf(" (%s%s, %.1f MiB)", crlLabel, count(cfg.CRLEntries), float64(size)/(1<<20))
	var next atomic.Int64
	revoke := request{method: "POST", token: fx.token, want: http.StatusNoContent,
		body: mustJSON(map[string]string{"reason": "KEY_COMPROMISE"}),
		path: func(*mrand.Rand) string {
			i := int(next.Add(1)) - 1
			if i >= len(leaves) {
				return "/v1/private-certificates/no-leaf-left/revoke"
			}
			return "/v1/private-certificates/" + leaves[i] + "/revoke"
		}}
	// A revocation takes seconds: no warm-up, every one started in the
	// window counts, and the row's time and the daemon's CPU are taken
	// over the whole row, its last revocation included.
	whole := cfg
	whole.Phase = Phase{Duration: cfg.Phase.Duration + cfg.Phase.Warmup}
	for _, n := range []int{1, 8} {
		fmt.Fprintf(cfg.Log, "[%s] %s, concurrency %d\n", backend, OpRevoke+label, n)
		pid := d.cmd.Process.Pid
		c0, s0, t0 := cpuTime(pid), cpuTime(os.Getpid()), time.Now()
		r := d.measureHTTP(ctx, whole, n, revoke, "")
		r.Elapsed = time.Since(t0)
		if r.Ops > 0 {
			r.CPUPerOp = (cpuTime(pid) - c0) / time.Duration(r.Ops)
			r.ClientCPUPerOp = (cpuTime(os.Getpid()) - s0) / time.Duration(r.Ops)
		}
		r.Op, r.Store = OpRevoke+label, backend
		if r.Errors > 0 {
			fmt.Fprintf(cfg.Log, "[%s]   %d errors, first: %s\n", backend, r.Errors, r.FirstError)
		}
		add(r)
	}

	// Shows while one client keeps revoking (each revocation a build).
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for bg.Err() == nil {
			i := int(next.Add(1)) - 1
			if i >= len(leaves) {
				return
			}
			_ = call(bg, c, d.base, fx.token, "POST", "/v1/private-certificates/"+leaves[i]+"/revoke",
				map[string]string{"reason": "KEY_COMPROMISE"}, http.StatusNoContent, nil)
		}
	}()
	run(OpShow+" "+duringBuild+label, 8, showRequest(fx, fx.certIDs.snapshot()), "")
	stopBG()
	wg.Wait()
	if int(next.Load()) >= len(leaves) {
		fmt.Fprintf(cfg.Log, "[%s] the CRL rows used up their %d certificates: lengthen crlLeaves\n", backend, len(leaves))
	}

	crl := request{method: "GET", token: fx.token, want: http.StatusOK,
		path: func(*mrand.Rand) string { return "/v1/private-certificate-authorities/" + ca.CAID + "/crl" }}
	for _, n := range []int{1, 8} {
		run(OpCRL+label, n, crl, "")
	}
	return nil
}

// crlSize fetches a CA's CRL once and returns its size.
func crlSize(ctx context.Context, c *http.Client, base, caID string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/private-certificate-authorities/"+caID+"/crl", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET CRL: %s", resp.Status)
	}
	return len(b), nil
}
