// Package admins holds the platform administrators of API.md family 4
// (CZERTAINLY): their profiles and client certificates, the roster of
// their roles and enabled state, and the authentication of a client
// certificate as an administrator.
package admins

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// Administrators are the platform principals of API.md family 4. Each is
// one record (kind "admin" in store.PlatformTenant) holding the profile and
// the client certificate, with unique keys for the username and the
// certificate serial so that both are unique atomically on every backend.
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

// The record kinds of the family, in store.PlatformTenant.
const (
	RecordAdmin  = "admin"       // one per administrator
	RecordRoster = "adminroster" // the one roster, id adminRosterID
)

const (
	adminRosterID = "roster"

	maxUsernameLen    = 128
	maxNameLen        = 255
	maxEmailLen       = 254
	maxDescriptionLen = 1024
	rosterAttempts    = 32
)

// Service is the administrators' use cases over the core.
type Service struct {
	core *signer.Core
}

// New returns the service of the administrators kept by core.
func New(core *signer.Core) *Service { return &Service{core: core} }

// Family declares the administrators to the core: they need no index,
// quota, key or background task of it.
func Family() signer.Family { return signer.Family{Name: "admins"} }

// adminRecord is an administrator's stored profile.
type adminRecord struct {
	UUID        string `json:"uuid"`
	Username    string `json:"username"`
	Name        string `json:"name"`
	Surname     string `json:"surname"`
	Email       string `json:"email"`
	Description string `json:"description"`
	CertUUID    string `json:"certUuid"`
	CertDER     []byte `json:"certDer"`
	Serial      string `json:"serial"`
	Fingerprint string `json:"fingerprint"`
	CreatedBy   string `json:"createdBy,omitempty"`
}

func (a *adminRecord) unique() []string {
	return []string{usernameKey(a.Username), "serial:" + a.Serial}
}

// Usernames are unique regardless of case, so "Alice" cannot pose as "alice".
func usernameKey(u string) string { return "username:" + strings.ToLower(u) }

type rosterEntry struct {
	Role    string `json:"role"`
	Enabled bool   `json:"enabled"`
	Deleted bool   `json:"deleted,omitempty"`
}

type adminRoster struct {
	Admins map[string]rosterEntry `json:"admins"`
}

// entry returns an admin's state; an admin without an entry (its creation
// was interrupted) is a disabled administrator.
func (r *adminRoster) entry(id string) (rosterEntry, bool) {
	en, ok := r.Admins[id]
	if !ok {
		return rosterEntry{Role: signer.RoleAdministrator}, false
	}
	return en, true
}

func (r *adminRoster) enabledSupers() int {
	n := 0
	for _, en := range r.Admins {
		if !en.Deleted && en.Enabled && en.Role == signer.RoleSuperAdministrator {
			n++
		}
	}
	return n
}

func (r *adminRoster) live() int {
	n := 0
	for _, en := range r.Admins {
		if !en.Deleted {
			n++
		}
	}
	return n
}

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

func checkText(f *signer.FieldErrors, field, v string, required bool, max int) {
	switch {
	case strings.TrimSpace(v) == "":
		if required || v != "" {
			f.Add(field, v, "must not be empty")
		}
	case len(v) > max:
		f.Add(field, nil, "must be at most "+strconv.Itoa(max)+" bytes")
	case issuance.HasControl(v):
		f.Add(field, nil, "must not contain control characters")
	}
}

func checkUsername(f *signer.FieldErrors, v string) {
	switch {
	case v == "":
		f.Add("username", v, "must not be empty")
	case len(v) > maxUsernameLen:
		f.Add("username", nil, "must be at most "+strconv.Itoa(maxUsernameLen)+" bytes")
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		f.Add("username", v, "must not contain spaces or control characters")
	}
}

func checkEmail(f *signer.FieldErrors, v string, required bool) {
	if v == "" {
		if required {
			f.Add("email", v, "must not be empty")
		}
		return
	}
	a, err := mail.ParseAddress(v)
	if len(v) > maxEmailLen || err != nil || a.Name != "" || a.Address != v || !strings.Contains(a.Address[strings.LastIndexByte(a.Address, '@')+1:], ".") {
		f.Add("email", v, "must be a valid email address")
	}
}

func checkRole(f *signer.FieldErrors, v string) {
	if !slices.Contains(signer.PlatformRoles, v) {
		if v == "" {
			f.Add("role", v, "must not be empty; want administrator or superAdministrator")
			return
		}
		f.Add("role", v, "must be administrator or superAdministrator")
	}
}

// checkCertificate validates the certificate fields and returns the parsed
// certificate, or an error of kind not found for a certificateUuid.
func (s *Service) checkCertificate(f *signer.FieldErrors, b64, certUUID string, required bool) (*x509.Certificate, error) {
	switch {
	case b64 != "" && certUUID != "":
		f.Add("adminCertificate", nil, "give either adminCertificate or certificateUuid, not both")
	case certUUID != "":
		// Reported after the other fields validate: a 404 for the reference.
		return nil, &signer.Error{Kind: signer.KindNotFound, Msg: "Certificate " + signer.ShortID(certUUID) + " not found"}
	case b64 == "":
		if required {
			f.Add("adminCertificate", nil, "adminCertificate or certificateUuid is required")
		}
	default:
		c, err := ParseCertificate(b64)
		if err != nil {
			f.Add("adminCertificate", nil, err.Error())
			return nil, nil
		}
		if s.core.Now().After(c.NotAfter) {
			f.Add("adminCertificate", nil, "the certificate expired on "+c.NotAfter.UTC().Format(time.RFC3339))
			return nil, nil
		}
		return c, nil
	}
	return nil, nil
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

var errAdminExists = &signer.Error{Kind: signer.KindWrongState, Msg: "an administrator already exists; add more with POST /v1/admins as a superAdministrator"}

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

// insertAdminRecord creates the record, turning a taken username or serial
// into the CZERTAINLY "already exists" conflict. A key held by a record
// whose deletion was interrupted is reclaimed; so is, for a bootstrap, one
// held by a record whose creation was interrupted (otherwise a crash during
// the very first bootstrap would lock the certificate out for good).
func (s *Service) insertAdminRecord(ctx context.Context, rec *adminRecord, bootstrap bool) (*store.Record, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		sr := &store.Record{Kind: RecordAdmin, Tenant: store.PlatformTenant, ID: rec.UUID,
			Unique: rec.unique(), Fields: map[string]string{"username": strings.ToLower(rec.Username)}, Data: data}
		err := s.core.Store().Create(ctx, sr, store.WriteOpts{})
		if err == nil {
			return sr, nil
		}
		if !errors.Is(err, store.ErrExists) {
			return nil, signer.StoreErr(err, "administrator")
		}
		reclaimed, cerr := s.reclaimAdminKeys(ctx, rec, bootstrap)
		if cerr != nil {
			return nil, cerr
		}
		if !reclaimed || attempt >= 2 {
			return nil, s.duplicateAdmin(ctx, rec)
		}
	}
}

// duplicateAdmin names the taken key.
func (s *Service) duplicateAdmin(ctx context.Context, rec *adminRecord) error {
	if _, err := s.core.Store().GetByUnique(ctx, RecordAdmin, store.PlatformTenant, usernameKey(rec.Username)); err == nil {
		return &signer.Error{Kind: signer.KindConflict, Msg: "Admin with username " + rec.Username + " already exists."}
	}
	return &signer.Error{Kind: signer.KindConflict, Msg: "Admin with certificate serial number " + rec.Serial + " already exists."}
}

// reclaimAdminKeys removes records that hold rec's keys but are not live
// administrators, and reports whether it removed any.
func (s *Service) reclaimAdminKeys(ctx context.Context, rec *adminRecord, bootstrap bool) (bool, error) {
	r, _, err := s.loadRoster(ctx)
	if err != nil {
		return false, err
	}
	reclaimed := false
	for _, key := range rec.unique() {
		holder, err := s.core.Store().GetByUnique(ctx, RecordAdmin, store.PlatformTenant, key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, signer.StoreErr(err, "administrator")
		}
		en, ok := r.entry(holder.ID)
		switch {
		case ok && en.Deleted:
			// A deletion that stopped after its tombstone: finish it.
		case !ok && bootstrap:
			// A creation that stopped before its roster entry. Tombstone
			// it first, so that a creation still in flight cannot add the
			// entry once the record is gone; if its entry appeared
			// meanwhile, it is a live admin after all.
			id, tombstoned := holder.ID, false
			if err := s.mutateRoster(ctx, "removed", func(r *adminRoster) error {
				cur, has := r.Admins[id]
				if !has {
					r.Admins[id] = rosterEntry{Role: signer.RoleAdministrator, Deleted: true}
				}
				tombstoned = !has || cur.Deleted
				return nil
			}); err != nil {
				return false, err
			}
			if !tombstoned {
				continue
			}
		default:
			continue // a live administrator holds the key
		}
		if err := s.core.Store().Delete(ctx, RecordAdmin, store.PlatformTenant, holder.ID, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, signer.StoreErr(err, "administrator")
		}
		reclaimed = true
	}
	return reclaimed, nil
}

// loadRoster reads the roster; a missing one is empty (rec nil).
func (s *Service) loadRoster(ctx context.Context) (*adminRoster, *store.Record, error) {
	r := &adminRoster{Admins: map[string]rosterEntry{}}
	rec, err := s.core.Store().Get(ctx, RecordRoster, store.PlatformTenant, adminRosterID)
	if errors.Is(err, store.ErrNotFound) {
		return r, nil, nil
	}
	if err != nil {
		return nil, nil, signer.StoreErr(err, "administrator roster")
	}
	if err := json.Unmarshal(rec.Data, r); err != nil {
		return nil, nil, signer.StoreErr(err, "administrator roster")
	}
	if r.Admins == nil {
		r.Admins = map[string]rosterEntry{}
	}
	return r, rec, nil
}

// mutateRoster applies fn to the current roster and writes it back if no
// one else wrote in between, retrying otherwise. fn may run several times.
// A change that leaves no enabled superAdministrator where there was one
// is refused with a wrong-state error ("cannot be <verb>").
func (s *Service) mutateRoster(ctx context.Context, verb string, fn func(r *adminRoster) error) error {
	for attempt := 0; attempt < rosterAttempts; attempt++ {
		r, rec, err := s.loadRoster(ctx)
		if err != nil {
			return err
		}
		before := r.enabledSupers()
		if err := fn(r); err != nil {
			return err
		}
		if before > 0 && r.enabledSupers() == 0 {
			return &signer.Error{Kind: signer.KindWrongState, Msg: "the last enabled superAdministrator cannot be " + verb}
		}
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if rec == nil {
			err = s.core.Store().Create(ctx, &store.Record{Kind: RecordRoster, Tenant: store.PlatformTenant,
				ID: adminRosterID, Data: data}, store.WriteOpts{})
			if errors.Is(err, store.ErrExists) {
				signer.Backoff(attempt)
				continue
			}
		} else {
			rec.Data = data
			err = s.core.Store().Update(ctx, rec, store.WriteOpts{})
			if errors.Is(err, store.ErrVersionConflict) {
				signer.Backoff(attempt)
				continue
			}
		}
		return signer.StoreErr(err, "administrator roster")
	}
	return &signer.Error{Kind: signer.KindUnavailable, Msg: "too many concurrent administrator changes; retry"}
}

func decodeAdmin(sr *store.Record) (*adminRecord, error) {
	var a adminRecord
	if err := json.Unmarshal(sr.Data, &a); err != nil {
		return nil, signer.StoreErr(err, "administrator")
	}
	return &a, nil
}

func (s *Service) toAdmin(sr *store.Record, a *adminRecord, en rosterEntry) *Admin {
	out := &Admin{UUID: a.UUID, Username: a.Username, Name: a.Name, Surname: a.Surname,
		Email: a.Email, Description: a.Description, Enabled: en.Enabled, Role: en.Role,
		SerialNumber: a.Serial, Created: sr.Created, Updated: sr.Updated}
	if c, err := x509.ParseCertificate(a.CertDER); err == nil {
		out.Certificate = describeCertificate(c, a.CertUUID, s.core.Now())
	} else {
		out.Certificate = Certificate{UUID: a.CertUUID, SerialNumber: a.Serial, DER: a.CertDER,
			Fingerprint: a.Fingerprint, Status: "unknown"}
	}
	return out
}

// getAdmin reads one live administrator.
func (s *Service) getAdmin(ctx context.Context, id string) (*store.Record, *adminRecord, rosterEntry, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, nil, rosterEntry{}, adminNotFound(id)
	}
	sr, err := s.core.Store().Get(ctx, RecordAdmin, store.PlatformTenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, rosterEntry{}, adminNotFound(id)
	}
	if err != nil {
		return nil, nil, rosterEntry{}, signer.StoreErr(err, "administrator")
	}
	a, err := decodeAdmin(sr)
	if err != nil {
		return nil, nil, rosterEntry{}, err
	}
	r, _, err := s.loadRoster(ctx)
	if err != nil {
		return nil, nil, rosterEntry{}, err
	}
	en, _ := r.entry(id)
	if en.Deleted {
		return nil, nil, rosterEntry{}, adminNotFound(id)
	}
	return sr, a, en, nil
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

func (s *Service) updateAdminRecord(ctx context.Context, sr *store.Record, a *adminRecord) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	sr.Data = data
	sr.Unique = a.unique()
	err = s.core.Store().Update(ctx, sr, store.WriteOpts{})
	if errors.Is(err, store.ErrExists) {
		return &signer.Error{Kind: signer.KindConflict, Msg: "Admin with certificate serial number " + a.Serial + " already exists.", Err: err}
	}
	return signer.StoreErr(err, "administrator")
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

func (s *Service) deleteAdmins(ctx context.Context, ids []string, strict bool) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.mutateRoster(ctx, "deleted", func(r *adminRoster) error {
		for _, id := range ids {
			cur, _ := r.entry(id)
			if cur.Deleted {
				if strict {
					return adminNotFound(id)
				}
				continue
			}
			cur.Deleted, cur.Enabled = true, false
			r.Admins[id] = cur
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.core.Store().Delete(ctx, RecordAdmin, store.PlatformTenant, id, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrNotFound) {
			// The tombstone already hides it; the next create reclaims its keys.
			s.core.Log().Warn("administrator record not removed after its tombstone", "admin", id, "err", err)
		}
	}
	return nil
}

// knownAdmins keeps the ids of live administrators, each once.
func (s *Service) knownAdmins(ctx context.Context, ids []string) ([]string, error) {
	r, _, err := s.loadRoster(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if _, err := uuid.Parse(id); err != nil {
			continue
		}
		if en, _ := r.entry(id); en.Deleted {
			continue
		}
		_, err := s.core.Store().Get(ctx, RecordAdmin, store.PlatformTenant, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, signer.StoreErr(err, "administrator")
		}
		out = append(out, id)
	}
	return out, nil
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

func (s *Service) setEnabled(ctx context.Context, ids []string, enabled bool) error {
	if len(ids) == 0 {
		return nil
	}
	return s.mutateRoster(ctx, "disabled", func(r *adminRoster) error {
		for _, id := range ids {
			cur, _ := r.entry(id)
			if cur.Deleted {
				continue // deleted meanwhile: skipped like an unknown id
			}
			cur.Enabled = enabled
			r.Admins[id] = cur
		}
		return nil
	})
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
