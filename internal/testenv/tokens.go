package testenv

// PKCS#11 tokens other than the in-process SoftHSM2 of testenv.go: SoftHSM2
// served by `p11-kit server` over a unix socket (a network HSM that can be
// stopped, killed and paused), opencryptoki's software token (another
// implementation, with its own mechanism list and PIN rules), and the
// matrix of all of them, with tpm2-pkcs11 on a software TPM (tpm2.go). See /work/notes/tokens.md for the facts found on
// each token.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Names of the rows of the token matrix.
const (
	TokenSoftHSM2     = "softhsm2"
	TokenP11Kit       = "p11kit"
	TokenOpenCryptoki = "opencryptoki"
	TokenTPM2         = "tpm2"
)

// TokenSpec is one token of the matrix, as a PKCS#11 application sees it.
type TokenSpec struct {
	// Name is TokenSoftHSM2, TokenP11Kit, TokenOpenCryptoki or TokenTPM2.
	Name string
	// Module is the PKCS#11 library to load.
	Module string
	// Label selects the token. Slot is its slot id when HasSlot (slot ids of
	// SoftHSM2 tokens are not stable: select those by label).
	Label   string
	Slot    uint
	HasSlot bool
	// PIN and SOPIN are the user and security officer PINs; PINFile holds the
	// user PIN on one line (mode 0600).
	PIN, SOPIN, PINFile string
	// Env holds KEY=VALUE pairs a process loading Module needs: append them
	// to the environment of a child daemon. In this process they are set
	// already (SOFTHSM2_CONF) or by ForEachToken / Setenv (the p11-kit
	// address, tpm2-pkcs11's TCTI and store, read at C_Initialize).
	Env []string
	// Shared reports a token another test of this process uses at the same
	// time (opencryptoki only: it has one token per machine, held by one
	// test process at a time, shared by the tests of that process that hold
	// it together): make unique object labels and ids, do not count the
	// token's objects.
	Shared bool
	// P11Kit controls the server of the p11kit row (nil on other rows): its
	// own server, so stopping it disturbs no other test.
	P11Kit *P11KitServer
	// TPM2 is the token of the tpm2 row (nil on other rows): its own swtpm,
	// tpm2-abrmd and store.
	TPM2 *TPM2Token
}

// Setenv makes Env visible to this process for the rest of the test (the
// p11-kit client reads its server address when the module is loaded, at
// pkcs11.New). Like t.Setenv, not for parallel tests.
func (s TokenSpec) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		if os.Getenv(k) != v {
			t.Setenv(k, v)
		}
	}
}

// TokenNames lists the rows of the matrix in order.
func TokenNames() []string {
	return []string{TokenSoftHSM2, TokenP11Kit, TokenOpenCryptoki, TokenTPM2}
}

// wantedTokens applies HSMCA_TEST_TOKENS (a comma-separated subset of
// TokenNames, for a quick local run); all rows when unset.
func wantedTokens() []string {
	v := strings.TrimSpace(os.Getenv("HSMCA_TEST_TOKENS"))
	if v == "" {
		return TokenNames()
	}
	var out []string
	for _, n := range TokenNames() {
		for _, w := range strings.Split(v, ",") {
			if strings.TrimSpace(w) == n {
				out = append(out, n)
			}
		}
	}
	return out
}

// NewTokenSpec makes a fresh token of the named row (a new SoftHSM2 token, a
// new p11-kit server with its own token, opencryptoki's soft token,
// initialised afresh and held until the test ends: see NewOpenCryptoki, or
// a tpm2-pkcs11 token on a swtpm of its own: see NewTPM2Token). A
// missing component fails the test under CI and skips it elsewhere
// (Missing).
func NewTokenSpec(t testing.TB, name string) TokenSpec {
	t.Helper()
	switch name {
	case TokenSoftHSM2:
		tok := NewToken(t)
		return TokenSpec{Name: name, Module: tok.Module, Label: tok.Label, PIN: tok.PIN,
			SOPIN: tok.SOPIN, PINFile: tok.PINFile, Env: []string{"SOFTHSM2_CONF=" + tok.ConfPath}}
	case TokenP11Kit:
		s := NewP11KitToken(t)
		return TokenSpec{Name: name, Module: s.Module, Label: s.Label, PIN: s.PIN, SOPIN: s.SOPIN,
			PINFile: s.PINFile, Env: s.Env(), P11Kit: s}
	case TokenOpenCryptoki:
		o := NewOpenCryptoki(t)
		return TokenSpec{Name: name, Module: o.Module, Label: o.Label, Slot: o.Slot, HasSlot: true,
			PIN: o.PIN, SOPIN: o.SOPIN, PINFile: o.PINFile, Shared: o.Shared}
	case TokenTPM2:
		k := NewTPM2Token(t)
		return TokenSpec{Name: name, Module: k.Module, Label: k.Label, PIN: k.PIN, SOPIN: k.SOPIN,
			PINFile: k.PINFile, Env: k.Env(), TPM2: k}
	}
	t.Fatalf("testenv: unknown token %q", name)
	return TokenSpec{}
}

// ForEachToken runs fn in a subtest per row of the matrix (named after the
// row), each with a fresh token, the row's Env set in this process. A row
// whose component is missing fails under CI and is skipped elsewhere, alone.
//
// The p11kit and tpm2 rows set their variables with t.Setenv, so the test
// calling ForEachToken must not be parallel (its subtests may be: the
// variables stay set until the row's subtest ends; p11-kit reads them at
// pkcs11.New, tpm2-pkcs11 at C_Initialize).
func ForEachToken(t *testing.T, fn func(t *testing.T, tok TokenSpec)) {
	t.Helper()
	for _, name := range wantedTokens() {
		t.Run(name, func(t *testing.T) {
			tok := NewTokenSpec(t, name)
			tok.Setenv(t)
			fn(t, tok)
		})
	}
}

// Tokens returns one fresh token per row whose components are present; a
// missing one fails the test under CI and is logged and left out elsewhere.
// Env is not applied: call Setenv on the row you load in this process.
func Tokens(t testing.TB) []TokenSpec {
	t.Helper()
	var out []TokenSpec
	for _, name := range wantedTokens() {
		if err := TokenAvailable(name); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("required test component missing (CI is set): %s: %v", name, err)
			}
			t.Logf("token matrix: leaving out %s: %v", name, err)
			continue
		}
		out = append(out, NewTokenSpec(t, name))
	}
	return out
}

// TokenAvailable reports why the named row cannot run here (nil when it can).
func TokenAvailable(name string) error {
	switch name {
	case TokenSoftHSM2:
		if SoftHSMModule() == "" {
			return errors.New("SoftHSM2 library not found (apt-get install softhsm2)")
		}
		if _, err := exec.LookPath("softhsm2-util"); err != nil {
			return errors.New("softhsm2-util not on PATH (apt-get install softhsm2)")
		}
		return nil
	case TokenP11Kit:
		if err := TokenAvailable(TokenSoftHSM2); err != nil {
			return err
		}
		if _, err := exec.LookPath("p11-kit"); err != nil {
			return errors.New("p11-kit not on PATH (apt-get install p11-kit)")
		}
		if P11KitClientModule() == "" {
			return errors.New("p11-kit-client.so not found (apt-get install p11-kit-modules)")
		}
		return nil
	case TokenOpenCryptoki:
		return openCryptokiAvailable()
	case TokenTPM2:
		return tpm2Available()
	}
	return fmt.Errorf("unknown token %q", name)
}

func firstExisting(paths ...string) string {
	for _, p := range paths {
		if strings.ContainsAny(p, "*?[") {
			m, _ := filepath.Glob(p)
			if len(m) > 0 {
				return m[0]
			}
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// P11KitClientModule finds p11-kit's client module (Debian p11-kit-modules).
func P11KitClientModule() string {
	return firstExisting(
		"/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
		"/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
		"/usr/lib/*/pkcs11/p11-kit-client.so",
		"/usr/lib64/pkcs11/p11-kit-client.so",
		"/usr/lib/pkcs11/p11-kit-client.so",
	)
}

// childEnv is this process's environment without the variables that would
// redirect a child token daemon, plus extra.
func childEnv(extra ...string) []string {
	drop := map[string]bool{"SOFTHSM2_CONF": true, "P11_KIT_SERVER_ADDRESS": true,
		"P11_KIT_SERVER_PID": true, "LISTEN_FDS": true, "LISTEN_PID": true, "LISTEN_FDNAMES": true}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Children are started from one goroutine locked to its OS thread for the
// life of the process: Pdeathsig fires when the thread that forked the child
// exits, and this one never does, so a crashed or timed-out test binary
// takes its token servers with it.
type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnQ    chan spawnReq
)

// startChild starts cmd in a process group of its own, killed with this
// process.
func startChild(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnQ = make(chan spawnReq)
		go func() {
			runtime.LockOSThread()
			for r := range spawnQ {
				r.done <- r.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnQ <- r
	return <-r.done
}

// P11KitServer is a SoftHSM2 token served by `p11-kit server` on a unix
// socket: a network HSM for tests. The server runs in its own process group
// with the `p11-kit remote` child it forks per client connection, so Stop,
// Kill, Pause and Resume act on the server and all its connections at once,
// as a dropped or stalled network would.
type P11KitServer struct {
	// Module is p11-kit's client module, what the application loads.
	Module string
	// Provider is the module the server serves (SoftHSM2).
	Provider string
	// Socket is the server's unix socket; Address the value of
	// P11_KIT_SERVER_ADDRESS that reaches it.
	Socket, Address string
	// The served token.
	Label, PIN, SOPIN, PINFile string
	// ConfPath and TokenDir are the server's own SoftHSM2 configuration
	// (not this process's SOFTHSM2_CONF).
	ConfPath, TokenDir string

	t       testing.TB
	dir     string
	uri     string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	paused  bool
	starts  int
	logPath string
}

// NewP11KitToken makes a SoftHSM2 token in a configuration of its own and
// serves it with a new `p11-kit server`, killed when the test ends.
//
// The p11-kit client takes the server address from P11_KIT_SERVER_ADDRESS
// when the module is loaded (pkcs11.New): set it first (Setenv, or Env for
// a child process).
func NewP11KitToken(t testing.TB) *P11KitServer {
	t.Helper()
	if err := TokenAvailable(TokenP11Kit); err != nil {
		Missing(t, "%v", err)
	}
	// A short path: a unix socket path is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "hsmca-p11k-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &P11KitServer{
		Module:   P11KitClientModule(),
		Provider: SoftHSMModule(),
		Socket:   filepath.Join(dir, "pkcs11.sock"),
		ConfPath: filepath.Join(dir, "softhsm2.conf"),
		TokenDir: filepath.Join(dir, "tokens"),
		PIN:      randomDigits(8),
		SOPIN:    randomDigits(8),
		t:        t,
		dir:      dir,
		logPath:  filepath.Join(dir, "server.log"),
	}
	s.Address = "unix:path=" + s.Socket
	tokMu.Lock()
	tokSeq++
	s.Label = fmt.Sprintf("p11kit-%d-%d", os.Getpid(), tokSeq)
	tokMu.Unlock()
	s.uri = "pkcs11:token=" + s.Label
	if err := os.MkdirAll(s.TokenDir, 0o700); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", s.TokenDir)
	if err := os.WriteFile(s.ConfPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", s.Label,
		"--so-pin", s.SOPIN, "--pin", s.PIN)
	cmd.Env = childEnv("SOFTHSM2_CONF=" + s.ConfPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token (p11-kit token): %v: %s", err, out)
	}
	s.PINFile = filepath.Join(dir, "user.pin")
	if err := os.WriteFile(s.PINFile, []byte(s.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	s.Start()
	return s
}

// Env is what a process needs to reach the server through Module.
func (s *P11KitServer) Env() []string {
	return []string{"P11_KIT_SERVER_ADDRESS=" + s.Address}
}

// Setenv points this process's p11-kit client at the server for the rest
// of the test (t.Setenv: not in parallel tests). Modules loaded before keep
// the address they were loaded with.
func (s *P11KitServer) Setenv(t testing.TB) {
	t.Helper()
	t.Setenv("P11_KIT_SERVER_ADDRESS", s.Address)
}

// Running reports whether the server process is up (paused counts as up).
func (s *P11KitServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Starts counts the server's starts, the first included.
func (s *P11KitServer) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// Start runs the server on its socket, serving the same token, and returns
// once it listens. It does nothing when the server runs already. A socket
// file left by a killed server is removed first.
func (s *P11KitServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	if err := os.Remove(s.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.t.Fatalf("p11-kit server: remove stale socket: %v", err)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command("p11-kit", "server", "-f", "--provider", s.Provider, "-n", s.Socket, s.uri)
	cmd.Env = childEnv("SOFTHSM2_CONF=" + s.ConfPath)
	cmd.Stdout = wr // *os.File: Wait does not wait on the pipe
	cmd.Stderr = logf
	err = startChild(cmd)
	wr.Close()
	if err != nil {
		rd.Close()
		s.t.Fatalf("start p11-kit server: %v", err)
	}
	ready := make(chan struct{})
	go func() {
		defer rd.Close()
		sc := bufio.NewScanner(rd)
		signalled := false
		for sc.Scan() {
			// Printed once the socket listens.
			if !signalled && strings.HasPrefix(sc.Text(), "P11_KIT_SERVER_ADDRESS=") {
				close(ready)
				signalled = true
			}
		}
	}()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		s.t.Fatalf("p11-kit server exited at start: %s", s.serverLog())
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		s.t.Fatalf("p11-kit server on %s did not start listening: %s", s.Socket, s.serverLog())
	}
	s.cmd, s.exited, s.paused = cmd, exited, false
	s.starts++
}

func (s *P11KitServer) serverLog() string {
	b, _ := os.ReadFile(s.logPath)
	return strings.TrimSpace(string(b))
}

// Stop ends the server and its connections with SIGTERM (a clean shutdown:
// the server removes its socket). Calls on open sessions then fail; Start
// brings the same token back on the same socket.
func (s *P11KitServer) Stop() { s.stop(syscall.SIGTERM) }

// Kill ends the server and its connections with SIGKILL (a crash or a
// dropped network: the socket file stays, refusing connections).
func (s *P11KitServer) Kill() { s.stop(syscall.SIGKILL) }

func (s *P11KitServer) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, sig)
	if sig != syscall.SIGKILL {
		_ = syscall.Kill(-pgid, syscall.SIGCONT) // a paused group must run to die
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
		}
	}
	// Whatever is left of the group (connections that outlived the server,
	// or a server that ignored the signal) goes now.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-s.exited
	s.cmd, s.paused = nil, false
}

// Pause stops the server and its connections with SIGSTOP: calls on open
// sessions, and new connections, block until Resume (a stalled network HSM).
func (s *P11KitServer) Pause() { s.signal(syscall.SIGSTOP, true) }

// Resume continues a paused server (SIGCONT).
func (s *P11KitServer) Resume() { s.signal(syscall.SIGCONT, false) }

func (s *P11KitServer) signal(sig syscall.Signal, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, sig); err != nil {
		s.t.Errorf("p11-kit server: signal %v: %v", sig, err)
		return
	}
	s.paused = paused
}

// Paused reports whether the server is paused.
func (s *P11KitServer) Paused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

// Connections counts the `p11-kit remote` processes serving clients now
// (one per connection; a connection's process lingers until the client
// finalizes or the server goes).
func (s *P11KitServer) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return len(groupMembers(s.cmd.Process.Pid)) - 1
}

// groupMembers lists the pids of the live processes in a process group.
func groupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		st := string(b)
		i := strings.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid, pgrp int
		if _, err := fmt.Sscanf(st[i+1:], " %s %d %d", &state, &ppid, &pgrp); err != nil {
			continue
		}
		if pgrp == pgid && state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}
