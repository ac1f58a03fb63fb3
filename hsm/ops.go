package hsm

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/miekg/pkcs11"
)

// maxPINFile bounds what ReadPIN reads, so pointing it at the wrong file
// fails instead of sending a large file to the token as a PIN.
const maxPINFile = 1024

// ReadPIN reads a PIN from file (trailing line breaks removed) or, when
// file is empty, from the environment variable envVar. A PIN file others
// can read is accepted with a warning. Errors never contain the PIN.
func ReadPIN(file, envVar string) (string, error) {
	switch {
	case file != "":
		fi, err := os.Stat(file)
		if err != nil {
			return "", fmt.Errorf("hsm: PIN file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("hsm: PIN file %s is not a regular file", file)
		}
		if fi.Size() > maxPINFile {
			return "", fmt.Errorf("hsm: PIN file %s is larger than %d bytes; is it the right file?", file, maxPINFile)
		}
		if fi.Mode().Perm()&0o004 != 0 {
			slog.Warn("PIN file is readable by every user; chmod 600 it", "file", file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("hsm: PIN file: %w", err)
		}
		pin := strings.TrimRight(string(b), "\r\n")
		clear(b)
		if pin == "" {
			return "", fmt.Errorf("hsm: PIN file %s is empty", file)
		}
		return pin, nil
	case envVar != "":
		pin := strings.TrimRight(os.Getenv(envVar), "\r\n")
		if pin == "" {
			return "", fmt.Errorf("hsm: environment variable %s holds no PIN", envVar)
		}
		return pin, nil
	}
	return "", errors.New("hsm: no PIN source: give a PIN file or an environment variable")
}

// SlotInfo describes a slot and its token.
type SlotInfo struct {
	ID           uint
	Description  string
	TokenPresent bool
	Initialized  bool
	Label        string
	Manufacturer string
	Model        string
	Serial       string
}

func readSlots(p *pkcs11.Ctx) ([]SlotInfo, error) {
	ids, err := p.GetSlotList(false)
	if err != nil {
		return nil, fmt.Errorf("hsm: list slots: %w", err)
	}
	out := make([]SlotInfo, 0, len(ids))
	for _, id := range ids {
		si, err := p.GetSlotInfo(id)
		if err != nil {
			return nil, fmt.Errorf("hsm: slot %d: %w", id, err)
		}
		s := SlotInfo{ID: id, Description: strings.TrimSpace(si.SlotDescription), TokenPresent: si.Flags&pkcs11.CKF_TOKEN_PRESENT != 0}
		if s.TokenPresent {
			ti, err := p.GetTokenInfo(id)
			if err != nil {
				return nil, fmt.Errorf("hsm: token in slot %d: %w", id, err)
			}
			s.Initialized = ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0
			s.Label = strings.TrimRight(ti.Label, " \x00")
			s.Manufacturer = strings.TrimSpace(ti.ManufacturerID)
			s.Model = strings.TrimSpace(ti.Model)
			s.Serial = strings.TrimSpace(ti.SerialNumber)
		}
		out = append(out, s)
	}
	return out, nil
}

// ListSlots lists the slots of a PKCS#11 module and their tokens. It needs
// no PIN. While an HSM handle is open in this process the module reports
// the slots as they were when it was initialised.
func ListSlots(module string) ([]SlotInfo, error) {
	var out []SlotInfo
	err := withModule(module, func(p *pkcs11.Ctx, _ func() error) (err error) {
		out, err = readSlots(p)
		return err
	})
	return out, err
}

// InitToken initialises the token in slot (or, if slot is nil, in the
// first slot whose token is not initialised: SoftHSM2 always offers one),
// labels it, sets the SO PIN and then the user PIN. It refuses a label
// some initialised token already has, and refuses to re-initialise a
// token. It returns the token's slot id. SoftHSM2 moves an initialised
// token to a new slot when the library is next initialised; InitToken
// reports that new slot when no HSM handle is open in this process (the
// usual case: the ops CLI), and the slot as the live library sees it
// otherwise. Select tokens by label to stay clear of this.
func InitToken(module string, slot *uint, label, soPIN, userPIN string) (uint, error) {
	switch {
	case label == "":
		return 0, errors.New("hsm: init token: empty label")
	case len(label) > 32:
		return 0, fmt.Errorf("hsm: init token: label %q is longer than 32 bytes", label)
	case soPIN == "":
		return 0, errors.New("hsm: init token: empty SO PIN")
	case userPIN == "":
		return 0, errors.New("hsm: init token: empty user PIN")
	}
	var id uint
	err := withModule(module, func(p *pkcs11.Ctx, reinit func() error) error {
		slots, err := readSlots(p)
		if err != nil {
			return err
		}
		var target *SlotInfo
		for i, s := range slots {
			if s.Initialized && s.Label == label {
				return fmt.Errorf("hsm: init token: a token labelled %q already exists in slot %d", label, s.ID)
			}
			if slot == nil && target == nil && s.TokenPresent && !s.Initialized {
				target = &slots[i]
			}
			if slot != nil && s.ID == *slot {
				target = &slots[i]
			}
		}
		switch {
		case target == nil && slot == nil:
			return errors.New("hsm: init token: no slot holds an uninitialised token")
		case target == nil:
			return fmt.Errorf("hsm: init token: no slot %d", *slot)
		case !target.TokenPresent:
			return fmt.Errorf("hsm: init token: slot %d holds no token", target.ID)
		case target.Initialized:
			return fmt.Errorf("hsm: init token: the token in slot %d is already initialised (label %q); refusing to erase it", target.ID, target.Label)
		}
		id = target.ID
		if err := p.InitToken(id, soPIN, label); err != nil {
			return fmt.Errorf("hsm: init token in slot %d: C_InitToken: %w", id, err)
		}
		if err := setUserPIN(p, id, soPIN, userPIN); err != nil {
			return err
		}
		// Find where the token lives once the module rescans its slots.
		if err := reinit(); err != nil {
			return err
		}
		slots, err = readSlots(p)
		if err != nil {
			return err
		}
		for _, s := range slots {
			if s.Initialized && s.Label == label {
				id = s.ID
				return nil
			}
		}
		return fmt.Errorf("hsm: init token: token %q not found after initialising it", label)
	})
	return id, err
}

// setUserPIN logs in as SO on the freshly initialised token and sets the
// user PIN.
func setUserPIN(p *pkcs11.Ctx, slot uint, soPIN, userPIN string) error {
	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("hsm: init token in slot %d: C_OpenSession: %w", slot, err)
	}
	defer func() { _ = p.CloseSession(s) }()
	if err := p.Login(s, pkcs11.CKU_SO, soPIN); err != nil {
		return fmt.Errorf("hsm: init token in slot %d: SO login: %w", slot, err)
	}
	defer func() { _ = p.Logout(s) }()
	if err := p.InitPIN(s, userPIN); err != nil {
		return fmt.Errorf("hsm: init token in slot %d: C_InitPIN: %w", slot, err)
	}
	return nil
}
