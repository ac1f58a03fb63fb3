package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/families"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/pca"
)

// softHSM is a SoftHSM2 configuration of the bench's own. SoftHSM2 reads
// SOFTHSM2_CONF once per process, so the bench and every daemon it starts
// share one, with a token per store backend.
type softHSM struct {
	conf, module string
}

type token struct {
	label, pinFile string
}

func newSoftHSM(root, module string) (*softHSM, error) {
	if module == "" {
		module = config.DefaultModule()
	}
	if module == "" {
		return nil, errors.New("no PKCS#11 module: install softhsm2 or set HSMCA_PKCS11_MODULE")
	}
	dir := filepath.Join(root, "softhsm")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
		filepath.Join(dir, "tokens"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	return &softHSM{conf: conf, module: module}, nil
}

func digits(n int) string {
	var b strings.Builder
	for range n {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		b.WriteString(d.String())
	}
	return b.String()
}

// newToken initialises a fresh token with random PINs; the user PIN goes
// to a 0600 file.
func (s *softHSM) newToken(label, dir string) (*token, error) {
	pin, so := digits(10), digits(10)
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label,
		"--so-pin", so, "--pin", pin).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	pf := filepath.Join(dir, "user.pin")
	if err := os.WriteFile(pf, []byte(pin+"\n"), 0o600); err != nil {
		return nil, err
	}
	return &token{label: label, pinFile: pf}, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// redisServer is a redis-server child on a loopback port, persistence off.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

func (r *redisServer) url() string { return "redis://" + r.addr + "/0" }

func startRedis(dir string) (*redisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server not on PATH (apt-get install redis-server)")
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--protected-mode", "yes")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				once = true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("redis-server on %s did not become ready", addr)
	}
	return &redisServer{addr: addr, cmd: cmd}, nil
}

func (r *redisServer) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
}

// daemonSetup is one daemon configuration and, while it runs, its process.
type daemonSetup struct {
	cfg        Config
	configPath string
	env        []string
	base       string
	pprofAddr  string
	logPath    string
	cmd        *exec.Cmd
	exited     chan struct{}
	// storePID is the redis-server the daemon uses, when the bench
	// started one (store redis); 0 otherwise.
	storePID int
}

// newDaemonSetup writes the daemon's configuration: storeYAML is the body
// of its store: section.
func newDaemonSetup(cfg Config, sh *softHSM, tok *token, dir, storeYAML string) (*daemonSetup, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var y strings.Builder
	fmt.Fprintf(&y, "listen_addr: %q\ndata_dir: %q\nadmin_socket: \"off\"\n", addr, dir)
	fmt.Fprintf(&y, "store:\n%s", storeYAML)
	fmt.Fprintf(&y, "pkcs11:\n  module: %q\n  token_label: %q\n  pin_file: %q\n", sh.module, tok.label, tok.pinFile)
	// Room for the seeded certificates and everything issued after them.
	fmt.Fprintf(&y, "quotas:\n  %s: %d\n", pca.QuotaCertificates, int64(cfg.SeedCount)+50_000_000)
	// The per-credential limit stays on (its check is part of every
	// request's cost) but far above what one bench token sends.
	fmt.Fprintf(&y, "rate_limit:\n  requests_per_second: 1000000\n  burst: 1000000\n")
	// The public routes (OCSP, CRLs) are measured, not limited per
	// address: the load comes from one.
	fmt.Fprintf(&y, "  public_requests_per_second: 0\n")
	path := filepath.Join(dir, "hsmcad.yaml")
	if err := os.WriteFile(path, []byte(y.String()), 0o600); err != nil {
		return nil, err
	}
	d := &daemonSetup{cfg: cfg, configPath: path, base: "http://" + addr, logPath: filepath.Join(dir, "hsmcad.log")}
	d.env = append(os.Environ(), "HSMCA_CONFIG="+path, "SOFTHSM2_CONF="+sh.conf)
	if cfg.ProfileDir != "" {
		if d.pprofAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		d.env = append(d.env, "HSMCA_PPROF_ADDR="+d.pprofAddr)
	}
	return d, nil
}

// createAPIToken writes an admin token for the bench tenant into the
// store while no daemon holds it.
func (d *daemonSetup) createAPIToken(ctx context.Context) (string, error) {
	cfg, err := config.Load(d.configPath)
	if err != nil {
		return "", err
	}
	st, err := daemon.OpenStore(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer st.Close()
	eng := signer.New(signer.Options{Families: families.All(), Store: st})
	defer eng.Close()
	ctx = signer.WithCaller(ctx, signer.Caller{Principal: "ops:bench"})
	secret, _, err := eng.CreateToken(ctx, tenant, []string{signer.RoleAdmin}, nil)
	return secret, err
}

func (d *daemonSetup) start(ctx context.Context) error {
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.cfg.Hsmcad)
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", d.cfg.Hsmcad, err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(d.exited) }()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			d.cmd = nil
			return fmt.Errorf("hsmcad exited during start-up; see %s", d.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := c.Get(d.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	_ = d.stop()
	return fmt.Errorf("hsmcad not ready after 60s; see %s", d.logPath)
}

// stop ends the daemon with SIGTERM (a drain) and waits for it.
func (d *daemonSetup) stop() error {
	if d.cmd == nil {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	d.cmd = nil
	return nil
}

// rss reads the daemon's resident set size and its anonymous part (heap
// and stacks, without the pages of the bolt file it maps) from /proc.
func rss(pid int) (total, anon int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			total = kb * 1024
		case "RssAnon:":
			anon = kb * 1024
		}
	}
	return total, anon
}

// cpuTime reads the CPU time (user and system) a process has used, from
// /proc (Linux; clock ticks of 10ms).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// storeCPU is cpuTime of the store's server, 0 when there is none.
func storeCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	return cpuTime(pid)
}

// measureHTTP drives the running daemon with rq in c connections, polling
// its RSS, and when profile names a file, takes a CPU profile of the
// measured window.
func (d *daemonSetup) measureHTTP(ctx context.Context, cfg Config, c int, rq request, profile string) Result {
	op, closeConns, err := connWork(d.base, rq, c)
	if err != nil {
		return Result{Concurrency: c, FirstError: err.Error(), Errors: 1}
	}
	defer closeConns()
	var peak, peakAnon atomic.Int64
	pid := d.cmd.Process.Pid
	sample := func() {
		v, a := rss(pid)
		if v > peak.Load() {
			peak.Store(v)
		}
		if a > peakAnon.Load() {
			peakAnon.Store(a)
		}
	}
	profDone := make(chan error, 1)
	if profile != "" && d.pprofAddr != "" {
		go func() {
			select {
			case <-time.After(cfg.Phase.Warmup):
			case <-ctx.Done():
				profDone <- ctx.Err()
				return
			}
			profDone <- fetchProfile(ctx, d.pprofAddr, cfg.Phase.Duration, profile)
		}()
	} else {
		profDone <- nil
	}
	// The daemon's CPU time per operation over the measured window: less
	// at the mercy of other load on the machine than throughput is.
	// The load client's own CPU time is measured the same way: it shares
	// the cores with the daemon, so what it spends is not the daemon's.
	// The daemon's own metrics, read before and after the window, say how
	// many event records went in each append, and at one connection where
	// a request's time went (Inside).
	cpuDone := make(chan [3]time.Duration, 1)
	var (
		inside  *Inside
		grouped float64
	)
	go func() {
		time.Sleep(cfg.Phase.Warmup)
		t0, _ := scrapeTimings(ctx, d.base)
		c0, s0, r0 := cpuTime(pid), cpuTime(os.Getpid()), storeCPU(d.storePID)
		time.Sleep(cfg.Phase.Duration)
		cpu := [3]time.Duration{cpuTime(pid) - c0, cpuTime(os.Getpid()) - s0, storeCPU(d.storePID) - r0}
		if t0 != nil {
			if t1, err := scrapeTimings(ctx, d.base); err == nil {
				grouped = recordsPerAppend(t0, t1)
				if c == 1 {
					inside = insideOf(t0, t1)
				}
			}
		}
		cpuDone <- cpu
	}()
	r := measure(ctx, c, cfg.Phase, op, sample)
	r.RSS, r.RSSAnon = peak.Load(), peakAnon.Load()
	if cpu := <-cpuDone; r.Ops > 0 {
		r.CPUPerOp = cpu[0] / time.Duration(r.Ops)
		r.ClientCPUPerOp = cpu[1] / time.Duration(r.Ops)
		r.StoreCPUPerOp = cpu[2] / time.Duration(r.Ops)
	}
	r.Inside, r.RecordsPerAppend = inside, grouped
	if err := <-profDone; err != nil {
		fmt.Fprintf(cfg.Log, "profile %s: %v\n", profile, err)
	}
	return r
}

func fetchProfile(ctx context.Context, addr string, d time.Duration, path string) error {
	secs := max(1, int(d.Seconds()))
	c := &http.Client{Timeout: d + 30*time.Second}
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof answered %s", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
