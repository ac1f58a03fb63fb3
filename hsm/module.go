package hsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// libMu guards the process-wide PKCS#11 library state: loading,
// C_Initialize and C_Finalize of a module, and the registry below.
var libMu sync.Mutex

// keyMu serialises object creation and destruction: SoftHSM2 mishandles
// concurrent key generation and import. It is process-wide because the
// library state is.
var keyMu sync.Mutex

// A module is one loaded and initialised PKCS#11 library. Every user in
// the process (open HSM handles, the ops functions) shares it: a library
// has one state per process, and a module reached over a socket (p11-kit's
// client) keeps its connection, and with it the login, in that state. Two
// contexts on one module would each need their own login there.
type module struct {
	path  string
	key   string // loadKey
	p     *pkcs11.Ctx
	users int
	// owned: this process initialised the library (it was not already
	// initialised by something outside the registry), so it finalises it.
	owned bool
	// serial: calls into this library must not overlap (see
	// oneCallAtATime); calls holds them one at a time.
	serial bool
	calls  sync.Mutex
}

// oneCallAtATime reports whether calls into the library at path must be
// made one at a time. p11-kit's client module carries every call of the
// process over one connection, and a thread that reads the header of a
// reply meant for another thread waits for that thread to read the rest.
// If the connection drops in between, the other thread fails and returns,
// and the first one waits for ever (p11-kit 0.24 to 0.26: nothing wakes
// it once the socket is closed), holding the module so that it cannot be
// initialised again. With one call at a time, every reply is read by the
// thread that asked for it. The `p11-kit remote` behind the connection
// answers one call at a time anyway, so only the overlap of one call's
// transfer with another's work is given up.
func oneCallAtATime(path string) bool {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	return strings.HasPrefix(filepath.Base(path), "p11-kit-client")
}

// lockCalls and unlockCalls bracket calls into a serial module; for any
// other module they do nothing. libMu, when needed, is taken first.
func (m *module) lockCalls() {
	if m.serial {
		m.calls.Lock()
	}
}

func (m *module) unlockCalls() {
	if m.serial {
		m.calls.Unlock()
	}
}

var modules = map[string]*module{}

// loaded keeps every library this process has loaded, initialised or not:
// a library is never unloaded. Unloading and loading again is not safe for
// every module (opencryptoki's, in a process that also holds libstdc++,
// crashes in C_Initialize the second time), and a loaded library costs
// little. p11-kit's client module binds each load to the server address
// in P11_KIT_SERVER_ADDRESS at that moment, so the address is part of the
// key: a process may reach several servers one after the other.
var loaded = map[string]*pkcs11.Ctx{}

func loadKey(path string) string { return path + "\x00" + os.Getenv("P11_KIT_SERVER_ADDRESS") }

// openModule returns the shared module for path, loading and initialising
// it on first use. Call release when done. libMu must be held.
func openModule(path string) (*module, error) {
	if path == "" {
		return nil, errors.New("hsm: no PKCS#11 module given")
	}
	if m := modules[loadKey(path)]; m != nil {
		m.users++
		return m, nil
	}
	key := loadKey(path)
	p := loaded[key]
	if p == nil {
		if p = pkcs11.New(path); p == nil {
			return nil, fmt.Errorf("hsm: cannot load PKCS#11 module %s", path)
		}
		loaded[key] = p
	}
	m := &module{path: path, key: key, p: p, users: 1, owned: true, serial: oneCallAtATime(path)}
	switch err := p.Initialize(); {
	case err == nil:
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
		m.owned = false
	default:
		return nil, fmt.Errorf("hsm: PKCS#11 module %s did not initialise (for SoftHSM2: does SOFTHSM2_CONF name a readable config whose token directory exists?): %w", path, err)
	}
	modules[m.key] = m
	return m, nil
}

// release drops one user; the last one finalises the library (which stays
// loaded). libMu must be held.
func (m *module) release() {
	m.users--
	if m.users > 0 {
		return
	}
	delete(modules, m.key)
	if m.owned {
		_ = m.p.Finalize()
	}
}

// reinit finalises and initialises the library again, which drops every
// session and login of the process and, for a module behind a socket,
// reconnects. It is done only for a sole user that owns the library;
// others get false and must make do with new sessions. libMu must be held.
func (m *module) reinit() (bool, error) {
	if m.users != 1 || !m.owned {
		return false, nil
	}
	_ = m.p.Finalize()
	if err := m.p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return true, fmt.Errorf("hsm: re-initialise PKCS#11 module %s: %w", m.path, err)
	}
	return true, nil
}

// withModule runs f with the shared module for path. reinit re-initialises
// the library when no HSM handle of this process uses it (see
// module.reinit) and is a no-op otherwise.
func withModule(path string, f func(p *pkcs11.Ctx, reinit func() error) error) error {
	libMu.Lock()
	defer libMu.Unlock()
	m, err := openModule(path)
	if err != nil {
		return err
	}
	defer m.release()
	m.lockCalls()
	defer m.unlockCalls()
	return f(m.p, func() error {
		_, err := m.reinit()
		return err
	})
}
