package hsm

import (
	"context"
	"strings"
	"time"

	"github.com/miekg/pkcs11"
)

// Session copies.
//
// SoftHSM2 keeps token objects in files and, each time a signature reads
// its key, checks the key's file against changes by other processes:
// about twenty system calls (open, lock, read, close, twice over) per
// C_SignInit + C_Sign. A session object is held in memory alone. So on
// SoftHSM2 each key signs through a copy of its private key object made
// with C_CopyObject as a session object (CKA_TOKEN false): the copy is
// made inside the token, keeps every attribute of the original (it stays
// sensitive and unextractable; a key with CKA_COPYABLE false is refused
// and signs as before), and is gone when its session closes. A third
// less time per signature on SoftHSM2 (BenchmarkSignSessionCopy).
//
// The copy is made on the login session, which lives as long as the
// backend: a work session can be closed after any failed call, and its
// session objects with it. It carries CKA_ID copyIDPrefix + id, so no
// lookup of a key by id, no listing and no sweep ever takes it for the
// key itself.
//
// The copy must not outlive its key. Delete destroys it first. A key
// destroyed by another process (a replica sharing the token) is found
// gone by the next signature after copyRecheck: every copy is checked
// against its token object that often, and destroyed with it. A copy
// whose handle stops working (its session closed under it) is dropped,
// and the key signs with its token object until the sessions are next
// rebuilt.

// The values of Config.SessionCopies.
const (
	CopiesAuto = "auto"
	CopiesOn   = "on"
	CopiesOff  = "off"
)

// copyIDPrefix starts the CKA_ID of every session copy: a NUL byte no id
// hsmca gives a key begins with.
const copyIDPrefix = "\x00hsmca-session-copy\x00"

// maxCopies bounds the session copies of one backend; keys past it sign
// with their token objects.
var maxCopies int64 = 1024

// copyRecheck is how long a session copy is used before its token object
// is looked up again.
var copyRecheck = 10 * time.Second

// softHSMManufacturer is SoftHSM2's CK_TOKEN_INFO manufacturerID.
const softHSMManufacturer = "SoftHSM project"

// copiesWanted decides, at login, whether keys sign through session
// copies on the token described by ti (tiErr: it could not be read).
func (h *HSM) copiesWanted(ti pkcs11.TokenInfo, tiErr error) bool {
	switch h.cfg.SessionCopies {
	case CopiesOn:
		return true
	case CopiesOff:
		return false
	}
	return tiErr == nil && strings.TrimSpace(ti.ManufacturerID) == softHSMManufacturer
}

// isCopyID reports whether a CKA_ID is a session copy's.
func isCopyID(id []byte) bool { return strings.HasPrefix(string(id), copyIDPrefix) }

// makeCopy copies the private key object priv of key id as a session
// object on b's login session. It returns 0 when no copy was made (too
// many copies, or the token refused): the key then signs with priv.
func (h *HSM) makeCopy(ctx context.Context, b *backend, id string, priv pkcs11.ObjectHandle) pkcs11.ObjectHandle {
	if b.copyCount.Add(1) > maxCopies {
		b.copyCount.Add(-1)
		return 0
	}
	var obj pkcs11.ObjectHandle
	err := b.run(ctx, h.cfg.CallTimeout, "C_CopyObject", func(p *pkcs11.Ctx, _ pkcs11.SessionHandle) (err error) {
		b.loginMu.Lock()
		defer b.loginMu.Unlock()
		obj, err = p.CopyObject(b.login, priv, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(copyIDPrefix+id)),
		})
		return err
	})
	if err != nil {
		b.copyCount.Add(-1)
		h.log.Debug("no session copy of the key; it signs with its token object", "key", id, "error", err)
		return 0
	}
	return obj
}

// dropCopy destroys a session copy made by makeCopy on b.
func (h *HSM) dropCopy(ctx context.Context, b *backend, obj pkcs11.ObjectHandle) {
	err := b.run(ctx, h.cfg.CallTimeout, "C_DestroyObject", func(p *pkcs11.Ctx, _ pkcs11.SessionHandle) error {
		b.loginMu.Lock()
		defer b.loginMu.Unlock()
		return p.DestroyObject(b.login, obj)
	})
	if err == nil || isHandleInvalid(err) {
		b.copyCount.Add(-1)
	}
}
