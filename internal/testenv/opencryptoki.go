package testenv

import (
	"errors"
	"fmt"
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

// opencryptoki 3.8.1's software token keeps its data in one fixed directory
// (/var/lib/opencryptoki/swtok: the PKCS_APP_STORE variable meant to move it
// is broken in this version) behind one machine-wide daemon, pkcsslotd. Its
// SO PIN starts as 87654321 and the token cannot be initialised again once
// that PIN changed. And two processes cannot use it at once: a process that
// writes the token's data file (creating a token object does) releases its
// lock before the data reaches the file, so another process's C_Initialize
// can read it empty and loses the slot (C_GetSlotList answers no slot).
//
// So the token belongs to one test process at a time, made fresh for it:
//
//   - token.lock (flock, exclusive, in $TMPDIR/hsmca-opencryptoki-<uid>) is
//     held from a test's NewOpenCryptoki until its cleanup; a test of another
//     process (go test runs packages as parallel processes) waits for it;
//   - whoever takes it wipes the token directory and its shared memory and
//     initialises a new token (label hsmca-test-<pid>-<n>, random 8-digit
//     PINs) through PKCS#11;
//   - tests of one process that hold it at the same time (parallel tests,
//     or a subtest under a test that holds it) share that token (Shared);
//     sequential tests get a fresh token each.
//
// The kernel drops the lock of a process that dies. A token not made by
// these tests (its label does not start with ockLabelPrefix) is never wiped:
// the test fails under CI and skips elsewhere.
//
// pkcsslotd is started when it is not running (as root) and left running:
// it is the machine's daemon, as the Debian service would run it, and other
// test processes may need it next.

const (
	ockDefaultSOPIN = "87654321"
	ockLabelPrefix  = "hsmca-test"
	ockPIDFile      = "/var/run/pkcsslotd.pid"
	ockSocket       = "/var/run/pkcsslotd.socket"
	ockDataDir      = "/var/lib/opencryptoki/swtok"
	ockLockDir      = "/var/lock/opencryptoki/swtok"
	ockShm          = "/dev/shm/var.lib.opencryptoki.swtok"
	ockSoftModel    = "IBM SoftTok"
)

// OpenCryptoki is opencryptoki's software token, initialised for tests.
type OpenCryptoki struct {
	// Module is libopencryptoki.so.
	Module string
	// Slot holds the soft token (3 in Debian's opencryptoki.conf).
	Slot  uint
	Label string
	// PIN and SOPIN are 8 digits (the token takes 4 to 8 characters).
	PIN, SOPIN string
	// PINFile holds the user PIN on one line (mode 0600).
	PINFile string
	// DataDir is the token's directory.
	DataDir string
	// Shared reports that another test of this process held the token
	// when this one got it: both use the same token.
	Shared bool
}

var (
	ockMu   sync.Mutex
	ockHeld int           // tests of this process holding the token
	ockLock *os.File      // token.lock while ockHeld > 0
	ockCur  *OpenCryptoki // the token while ockHeld > 0
	ockSeq  int           // tokens made by this process
	// ockPin keeps libopencryptoki loaded for the life of the process: it
	// links libitm, and in a process that also has libstdc++ (SoftHSM2 is
	// C++), unloading libitm and loading it again crashes in
	// _ITM_beginTransaction. Pinned, a test's pkcs11.New / Destroy cycles
	// only count references.
	ockPin *pkcs11.Ctx
)

// OpenCryptokiModule finds libopencryptoki.so.
func OpenCryptokiModule() string {
	return firstExisting(
		"/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so",
		"/usr/lib/aarch64-linux-gnu/pkcs11/libopencryptoki.so",
		"/usr/lib/s390x-linux-gnu/pkcs11/libopencryptoki.so",
		"/usr/lib/*/pkcs11/libopencryptoki.so",
		"/usr/lib64/opencryptoki/libopencryptoki.so",
		"/usr/lib/opencryptoki/libopencryptoki.so",
	)
}

func pkcsslotdPath() string {
	if p, err := exec.LookPath("pkcsslotd"); err == nil {
		return p
	}
	return firstExisting("/usr/sbin/pkcsslotd", "/sbin/pkcsslotd")
}

func openCryptokiAvailable() error {
	if OpenCryptokiModule() == "" {
		return errors.New("libopencryptoki.so not found (apt-get install opencryptoki)")
	}
	if pkcsslotdPath() == "" {
		return errors.New("pkcsslotd not found (apt-get install opencryptoki)")
	}
	if os.Geteuid() != 0 && !pkcsslotdRunning() {
		return errors.New("pkcsslotd is not running and only root may start it")
	}
	if os.Geteuid() != 0 {
		// The token directory and the daemon's socket belong to group pkcs11.
		if f, err := os.Open(ockDataDir); err != nil {
			return fmt.Errorf("opencryptoki token directory: %v (join group pkcs11)", err)
		} else {
			f.Close()
		}
	}
	return nil
}

// NewOpenCryptoki gives the test opencryptoki's soft token, freshly
// initialised, until the test ends (see above: one test process at a time;
// it may wait for another). A missing component fails the test under CI and
// skips it elsewhere.
func NewOpenCryptoki(t testing.TB) *OpenCryptoki {
	t.Helper()
	if err := openCryptokiAvailable(); err != nil {
		Missing(t, "%v", err)
	}
	ockMu.Lock()
	if ockHeld == 0 {
		cur, lock, err := acquireOpenCryptoki(t)
		if err != nil {
			ockMu.Unlock()
			if errors.Is(err, errForeignToken) {
				Missing(t, "%v", err)
			}
			t.Fatalf("opencryptoki: %v", err)
		}
		ockCur, ockLock = cur, lock
	}
	ockHeld++
	o := *ockCur
	o.Shared = ockHeld > 1
	ockMu.Unlock()
	t.Cleanup(releaseOpenCryptoki)

	o.PINFile = filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(o.PINFile, []byte(o.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &o
}

func releaseOpenCryptoki() {
	ockMu.Lock()
	defer ockMu.Unlock()
	ockHeld--
	if ockHeld == 0 {
		ockLock.Close() // drops the flock
		ockLock, ockCur = nil, nil
	}
}

var errForeignToken = errors.New("opencryptoki soft token holds a token these tests did not make")

func ockStateDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("hsmca-opencryptoki-%d", os.Geteuid()))
}

// acquireOpenCryptoki takes token.lock (waiting for other processes) and
// makes a fresh token. Called with ockMu held and ockHeld == 0.
func acquireOpenCryptoki(t testing.TB) (*OpenCryptoki, *os.File, error) {
	if ockPin == nil {
		if ockPin = pkcs11.New(OpenCryptokiModule()); ockPin == nil {
			return nil, nil, fmt.Errorf("cannot load %s", OpenCryptokiModule())
		}
	}
	dir := ockStateDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, "token.lock")
	lock, err := flock(path, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		t.Logf("opencryptoki: waiting for the soft token (another test process holds %s)", path)
		lock, err = flock(path, syscall.LOCK_EX)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("token lock: %w", err)
	}
	if err := ensurePkcsslotd(); err != nil {
		lock.Close()
		return nil, nil, err
	}
	ockSeq++
	o, err := initOpenCryptoki(fmt.Sprintf("%s-%d-%d", ockLabelPrefix, os.Getpid(), ockSeq))
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	return o, lock, nil
}

func flock(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func pkcsslotdRunning() bool {
	b, err := os.ReadFile(ockPIDFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	// pid (comm) state ...: a live pkcsslotd, not a zombie.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || !strings.Contains(string(stat), "(pkcsslotd) ") || strings.Contains(string(stat), "(pkcsslotd) Z") {
		return false
	}
	_, err = os.Stat(ockSocket)
	return err == nil
}

// ensurePkcsslotd starts the daemon when it is not running (it forks into
// the background and stays: see above). Called with token.lock held.
func ensurePkcsslotd() error {
	if pkcsslotdRunning() {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("pkcsslotd is not running and only root may start it")
	}
	// The directories Debian makes with systemd-tmpfiles, gone after a
	// reboot of a machine without systemd.
	for _, d := range []string{filepath.Dir(ockLockDir), ockLockDir, ockDataDir, filepath.Join(ockDataDir, "TOK_OBJ")} {
		if err := os.MkdirAll(d, 0o770); err != nil {
			return err
		}
	}
	// A stale pid file or socket of a dead daemon stops a new one.
	_ = os.Remove(ockPIDFile)
	_ = os.Remove(ockSocket)
	out, err := exec.Command(pkcsslotdPath()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("start pkcsslotd: %v: %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !pkcsslotdRunning() {
		if time.Now().After(deadline) {
			return fmt.Errorf("pkcsslotd did not come up (pid file %s, socket %s)", ockPIDFile, ockSocket)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// ockWipe empties the soft token's directory and drops its shared memory
// (which caches the token's data and object list). Only while nobody uses
// the token.
func ockWipe() error {
	for _, name := range []string{"NVTOK.DAT", "MK_SO", "MK_USER"} {
		if err := os.Remove(filepath.Join(ockDataDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	objs := filepath.Join(ockDataDir, "TOK_OBJ")
	ents, err := os.ReadDir(objs)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(objs, e.Name())); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(objs, 0o770); err != nil {
		return err
	}
	if err := os.Remove(ockShm); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// initOpenCryptoki checks the soft token is one of ours (or blank), wipes
// it and initialises it with label and new PINs through PKCS#11. Called
// with token.lock held.
func initOpenCryptoki(label string) (o *OpenCryptoki, err error) {
	ctx := ockPin
	slot, info, err := ockSoftSlot(ctx)
	if err != nil {
		return nil, err
	}
	old := strings.TrimRight(info.Label, " \x00")
	if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 && !strings.HasPrefix(old, ockLabelPrefix) {
		return nil, fmt.Errorf("%w: slot %d, label %q in %s; not wiping it", errForeignToken, slot, old, ockDataDir)
	}
	if err := ockWipe(); err != nil {
		return nil, fmt.Errorf("wipe %s: %w", ockDataDir, err)
	}
	o = &OpenCryptoki{Module: OpenCryptokiModule(), Slot: slot, Label: label,
		PIN: randomDigits(8), SOPIN: randomDigits(8), DataDir: ockDataDir}
	if err := ctx.Initialize(); err != nil {
		return nil, fmt.Errorf("C_Initialize after wipe: %w", err)
	}
	defer func() {
		if ferr := ctx.Finalize(); ferr != nil && err == nil {
			o, err = nil, fmt.Errorf("C_Finalize: %w", ferr)
		}
	}()
	if err := ctx.InitToken(slot, ockDefaultSOPIN, o.Label); err != nil {
		return nil, fmt.Errorf("C_InitToken: %w", err)
	}
	sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("C_OpenSession: %w", err)
	}
	defer ctx.CloseSession(sh)
	if err := ctx.Login(sh, pkcs11.CKU_SO, ockDefaultSOPIN); err != nil {
		return nil, fmt.Errorf("C_Login (SO, default PIN): %w", err)
	}
	if err := ctx.SetPIN(sh, ockDefaultSOPIN, o.SOPIN); err != nil {
		return nil, fmt.Errorf("C_SetPIN (SO): %w", err)
	}
	if err := ctx.InitPIN(sh, o.PIN); err != nil {
		return nil, fmt.Errorf("C_InitPIN: %w", err)
	}
	if err := ctx.Logout(sh); err != nil {
		return nil, fmt.Errorf("C_Logout (SO): %w", err)
	}
	if err := ctx.Login(sh, pkcs11.CKU_USER, o.PIN); err != nil {
		return nil, fmt.Errorf("C_Login (user, new PIN): %w", err)
	}
	if err := ctx.Logout(sh); err != nil {
		return nil, fmt.Errorf("C_Logout (user): %w", err)
	}
	return o, nil
}

// ockSoftSlot finds the slot of the software token. It leaves ctx
// finalised.
func ockSoftSlot(ctx *pkcs11.Ctx) (uint, pkcs11.TokenInfo, error) {
	if err := ockInitialize(ctx); err != nil {
		return 0, pkcs11.TokenInfo{}, fmt.Errorf("C_Initialize: %w", err)
	}
	defer ctx.Finalize()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, pkcs11.TokenInfo{}, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		info, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if strings.TrimSpace(info.Model) == ockSoftModel {
			return s, info, nil
		}
	}
	return 0, pkcs11.TokenInfo{}, fmt.Errorf("no opencryptoki soft token (model %q) among slots %v", ockSoftModel, slots)
}

// ockInitialized is set once libopencryptoki was initialised in this
// process (with ockMu held).
var ockInitialized bool

// ockLockFD is below the descriptor libopencryptoki's process lock gets.
const ockLockFD = 1000

// ockInitialize is C_Initialize of the pinned library. opencryptoki 3.8.1
// opens its process lock (/var/lock/opencryptoki/LCK..APIlock) at the first
// C_Initialize of the process and closes that descriptor at every
// C_Finalize without forgetting it, so from the second C_Finalize on it
// closes whichever file of this process holds the number by then (seen:
// token.lock, dropping the flock, once tpm2-pkcs11 had shifted the
// numbers). The first C_Initialize runs with the low descriptors taken, so
// the lock gets a number this process does not otherwise reach.
func ockInitialize(ctx *pkcs11.Ctx) error {
	if ockInitialized {
		return ctx.Initialize()
	}
	release := holdLowFDs(ockLockFD)
	err := ctx.Initialize()
	release()
	if err == nil {
		ockInitialized = true
	}
	return err
}

// holdLowFDs fills the free descriptors below n with /dev/null and returns
// the function that frees them.
func holdLowFDs(n int) func() {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return func() {}
	}
	var held []int
	for {
		fd, err := syscall.Dup(int(f.Fd()))
		if err != nil {
			break
		}
		held = append(held, fd)
		if fd >= n-1 {
			break
		}
	}
	return func() {
		for _, fd := range held {
			_ = syscall.Close(fd)
		}
		f.Close()
	}
}
