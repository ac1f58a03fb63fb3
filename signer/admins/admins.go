// Package admins holds the platform administrators of API.md family 4
// (CZERTAINLY): their profiles and client certificates, the roster of
// their roles and enabled state, and the authentication of a client
// certificate as an administrator.
//
// Administrators are the platform principals. Each is one record
// (RecordAdmin in store.PlatformTenant) holding the profile and the client
// certificate, with unique keys for the username and the certificate
// serial so that both are unique atomically on every backend.
//
// Role and enabled state live elsewhere: in one roster record that every
// change of them rewrites with a version check. That makes "the last
// enabled superAdministrator cannot be disabled, demoted or deleted" one
// compare-and-swap, safe across replicas, which a check over many records
// could not be. Writes are ordered so the roster never names an enabled
// superAdministrator that does not exist:
//   - create: admin record, then roster entry (a crash in between leaves a
//     record without an entry, shown as a disabled administrator);
//   - delete: roster tombstone, then record (a tombstoned record is hidden
//     and its keys are reclaimed by the next create that needs them);
//   - an entry is only added for an id without one, so a tombstone can
//     never come back to life.
package admins

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// Service is the administrators' use cases over the core.
type Service struct {
	core *signer.Core
}

// New returns the service of the administrators kept by core.
func New(core *signer.Core) *Service { return &Service{core: core} }

// The reasons of the family's refusals (signer.Error.Reason). The
// CZERTAINLY envelope answers by kind alone; the reasons tell apart the
// refusals of one kind.
const (
	// ReasonLastSuperAdministrator: the change would leave no enabled
	// superAdministrator (wrong state).
	ReasonLastSuperAdministrator signer.Reason = "last_super_administrator"
	// ReasonBootstrapDone: a bootstrap without Recover while
	// administrators exist (wrong state).
	ReasonBootstrapDone signer.Reason = "bootstrap_done"
	// ReasonUsernameTaken, ReasonSerialTaken: another administrator holds
	// the username or the certificate serial (conflict).
	ReasonUsernameTaken signer.Reason = "username_taken"
	ReasonSerialTaken   signer.Reason = "serial_taken"
)

// Family declares the administrators to the core: they need no index,
// quota, key or background task of it.
func Family() signer.Family { return signer.Family{Name: "admins"} }

// Admin is an administrator as the API shows it.
type Admin struct {
	UUID         string
	Username     string
	Name         string
	Surname      string
	Email        string
	Description  string
	Enabled      bool
	Role         string
	SerialNumber string
	Certificate  Certificate
	Created      time.Time
	Updated      time.Time
}

// Input creates an administrator.
type Input struct {
	Username    string
	Name        string
	Surname     string
	Email       string
	Description string
	Role        string
	Enabled     bool
	// Certificate is the client certificate, base64 DER or PEM.
	Certificate string
	// CertificateUUID names a certificate hsmca already holds. No inventory
	// of such certificates exists yet, so any value is not found.
	CertificateUUID string
}

// Edit changes an administrator; nil fields and empty certificate
// fields keep the current value.
type Edit struct {
	Username        *string // must equal the current one if given
	Name            *string
	Surname         *string
	Email           *string
	Description     *string
	Role            *string
	Certificate     string
	CertificateUUID string
}

// BootstrapOptions tune BootstrapAdmin.
type BootstrapOptions struct {
	// Recover adds a superAdministrator even when administrators exist: the
	// way back in when the only superAdministrator's certificate is lost or
	// expired. Only the ops CLI, which can write the store anyway, sets it.
	Recover bool
	// ProfileOptional lets name, surname and email be empty (ops CLI).
	ProfileOptional bool
}

func adminNotFound(id string) error {
	return &signer.Error{Kind: signer.KindNotFound, Msg: "Admin " + signer.ShortID(id) + " not found"}
}

// Create adds an administrator (POST /v1/admins).
func (s *Service) Create(ctx context.Context, in Input) (*Admin, error) {
	op := s.core.Start(ctx, "", "ADMIN_CREATE")
	a, err := s.createAdmin(ctx, in, false, false, false)
	if err != nil {
		return nil, op.Done("", err)
	}
	return a, op.Done(a.UUID, nil)
}

// Bootstrap creates the first administrator, an enabled
// superAdministrator, while none exists (POST /v1/local/admins and
// `hsmca admin bootstrap`). With o.Recover it adds one in any case.
func (s *Service) Bootstrap(ctx context.Context, in Input, o BootstrapOptions) (*Admin, error) {
	op := s.core.Start(ctx, "", "ADMIN_BOOTSTRAP")
	if in.Role == "" {
		in.Role = signer.RoleSuperAdministrator
	}
	if in.Role != signer.RoleSuperAdministrator {
		var f signer.FieldErrors
		f.Add("role", in.Role, "the bootstrap administrator must be a superAdministrator")
		return nil, op.Done("", f.Err())
	}
	in.Enabled = true
	a, err := s.createAdmin(ctx, in, true, !o.Recover, o.ProfileOptional)
	if err != nil {
		return nil, op.Done("", err)
	}
	return a, op.Done(a.UUID, nil)
}

var errAdminExists = &signer.Error{Kind: signer.KindWrongState, Reason: ReasonBootstrapDone, Msg: "an administrator already exists; add more with POST /v1/admins as a superAdministrator"}

func (s *Service) createAdmin(ctx context.Context, in Input, bootstrap, onlyFirst, profileOptional bool) (*Admin, error) {
	var f signer.FieldErrors
	checkUsername(&f, in.Username)
	checkText(&f, "name", in.Name, !profileOptional, maxNameLen)
	checkText(&f, "surname", in.Surname, !profileOptional, maxNameLen)
	checkEmail(&f, in.Email, !profileOptional)
	checkRole(&f, in.Role)
	if in.Description != "" {
		checkText(&f, "description", in.Description, false, maxDescriptionLen)
	}
	cert, certErr := s.checkCertificate(&f, in.Certificate, in.CertificateUUID, true)
	if err := f.Err(); err != nil {
		return nil, err
	}
	if certErr != nil {
		return nil, certErr
	}
	if onlyFirst {
		// Checked again atomically below; this only keeps a refused
		// bootstrap from touching any record.
		if n, err := s.Count(ctx); err != nil {
			return nil, err
		} else if n > 0 {
			return nil, errAdminExists
		}
	}
	rec := &adminRecord{
		UUID: uuid.NewString(), Username: in.Username, Name: in.Name, Surname: in.Surname,
		Email: in.Email, Description: in.Description, CertUUID: uuid.NewString(),
		CertDER: cert.Raw, Serial: encoding.SerialHex(cert.SerialNumber), Fingerprint: encoding.Fingerprint(cert.Raw),
		CreatedBy: signer.CallerFrom(ctx).Principal,
	}
	stored, err := s.insertAdminRecord(ctx, rec, bootstrap)
	if err != nil {
		return nil, err
	}
	entry := rosterEntry{Role: in.Role, Enabled: in.Enabled}
	err = s.mutateRoster(ctx, "removed", func(r *adminRoster) error {
		if onlyFirst && r.live() > 0 {
			return errAdminExists
		}
		if _, ok := r.Admins[rec.UUID]; ok {
			// Only a concurrent delete of this very id can have written it.
			return adminNotFound(rec.UUID)
		}
		r.Admins[rec.UUID] = entry
		return nil
	})
	if err != nil {
		// Undo the record so it holds neither the username nor the serial.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if derr := s.core.Store().Delete(dctx, RecordAdmin, store.PlatformTenant, rec.UUID, store.WriteOpts{}); derr != nil && !errors.Is(derr, store.ErrNotFound) {
			s.core.Log().Error("administrator record left without roster entry", "admin", rec.UUID, "err", derr)
		}
		return nil, err
	}
	return s.toAdmin(stored, rec, entry), nil
}

// Get returns one administrator.
func (s *Service) Get(ctx context.Context, id string) (*Admin, error) {
	op := s.core.Start(ctx, "", "ADMIN_RETRIEVE")
	sr, a, en, err := s.getAdmin(ctx, id)
	if err != nil {
		return nil, op.Done(id, err)
	}
	return s.toAdmin(sr, a, en), op.Done(id, nil)
}

// List returns every administrator in creation order.
func (s *Service) List(ctx context.Context) ([]Admin, error) {
	op := s.core.Start(ctx, "", "ADMIN_RETRIEVE_LIST")
	out, err := s.list(ctx)
	return out, op.Done("", err)
}

func (s *Service) list(ctx context.Context) ([]Admin, error) {
	page, err := s.core.Store().List(ctx, store.Query{Kind: RecordAdmin, Tenant: store.PlatformTenant})
	if err != nil {
		return nil, signer.StoreErr(err, "administrator")
	}
	r, _, err := s.loadRoster(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Admin, 0, len(page.Records))
	for i := range page.Records {
		sr := &page.Records[i]
		a, err := decodeAdmin(sr)
		if err != nil {
			return nil, err
		}
		en, _ := r.entry(sr.ID)
		if en.Deleted {
			continue
		}
		out = append(out, *s.toAdmin(sr, a, en))
	}
	return out, nil
}

// Edit changes an administrator's profile, role or certificate; the
// username stays. A demotion of the last enabled superAdministrator is
// refused.
func (s *Service) Edit(ctx context.Context, id string, ed Edit) (*Admin, error) {
	op := s.core.Start(ctx, "", "ADMIN_UPDATE")
	a, err := s.edit(ctx, id, ed)
	return a, op.Done(id, err)
}

func (s *Service) edit(ctx context.Context, id string, ed Edit) (*Admin, error) {
	sr, a, en, err := s.getAdmin(ctx, id)
	if err != nil {
		return nil, err
	}
	var f signer.FieldErrors
	if ed.Username != nil && *ed.Username != a.Username {
		f.Add("username", *ed.Username, "cannot be changed")
	}
	if ed.Name != nil {
		checkText(&f, "name", *ed.Name, true, maxNameLen)
	}
	if ed.Surname != nil {
		checkText(&f, "surname", *ed.Surname, true, maxNameLen)
	}
	if ed.Email != nil {
		checkEmail(&f, *ed.Email, true)
	}
	if ed.Description != nil && *ed.Description != "" {
		checkText(&f, "description", *ed.Description, false, maxDescriptionLen)
	}
	if ed.Role != nil {
		checkRole(&f, *ed.Role)
	}
	cert, certErr := s.checkCertificate(&f, ed.Certificate, ed.CertificateUUID, false)
	if err := f.Err(); err != nil {
		return nil, err
	}
	if certErr != nil {
		return nil, certErr
	}
	next := *a
	if ed.Name != nil {
		next.Name = *ed.Name
	}
	if ed.Surname != nil {
		next.Surname = *ed.Surname
	}
	if ed.Email != nil {
		next.Email = *ed.Email
	}
	if ed.Description != nil {
		next.Description = *ed.Description
	}
	if cert != nil && encoding.Fingerprint(cert.Raw) != a.Fingerprint {
		next.CertDER, next.Serial, next.Fingerprint = cert.Raw, encoding.SerialHex(cert.SerialNumber), encoding.Fingerprint(cert.Raw)
		next.CertUUID = uuid.NewString()
	}
	newRole := en.Role
	if ed.Role != nil {
		newRole = *ed.Role
	}
	setRole := func(role string) func(r *adminRoster) error {
		return func(r *adminRoster) error {
			cur, _ := r.entry(id)
			if cur.Deleted {
				return adminNotFound(id)
			}
			cur.Role = role
			r.Admins[id] = cur
			return nil
		}
	}
	demote := en.Role == signer.RoleSuperAdministrator && newRole != signer.RoleSuperAdministrator
	// A demotion goes first, so a refusal changes nothing; a promotion
	// goes last, so a failed record write never leaves one behind.
	if demote {
		if err := s.mutateRoster(ctx, "demoted", setRole(newRole)); err != nil {
			return nil, err
		}
	}
	if err := s.updateAdminRecord(ctx, sr, &next); err != nil {
		if demote {
			if rerr := s.mutateRoster(context.WithoutCancel(ctx), "demoted", setRole(en.Role)); rerr != nil {
				s.core.Log().Error("administrator demotion not undone after a failed edit", "admin", id, "err", rerr)
			}
		}
		return nil, err
	}
	if !demote && newRole != en.Role {
		if err := s.mutateRoster(ctx, "demoted", setRole(newRole)); err != nil {
			return nil, err
		}
	}
	en.Role = newRole
	return s.toAdmin(sr, &next, en), nil
}

// Delete removes an administrator.
func (s *Service) Delete(ctx context.Context, id string) error {
	op := s.core.Start(ctx, "", "ADMIN_DELETE")
	if _, _, _, err := s.getAdmin(ctx, id); err != nil {
		return op.Done(id, err)
	}
	return op.Done(id, s.deleteAdmins(ctx, []string{id}, true))
}

// DeleteMany removes the administrators among ids, skipping unknown
// ones. It removes all or none: if the set holds every enabled
// superAdministrator, nothing is deleted.
func (s *Service) DeleteMany(ctx context.Context, ids []string) error {
	op := s.core.Start(ctx, "", "ADMIN_BULK_DELETE")
	known, err := s.knownAdmins(ctx, ids)
	if err != nil {
		return op.Done("", err)
	}
	return op.Done(strings.Join(known, ","), s.deleteAdmins(ctx, known, false))
}

// SetEnabled enables or disables one administrator.
func (s *Service) SetEnabled(ctx context.Context, id string, enabled bool) error {
	name := "ADMIN_DISABLE"
	if enabled {
		name = "ADMIN_ENABLE"
	}
	op := s.core.Start(ctx, "", name)
	if _, _, _, err := s.getAdmin(ctx, id); err != nil {
		return op.Done(id, err)
	}
	return op.Done(id, s.setEnabled(ctx, []string{id}, enabled))
}

// SetEnabledMany enables or disables the administrators among ids,
// skipping unknown ones, all or none.
func (s *Service) SetEnabledMany(ctx context.Context, ids []string, enabled bool) error {
	name := "ADMIN_BULK_DISABLE"
	if enabled {
		name = "ADMIN_BULK_ENABLE"
	}
	op := s.core.Start(ctx, "", name)
	known, err := s.knownAdmins(ctx, ids)
	if err != nil {
		return op.Done("", err)
	}
	return op.Done(strings.Join(known, ","), s.setEnabled(ctx, known, enabled))
}

var errAdminDenied = &signer.Error{Kind: signer.KindUnauthenticated, Msg: "unknown, disabled or expired administrator certificate"}

// Authenticate resolves a client certificate to an enabled
// administrator. The certificate must be the very one registered (same
// fingerprint, not only the same serial) and be within its validity.
// Every refusal is the same unauthenticated error.
func (s *Service) Authenticate(ctx context.Context, cert *x509.Certificate) (signer.Caller, error) {
	serial := encoding.SerialHex(cert.SerialNumber)
	refuse := func(reason string) (signer.Caller, error) {
		s.core.Log().Info("administrator certificate refused", "serial", serial, "reason", reason)
		return signer.Caller{}, errAdminDenied
	}
	if serial == "" {
		return refuse("no serial")
	}
	sr, err := s.core.Store().GetByUnique(ctx, RecordAdmin, store.PlatformTenant, "serial:"+serial)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("unknown serial")
	}
	if err != nil {
		return signer.Caller{}, signer.StoreErr(err, "administrator")
	}
	a, err := decodeAdmin(sr)
	if err != nil {
		return signer.Caller{}, err
	}
	if subtle.ConstantTimeCompare([]byte(a.Fingerprint), []byte(encoding.Fingerprint(cert.Raw))) != 1 {
		return refuse("certificate differs from the registered one")
	}
	now := s.core.Now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return refuse("certificate outside its validity")
	}
	r, _, err := s.loadRoster(ctx)
	if err != nil {
		return signer.Caller{}, err
	}
	en, ok := r.entry(a.UUID)
	if !ok || en.Deleted || !en.Enabled {
		return refuse("administrator disabled")
	}
	return signer.Caller{Principal: "admin:" + serial, Roles: []string{en.Role}}, nil
}

// Count counts live administrators (ops tooling).
func (s *Service) Count(ctx context.Context) (int, error) {
	r, _, err := s.loadRoster(ctx)
	if err != nil {
		return 0, err
	}
	return r.live(), nil
}
