// Package testenv starts the real components tests run against: a SoftHSM2
// token directory and a redis-server on a loopback port, each in a temp dir,
// and Redis Sentinel and Cluster topologies (redis_ha.go).
//
// When a component is missing, tests skip on a developer machine and fail
// when CI is set, so a green CI run always means the real thing was used.
package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Missing reports an absent component: fatal under CI, a skip elsewhere.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("required test component missing (CI is set): %s", msg)
	}
	t.Skipf("component missing: %s", msg)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SoftHSMModule finds the SoftHSM2 PKCS#11 library.
func SoftHSMModule() string {
	if p := os.Getenv("HSMCA_PKCS11_MODULE"); p != "" {
		return p
	}
	for _, p := range []string{
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/local/lib/softhsm/libsofthsm2.so",
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// SoftHSM is a SoftHSM2 configuration with its own token directory.
//
// SoftHSM2 reads SOFTHSM2_CONF once, when the library is initialised, and a
// process loads the library once; so a test binary shares one SoftHSM per
// process and makes one token per test, each with its own label.
type SoftHSM struct {
	Module   string
	ConfPath string
	TokenDir string
}

// Token is an initialised token on the shared SoftHSM.
type Token struct {
	*SoftHSM
	Label   string
	PIN     string
	SOPIN   string
	PINFile string
}

var (
	shOnce sync.Once
	shInst *SoftHSM
	shErr  error
	tokSeq int
	tokMu  sync.Mutex
)

// NewSoftHSM returns the process-wide SoftHSM test configuration, creating
// it and pointing SOFTHSM2_CONF at it on first use.
func NewSoftHSM(t testing.TB) *SoftHSM {
	t.Helper()
	mod := SoftHSMModule()
	if mod == "" {
		Missing(t, "SoftHSM2 library not found (apt-get install softhsm2)")
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		Missing(t, "softhsm2-util not on PATH (apt-get install softhsm2)")
	}
	shOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hsmca-softhsm-")
		if err != nil {
			shErr = err
			return
		}
		tokDir := filepath.Join(dir, "tokens")
		if err = os.MkdirAll(tokDir, 0o700); err != nil {
			shErr = err
			return
		}
		conf := filepath.Join(dir, "softhsm2.conf")
		body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokDir)
		if err = os.WriteFile(conf, []byte(body), 0o600); err != nil {
			shErr = err
			return
		}
		os.Setenv("SOFTHSM2_CONF", conf)
		shInst = &SoftHSM{Module: mod, ConfPath: conf, TokenDir: tokDir}
	})
	if shErr != nil {
		t.Fatalf("softhsm setup: %v", shErr)
	}
	return shInst
}

// NewToken initialises a fresh token with a unique label and random PINs.
// The user PIN is also written to a 0600 file.
func NewToken(t testing.TB) *Token {
	t.Helper()
	sh := NewSoftHSM(t)
	tokMu.Lock()
	tokSeq++
	label := fmt.Sprintf("test-%d-%d", os.Getpid(), tokSeq)
	tokMu.Unlock()
	tok := &Token{SoftHSM: sh, Label: label, PIN: randomDigits(8), SOPIN: randomDigits(8)}
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label,
		"--so-pin", tok.SOPIN, "--pin", tok.PIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v: %s", err, out)
	}
	tok.PINFile = filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(tok.PINFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return tok
}

func randomDigits(n int) string {
	b := make([]byte, n)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}

// Redis is a redis-server child process on a loopback port.
type Redis struct {
	Addr string
	Dir  string
	port int
	cmd  *exec.Cmd
	t    testing.TB
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// StartRedis runs redis-server on a free loopback port with persistence off;
// it is stopped when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		Missing(t, "redis-server not on PATH (apt-get install redis-server)")
	}
	r := &Redis{port: FreePort(t), Dir: t.TempDir(), t: t}
	r.Addr = fmt.Sprintf("127.0.0.1:%d", r.port)
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start (re)starts the server on the same port.
func (r *Redis) Start() {
	r.t.Helper()
	if r.cmd != nil {
		return
	}
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.Dir, "--protected-mode", "yes")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				signalled = true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		r.t.Fatalf("redis-server on %s did not become ready", r.Addr)
	}
	r.cmd = cmd
}

// Stop kills the server; Start brings it back on the same address.
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}
