package hsm

import (
	"errors"
	"fmt"
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
	p     *pkcs11.Ctx
	users int
	// owned: this process initialised the library (it was not already
	// initialised by something outside the registry), so it finalises it.
	owned bool
}

var modules = map[string]*module{}

// loaded keeps every library this process has loaded, initialised or not:
// a library is never unloaded. Unloading and loading again is not safe for
// every module (opencryptoki's, in a process that also holds libstdc++,
// crashes in C_Initialize the second time), and a loaded library costs
// little.
var loaded = map[string]*pkcs11.Ctx{}

// openModule returns the shared module for path, loading and initialising
// it on first use. Call release when done. libMu must be held.
func openModule(path string) (*module, error) {
	if path == "" {
		return nil, errors.New("hsm: no PKCS#11 module given")
	}
	if m := modules[path]; m != nil {
		m.users++
		return m, nil
	}
	p := loaded[path]
	if p == nil {
		if p = pkcs11.New(path); p == nil {
			return nil, fmt.Errorf("hsm: cannot load PKCS#11 module %s", path)
		}
		loaded[path] = p
	}
	m := &module{path: path, p: p, users: 1, owned: true}
	switch err := p.Initialize(); {
	case err == nil:
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
		m.owned = false
	default:
		return nil, fmt.Errorf("hsm: PKCS#11 module %s did not initialise (for SoftHSM2: does SOFTHSM2_CONF name a readable config whose token directory exists?): %w", path, err)
	}
	modules[path] = m
	return m, nil
}

// release drops one user; the last one finalises the library (which stays
// loaded). libMu must be held.
func (m *module) release() {
	m.users--
	if m.users > 0 {
		return
	}
	delete(modules, m.path)
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
	return f(m.p, func() error {
		_, err := m.reinit()
		return err
	})
}
