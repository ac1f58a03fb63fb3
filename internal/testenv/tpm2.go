package testenv

// tpm2-pkcs11 on a software TPM: the fourth row of the token matrix. Each
// token is a swtpm of its own (a unix socket in a temp dir, fresh state),
// a tpm2-abrmd resource manager in front of it, and a tpm2-pkcs11 store in
// the same temp dir, initialised through PKCS#11 (C_InitToken + C_InitPIN).
//
// Why the resource manager: swtpm, like a real TPM, holds 3 transient
// objects, and tpm2-pkcs11 (and tpm2-tools) leave objects loaded; talking
// to swtpm directly fails with "out of memory for object contexts" after a
// key or two. tpm2-abrmd swaps objects in and out per client. It speaks
// D-Bus, so each test process runs one private session bus (dbus-daemon)
// for all its tokens, each abrmd under a name of its own. The bus lives as
// long as the process: GLib keeps one connection to the session bus per
// process and, by default, ends the process when that connection closes.
//
// tpm2-pkcs11 reads TPM2_PKCS11_TCTI and TPM2_PKCS11_STORE when it is
// initialised (C_Initialize), not when it is loaded: set Env (Setenv, or a
// child's environment) before C_Initialize. Each token gets its own copy of
// the library (Module), so tokens of one process never share library state.
// See /work/notes/tokens.md for what the token offers.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// TPM2Token is a tpm2-pkcs11 token on a swtpm of its own.
type TPM2Token struct {
	// Module is this token's copy of libtpm2_pkcs11.so (what to load).
	Module string
	// Label selects the token; PIN and SOPIN are 8 digits (the library
	// takes 0 to 128 characters). PINFile holds the user PIN on one line.
	Label, PIN, SOPIN, PINFile string
	// Dir holds everything: the TPM state, its socket, the store, logs.
	Dir string
	// Store is the tpm2-pkcs11 store directory (TPM2_PKCS11_STORE).
	Store string
	// Socket is swtpm's command socket (its control socket is Socket+".ctrl").
	Socket string
	// BusName is tpm2-abrmd's name on the session bus at BusAddress; TCTI
	// reaches it (TPM2_PKCS11_TCTI).
	BusName, BusAddress, TCTI string

	t     testing.TB
	pin   *pkcs11.Ctx // keeps Module loaded until the test ends
	procs []*tpm2Proc
}

type tpm2Proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// TPM2Module finds tpm2-pkcs11 (Debian libtpm2-pkcs11-1).
func TPM2Module() string {
	return firstExisting(
		"/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so",
		"/usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so",
		"/usr/lib/*/pkcs11/libtpm2_pkcs11.so",
		"/usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1",
		"/usr/lib/*/libtpm2_pkcs11.so.1",
		"/usr/lib64/pkcs11/libtpm2_pkcs11.so",
		"/usr/local/lib/libtpm2_pkcs11.so",
	)
}

func lookCmd(name string, more ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return firstExisting(more...)
}

func tpm2AbrmdPath() string {
	return lookCmd("tpm2-abrmd", "/usr/sbin/tpm2-abrmd", "/usr/local/sbin/tpm2-abrmd")
}

func tpm2Available() error {
	if TPM2Module() == "" {
		return errors.New("libtpm2_pkcs11.so not found (apt-get install libtpm2-pkcs11-1)")
	}
	if lookCmd("swtpm") == "" {
		return errors.New("swtpm not on PATH (apt-get install swtpm)")
	}
	if tpm2AbrmdPath() == "" {
		return errors.New("tpm2-abrmd not found (apt-get install tpm2-abrmd)")
	}
	if lookCmd("dbus-daemon") == "" {
		return errors.New("dbus-daemon not on PATH (apt-get install dbus-daemon)")
	}
	for _, lib := range []struct{ name, pkg string }{
		{"libtss2-tcti-swtpm.so.0", "libtss2-tcti-swtpm0"},
		{"libtss2-tcti-tabrmd.so.0", "libtss2-tcti-tabrmd0"},
	} {
		if firstExisting("/usr/lib/*/"+lib.name, "/usr/lib64/"+lib.name, "/usr/lib/"+lib.name, "/usr/local/lib/"+lib.name) == "" {
			return fmt.Errorf("%s not found (apt-get install %s)", lib.name, lib.pkg)
		}
	}
	return nil
}

// The process's session bus, shared by its tokens (see above).
var (
	tpm2BusMu   sync.Mutex
	tpm2BusAddr string
	tpm2BusProc *tpm2Proc
	// tpm2EnvMu serialises token set-up, which sets the tpm2-pkcs11
	// variables of this process for the length of C_Initialize.
	tpm2EnvMu sync.Mutex
)

const tpm2BusPrefix = "hsmca-tpm2bus-"

// tpm2SessionBus starts the process's dbus-daemon on first use and returns
// its address. Directories left by dead test processes are removed.
func tpm2SessionBus() (string, error) {
	tpm2BusMu.Lock()
	defer tpm2BusMu.Unlock()
	if tpm2BusProc != nil {
		select {
		case <-tpm2BusProc.exited:
			return "", fmt.Errorf("the tests' dbus-daemon exited: %s", tpm2BusProc.tail())
		default:
			return tpm2BusAddr, nil
		}
	}
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), tpm2BusPrefix+"*"))
	for _, d := range old {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), tpm2BusPrefix))
		if err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(d)
		}
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d", tpm2BusPrefix, os.Getpid()))
	_ = os.RemoveAll(dir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return "", err
	}
	p, err := startTPM2Proc("dbus-daemon", filepath.Join(dir, "dbus.log"), wr, nil,
		lookCmd("dbus-daemon"), "--session", "--nofork", "--nopidfile",
		"--address=unix:path="+filepath.Join(dir, "bus"), "--print-address=1")
	wr.Close()
	if err != nil {
		rd.Close()
		return "", err
	}
	addr := make(chan string, 1)
	go func() {
		defer rd.Close()
		sc := bufio.NewScanner(rd)
		if sc.Scan() {
			addr <- strings.TrimSpace(sc.Text())
		}
		_, _ = io.Copy(io.Discard, rd)
	}()
	select {
	case a := <-addr:
		tpm2BusAddr, tpm2BusProc = a, p
		return a, nil
	case <-p.exited:
		return "", fmt.Errorf("dbus-daemon exited at start: %s", p.tail())
	case <-time.After(15 * time.Second):
		p.kill()
		return "", fmt.Errorf("dbus-daemon printed no address: %s", p.tail())
	}
}

// startTPM2Proc starts a child (killed with this process) logging to log.
func startTPM2Proc(name, log string, stdout *os.File, env []string, path string, args ...string) (*tpm2Proc, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Env = childEnv(env...)
	cmd.Stdout, cmd.Stderr = f, f
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := startChild(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &tpm2Proc{name: name, cmd: cmd, exited: make(chan struct{}), log: log}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *tpm2Proc) tail() string {
	b, _ := os.ReadFile(p.log)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

func (p *tpm2Proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill ends the process: SIGTERM, then SIGKILL if it lingers.
func (p *tpm2Proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// NewTPM2Token starts a fresh swtpm and tpm2-abrmd and initialises a
// tpm2-pkcs11 token on it (about a quarter of a second); all of it goes
// when the test ends. A missing component fails the test under CI and
// skips it elsewhere.
func NewTPM2Token(t testing.TB) *TPM2Token {
	t.Helper()
	if err := tpm2Available(); err != nil {
		Missing(t, "%v", err)
	}
	bus, err := tpm2SessionBus()
	if err != nil {
		t.Fatalf("tpm2 token: session bus: %v", err)
	}
	// A short path: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "hsmca-tpm2-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	tokMu.Lock()
	tokSeq++
	seq := tokSeq
	tokMu.Unlock()
	k := &TPM2Token{
		Label:      fmt.Sprintf("tpm2-%d-%d", os.Getpid(), seq),
		PIN:        randomDigits(8),
		SOPIN:      randomDigits(8),
		Dir:        dir,
		Store:      filepath.Join(dir, "store"),
		Socket:     filepath.Join(dir, "tpm"),
		BusName:    fmt.Sprintf("com.intel.tss2.Tabrmd.hsmca.p%d.t%d", os.Getpid(), seq),
		BusAddress: bus,
		t:          t,
	}
	k.TCTI = "tabrmd:bus_name=" + k.BusName + ",bus_type=session"
	for _, d := range []string{filepath.Join(dir, "state"), k.Store} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(k.stop)

	// Each token its own copy of the library: a second token of this
	// process is not an already initialised library bound to the first.
	lib, err := os.ReadFile(TPM2Module())
	if err != nil {
		t.Fatal(err)
	}
	k.Module = filepath.Join(dir, "libtpm2_pkcs11.so")
	if err := os.WriteFile(k.Module, lib, 0o700); err != nil {
		t.Fatal(err)
	}

	swtpm, err := startTPM2Proc("swtpm", filepath.Join(dir, "swtpm.log"), nil, nil, lookCmd("swtpm"),
		"socket", "--tpm2", "--tpmstate", "dir="+filepath.Join(dir, "state"),
		"--server", "type=unixio,path="+k.Socket, "--ctrl", "type=unixio,path="+k.Socket+".ctrl",
		"--flags", "not-need-init,startup-clear")
	if err != nil {
		t.Fatal(err)
	}
	k.procs = append(k.procs, swtpm)
	k.waitSocket(swtpm)

	args := []string{"--session", "--dbus-name=" + k.BusName, "--tcti=swtpm:path=" + k.Socket, "--flush-all"}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-root")
	}
	abrmd, err := startTPM2Proc("tpm2-abrmd", filepath.Join(dir, "abrmd.log"), nil,
		[]string{"DBUS_SESSION_BUS_ADDRESS=" + bus}, tpm2AbrmdPath(), args...)
	if err != nil {
		t.Fatal(err)
	}
	k.procs = append(k.procs, abrmd)

	k.initToken(abrmd)
	k.PINFile = filepath.Join(dir, "user.pin")
	if err := os.WriteFile(k.PINFile, []byte(k.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// waitSocket returns once swtpm accepts connections on Socket.
func (k *TPM2Token) waitSocket(p *tpm2Proc) {
	k.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("unix", k.Socket)
		if err == nil {
			c.Close()
			return
		}
		if !p.running() {
			k.t.Fatalf("swtpm exited at start: %s", p.tail())
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("swtpm did not listen on %s: %v: %s", k.Socket, err, p.tail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Env is what a process loading Module needs (tpm2-pkcs11 reads it at
// C_Initialize).
func (k *TPM2Token) Env() []string {
	return []string{
		"TPM2_PKCS11_TCTI=" + k.TCTI,
		"TPM2_PKCS11_STORE=" + k.Store,
		"DBUS_SESSION_BUS_ADDRESS=" + k.BusAddress,
		// Errors only: the library warns on stderr about its fresh store.
		"TPM2_PKCS11_LOG_LEVEL=0",
	}
}

// withEnv runs f with Env set in this process, restoring the variables
// afterwards. Token set-ups of this process take turns.
func (k *TPM2Token) withEnv(f func()) {
	tpm2EnvMu.Lock()
	defer tpm2EnvMu.Unlock()
	type saved struct {
		key, val string
		ok       bool
	}
	var old []saved
	for _, kv := range k.Env() {
		key, val, _ := strings.Cut(kv, "=")
		v, ok := os.LookupEnv(key)
		old = append(old, saved{key, v, ok})
		_ = os.Setenv(key, val)
	}
	defer func() {
		for _, s := range old {
			if s.ok {
				_ = os.Setenv(s.key, s.val)
			} else {
				_ = os.Unsetenv(s.key)
			}
		}
	}()
	f()
}

// initToken initialises the token through PKCS#11 once tpm2-abrmd
// answers: C_InitToken on the free slot (the library creates the storage
// key in the TPM and the store's database), then the user PIN.
func (k *TPM2Token) initToken(abrmd *tpm2Proc) {
	k.t.Helper()
	var err error
	k.withEnv(func() { err = k.initTokenLocked(abrmd) })
	if err != nil {
		k.t.Fatalf("tpm2 token: %v (abrmd: %s) (swtpm: %s)", err, abrmd.tail(), k.procs[0].tail())
	}
}

func (k *TPM2Token) initTokenLocked(abrmd *tpm2Proc) error {
	ctx := pkcs11.New(k.Module)
	if ctx == nil {
		return fmt.Errorf("cannot load %s", k.Module)
	}
	k.pin = ctx
	// C_Initialize fails until tpm2-abrmd owns its name on the bus.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := ctx.Initialize()
		if err == nil {
			break
		}
		if !abrmd.running() {
			return fmt.Errorf("tpm2-abrmd exited at start (C_Initialize: %v)", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("C_Initialize: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer ctx.Finalize()
	slots, err := ctx.GetSlotList(false)
	if err != nil {
		return fmt.Errorf("C_GetSlotList: %w", err)
	}
	// A fresh store offers one slot with an uninitialised token.
	var slot uint
	found := false
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			slot, found = s, true
			break
		}
	}
	if !found {
		return fmt.Errorf("no uninitialised token among slots %v", slots)
	}
	if err := ctx.InitToken(slot, k.SOPIN, k.Label); err != nil {
		return fmt.Errorf("C_InitToken: %w", err)
	}
	sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession: %w", err)
	}
	defer ctx.CloseSession(sh)
	if err := ctx.Login(sh, pkcs11.CKU_SO, k.SOPIN); err != nil {
		return fmt.Errorf("C_Login (SO): %w", err)
	}
	if err := ctx.InitPIN(sh, k.PIN); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	if err := ctx.Logout(sh); err != nil {
		return fmt.Errorf("C_Logout (SO): %w", err)
	}
	return nil
}

// Running reports whether swtpm and tpm2-abrmd are both up.
func (k *TPM2Token) Running() bool {
	for _, p := range k.procs {
		if !p.running() {
			return false
		}
	}
	return len(k.procs) > 0
}

// stop ends tpm2-abrmd and swtpm and unloads the library (at cleanup,
// after the test's own contexts are gone).
func (k *TPM2Token) stop() {
	for i := len(k.procs) - 1; i >= 0; i-- {
		k.procs[i].kill()
	}
	k.procs = nil
	if k.pin != nil {
		k.pin.Destroy()
		k.pin = nil
	}
}
