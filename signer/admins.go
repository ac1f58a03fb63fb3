package signer

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

const (
	kindAdmin       = "admin"
	kindAdminRoster = "adminroster"
	adminRosterID   = "roster"

	maxUsernameLen    = 128
	maxNameLen        = 255
	maxEmailLen       = 254
	maxDescriptionLen = 1024
	rosterAttempts    = 32
)

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
		return rosterEntry{Role: RoleAdministrator}, false
	}
	return en, true
}

func (r *adminRoster) enabledSupers() int {
	n := 0
	for _, en := range r.Admins {
		if !en.Deleted && en.Enabled && en.Role == RoleSuperAdministrator {
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
	Certificate  AdminCertificate
	Created      time.Time
	Updated      time.Time
}

// AdminInput creates an administrator.
type AdminInput struct {
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

// AdminEdit changes an administrator; nil fields and empty certificate
// fields keep the current value.
type AdminEdit struct {
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
	return &Error{Kind: KindNotFound, Msg: "Admin " + shortID(id) + " not found"}
}

func checkText(f *fieldErrs, field, v string, required bool, max int) {
	switch {
	case strings.TrimSpace(v) == "":
		if required || v != "" {
			f.add(field, v, "must not be empty")
		}
	case len(v) > max:
		f.add(field, nil, "must be at most "+strconv.Itoa(max)+" bytes")
	case hasControl(v):
		f.add(field, nil, "must not contain control characters")
	}
}

func checkUsername(f *fieldErrs, v string) {
	switch {
	case v == "":
		f.add("username", v, "must not be empty")
	case len(v) > maxUsernameLen:
		f.add("username", nil, "must be at most "+strconv.Itoa(maxUsernameLen)+" bytes")
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		f.add("username", v, "must not contain spaces or control characters")
	}
}

func checkEmail(f *fieldErrs, v string, required bool) {
	if v == "" {
		if required {
			f.add("email", v, "must not be empty")
		}
		return
	}
	a, err := mail.ParseAddress(v)
	if len(v) > maxEmailLen || err != nil || a.Name != "" || a.Address != v || !strings.Contains(a.Address[strings.LastIndexByte(a.Address, '@')+1:], ".") {
		f.add("email", v, "must be a valid email address")
	}
}

func checkRole(f *fieldErrs, v string) {
	if !slices.Contains(PlatformRoles, v) {
		if v == "" {
			f.add("role", v, "must not be empty; want administrator or superAdministrator")
			return
		}
		f.add("role", v, "must be administrator or superAdministrator")
	}
}

// checkCertificate validates the certificate fields and returns the parsed
// certificate, or an error of kind not found for a certificateUuid.
func (e *Engine) checkCertificate(f *fieldErrs, b64, certUUID string, required bool) (*x509.Certificate, error) {
	switch {
	case b64 != "" && certUUID != "":
		f.add("adminCertificate", nil, "give either adminCertificate or certificateUuid, not both")
	case certUUID != "":
		// Reported after the other fields validate: a 404 for the reference.
		return nil, &Error{Kind: KindNotFound, Msg: "Certificate " + shortID(certUUID) + " not found"}
	case b64 == "":
		if required {
			f.add("adminCertificate", nil, "adminCertificate or certificateUuid is required")
		}
	default:
		c, err := ParseAdminCertificate(b64)
		if err != nil {
			f.add("adminCertificate", nil, err.Error())
			return nil, nil
		}
		if e.now().After(c.NotAfter) {
			f.add("adminCertificate", nil, "the certificate expired on "+c.NotAfter.UTC().Format(time.RFC3339))
			return nil, nil
		}
		return c, nil
	}
	return nil, nil
}

// CreateAdmin adds an administrator (POST /v1/admins).
func (e *Engine) CreateAdmin(ctx context.Context, in AdminInput) (*Admin, error) {
	var out *Admin
	err := e.run(ctx, "", "ADMIN_CREATE", func() (string, error) {
		a, err := e.createAdmin(ctx, in, false, false, false)
		if err != nil {
			return "", err
		}
		out = a
		return a.UUID, nil
	})
	return out, err
}

// BootstrapAdmin creates the first administrator, an enabled
// superAdministrator, while none exists (POST /v1/local/admins and
// `hsmca admin bootstrap`). With o.Recover it adds one in any case.
func (e *Engine) BootstrapAdmin(ctx context.Context, in AdminInput, o BootstrapOptions) (*Admin, error) {
	var out *Admin
	err := e.run(ctx, "", "ADMIN_BOOTSTRAP", func() (string, error) {
		if in.Role == "" {
			in.Role = RoleSuperAdministrator
		}
		if in.Role != RoleSuperAdministrator {
			var f fieldErrs
			f.add("role", in.Role, "the bootstrap administrator must be a superAdministrator")
			return "", f.err()
		}
		in.Enabled = true
		a, err := e.createAdmin(ctx, in, true, !o.Recover, o.ProfileOptional)
		if err != nil {
			return "", err
		}
		out = a
		return a.UUID, nil
	})
	return out, err
}

var errAdminExists = &Error{Kind: KindWrongState, Msg: "an administrator already exists; add more with POST /v1/admins as a superAdministrator"}

func (e *Engine) createAdmin(ctx context.Context, in AdminInput, bootstrap, onlyFirst, profileOptional bool) (*Admin, error) {
	var f fieldErrs
	checkUsername(&f, in.Username)
	checkText(&f, "name", in.Name, !profileOptional, maxNameLen)
	checkText(&f, "surname", in.Surname, !profileOptional, maxNameLen)
	checkEmail(&f, in.Email, !profileOptional)
	checkRole(&f, in.Role)
	if in.Description != "" {
		checkText(&f, "description", in.Description, false, maxDescriptionLen)
	}
	cert, certErr := e.checkCertificate(&f, in.Certificate, in.CertificateUUID, true)
	if err := f.err(); err != nil {
		return nil, err
	}
	if certErr != nil {
		return nil, certErr
	}
	if onlyFirst {
		// Checked again atomically below; this only keeps a refused
		// bootstrap from touching any record.
		if n, err := e.CountAdmins(ctx); err != nil {
			return nil, err
		} else if n > 0 {
			return nil, errAdminExists
		}
	}
	rec := &adminRecord{
		UUID: uuid.NewString(), Username: in.Username, Name: in.Name, Surname: in.Surname,
		Email: in.Email, Description: in.Description, CertUUID: uuid.NewString(),
		CertDER: cert.Raw, Serial: CertSerial(cert), Fingerprint: CertFingerprint(cert.Raw),
		CreatedBy: CallerFrom(ctx).Principal,
	}
	stored, err := e.insertAdminRecord(ctx, rec, bootstrap)
	if err != nil {
		return nil, err
	}
	entry := rosterEntry{Role: in.Role, Enabled: in.Enabled}
	err = e.mutateRoster(ctx, "removed", func(r *adminRoster) error {
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
		if derr := e.store.Delete(dctx, kindAdmin, store.PlatformTenant, rec.UUID, store.WriteOpts{}); derr != nil && !errors.Is(derr, store.ErrNotFound) {
			e.log.Error("administrator record left without roster entry", "admin", rec.UUID, "err", derr)
		}
		return nil, err
	}
	return e.toAdmin(stored, rec, entry), nil
}

// insertAdminRecord creates the record, turning a taken username or serial
// into the CZERTAINLY "already exists" conflict. A key held by a record
// whose deletion was interrupted is reclaimed; so is, for a bootstrap, one
// held by a record whose creation was interrupted (otherwise a crash during
// the very first bootstrap would lock the certificate out for good).
func (e *Engine) insertAdminRecord(ctx context.Context, rec *adminRecord, bootstrap bool) (*store.Record, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		sr := &store.Record{Kind: kindAdmin, Tenant: store.PlatformTenant, ID: rec.UUID,
			Unique: rec.unique(), Fields: map[string]string{"username": strings.ToLower(rec.Username)}, Data: data}
		err := e.store.Create(ctx, sr, store.WriteOpts{})
		if err == nil {
			return sr, nil
		}
		if !errors.Is(err, store.ErrExists) {
			return nil, storeErr(err, "administrator")
		}
		reclaimed, cerr := e.reclaimAdminKeys(ctx, rec, bootstrap)
		if cerr != nil {
			return nil, cerr
		}
		if !reclaimed || attempt >= 2 {
			return nil, e.duplicateAdmin(ctx, rec)
		}
	}
}

// duplicateAdmin names the taken key.
func (e *Engine) duplicateAdmin(ctx context.Context, rec *adminRecord) error {
	if _, err := e.store.GetByUnique(ctx, kindAdmin, store.PlatformTenant, usernameKey(rec.Username)); err == nil {
		return &Error{Kind: KindConflict, Msg: "Admin with username " + rec.Username + " already exists."}
	}
	return &Error{Kind: KindConflict, Msg: "Admin with certificate serial number " + rec.Serial + " already exists."}
}

// reclaimAdminKeys removes records that hold rec's keys but are not live
// administrators, and reports whether it removed any.
func (e *Engine) reclaimAdminKeys(ctx context.Context, rec *adminRecord, bootstrap bool) (bool, error) {
	r, _, err := e.loadRoster(ctx)
	if err != nil {
		return false, err
	}
	reclaimed := false
	for _, key := range rec.unique() {
		holder, err := e.store.GetByUnique(ctx, kindAdmin, store.PlatformTenant, key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, storeErr(err, "administrator")
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
			if err := e.mutateRoster(ctx, "removed", func(r *adminRoster) error {
				cur, has := r.Admins[id]
				if !has {
					r.Admins[id] = rosterEntry{Role: RoleAdministrator, Deleted: true}
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
		if err := e.store.Delete(ctx, kindAdmin, store.PlatformTenant, holder.ID, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, storeErr(err, "administrator")
		}
		reclaimed = true
	}
	return reclaimed, nil
}

// loadRoster reads the roster; a missing one is empty (rec nil).
func (e *Engine) loadRoster(ctx context.Context) (*adminRoster, *store.Record, error) {
	r := &adminRoster{Admins: map[string]rosterEntry{}}
	rec, err := e.store.Get(ctx, kindAdminRoster, store.PlatformTenant, adminRosterID)
	if errors.Is(err, store.ErrNotFound) {
		return r, nil, nil
	}
	if err != nil {
		return nil, nil, storeErr(err, "administrator roster")
	}
	if err := json.Unmarshal(rec.Data, r); err != nil {
		return nil, nil, storeErr(err, "administrator roster")
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
func (e *Engine) mutateRoster(ctx context.Context, verb string, fn func(r *adminRoster) error) error {
	for attempt := 0; attempt < rosterAttempts; attempt++ {
		r, rec, err := e.loadRoster(ctx)
		if err != nil {
			return err
		}
		before := r.enabledSupers()
		if err := fn(r); err != nil {
			return err
		}
		if before > 0 && r.enabledSupers() == 0 {
			return &Error{Kind: KindWrongState, Msg: "the last enabled superAdministrator cannot be " + verb}
		}
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if rec == nil {
			err = e.store.Create(ctx, &store.Record{Kind: kindAdminRoster, Tenant: store.PlatformTenant,
				ID: adminRosterID, Data: data}, store.WriteOpts{})
			if errors.Is(err, store.ErrExists) {
				backoff(attempt)
				continue
			}
		} else {
			rec.Data = data
			err = e.store.Update(ctx, rec, store.WriteOpts{})
			if errors.Is(err, store.ErrVersionConflict) {
				backoff(attempt)
				continue
			}
		}
		return storeErr(err, "administrator roster")
	}
	return &Error{Kind: KindUnavailable, Msg: "too many concurrent administrator changes; retry"}
}

func decodeAdmin(sr *store.Record) (*adminRecord, error) {
	var a adminRecord
	if err := json.Unmarshal(sr.Data, &a); err != nil {
		return nil, storeErr(err, "administrator")
	}
	return &a, nil
}

func (e *Engine) toAdmin(sr *store.Record, a *adminRecord, en rosterEntry) *Admin {
	out := &Admin{UUID: a.UUID, Username: a.Username, Name: a.Name, Surname: a.Surname,
		Email: a.Email, Description: a.Description, Enabled: en.Enabled, Role: en.Role,
		SerialNumber: a.Serial, Created: sr.Created, Updated: sr.Updated}
	if c, err := x509.ParseCertificate(a.CertDER); err == nil {
		out.Certificate = describeCertificate(c, a.CertUUID, e.now())
	} else {
		out.Certificate = AdminCertificate{UUID: a.CertUUID, SerialNumber: a.Serial, DER: a.CertDER,
			Fingerprint: a.Fingerprint, Status: "unknown"}
	}
	return out
}

// getAdmin reads one live administrator.
func (e *Engine) getAdmin(ctx context.Context, id string) (*store.Record, *adminRecord, rosterEntry, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, nil, rosterEntry{}, adminNotFound(id)
	}
	sr, err := e.store.Get(ctx, kindAdmin, store.PlatformTenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, rosterEntry{}, adminNotFound(id)
	}
	if err != nil {
		return nil, nil, rosterEntry{}, storeErr(err, "administrator")
	}
	a, err := decodeAdmin(sr)
	if err != nil {
		return nil, nil, rosterEntry{}, err
	}
	r, _, err := e.loadRoster(ctx)
	if err != nil {
		return nil, nil, rosterEntry{}, err
	}
	en, _ := r.entry(id)
	if en.Deleted {
		return nil, nil, rosterEntry{}, adminNotFound(id)
	}
	return sr, a, en, nil
}

// GetAdmin returns one administrator.
func (e *Engine) GetAdmin(ctx context.Context, id string) (*Admin, error) {
	var out *Admin
	err := e.run(ctx, "", "ADMIN_RETRIEVE", func() (string, error) {
		sr, a, en, err := e.getAdmin(ctx, id)
		if err != nil {
			return id, err
		}
		out = e.toAdmin(sr, a, en)
		return id, nil
	})
	return out, err
}

// ListAdmins returns every administrator in creation order.
func (e *Engine) ListAdmins(ctx context.Context) ([]Admin, error) {
	var out []Admin
	err := e.run(ctx, "", "ADMIN_RETRIEVE_LIST", func() (string, error) {
		page, err := e.store.List(ctx, store.Query{Kind: kindAdmin, Tenant: store.PlatformTenant})
		if err != nil {
			return "", storeErr(err, "administrator")
		}
		r, _, err := e.loadRoster(ctx)
		if err != nil {
			return "", err
		}
		out = make([]Admin, 0, len(page.Records))
		for i := range page.Records {
			sr := &page.Records[i]
			a, err := decodeAdmin(sr)
			if err != nil {
				return "", err
			}
			en, _ := r.entry(sr.ID)
			if en.Deleted {
				continue
			}
			out = append(out, *e.toAdmin(sr, a, en))
		}
		return "", nil
	})
	return out, err
}

// EditAdmin changes an administrator's profile, role or certificate; the
// username stays. A demotion of the last enabled superAdministrator is
// refused.
func (e *Engine) EditAdmin(ctx context.Context, id string, ed AdminEdit) (*Admin, error) {
	var out *Admin
	err := e.run(ctx, "", "ADMIN_UPDATE", func() (string, error) {
		sr, a, en, err := e.getAdmin(ctx, id)
		if err != nil {
			return id, err
		}
		var f fieldErrs
		if ed.Username != nil && *ed.Username != a.Username {
			f.add("username", *ed.Username, "cannot be changed")
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
		cert, certErr := e.checkCertificate(&f, ed.Certificate, ed.CertificateUUID, false)
		if err := f.err(); err != nil {
			return id, err
		}
		if certErr != nil {
			return id, certErr
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
		if cert != nil && CertFingerprint(cert.Raw) != a.Fingerprint {
			next.CertDER, next.Serial, next.Fingerprint = cert.Raw, CertSerial(cert), CertFingerprint(cert.Raw)
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
		demote := en.Role == RoleSuperAdministrator && newRole != RoleSuperAdministrator
		// A demotion goes first, so a refusal changes nothing; a promotion
		// goes last, so a failed record write never leaves one behind.
		if demote {
			if err := e.mutateRoster(ctx, "demoted", setRole(newRole)); err != nil {
				return id, err
			}
		}
		if err := e.updateAdminRecord(ctx, sr, &next); err != nil {
			if demote {
				if rerr := e.mutateRoster(context.WithoutCancel(ctx), "demoted", setRole(en.Role)); rerr != nil {
					e.log.Error("administrator demotion not undone after a failed edit", "admin", id, "err", rerr)
				}
			}
			return id, err
		}
		if !demote && newRole != en.Role {
			if err := e.mutateRoster(ctx, "demoted", setRole(newRole)); err != nil {
				return id, err
			}
		}
		en.Role = newRole
		out = e.toAdmin(sr, &next, en)
		return id, nil
	})
	return out, err
}

func (e *Engine) updateAdminRecord(ctx context.Context, sr *store.Record, a *adminRecord) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	sr.Data = data
	sr.Unique = a.unique()
	err = e.store.Update(ctx, sr, store.WriteOpts{})
	if errors.Is(err, store.ErrExists) {
		return &Error{Kind: KindConflict, Msg: "Admin with certificate serial number " + a.Serial + " already exists.", Err: err}
	}
	return storeErr(err, "administrator")
}

// DeleteAdmin removes an administrator.
func (e *Engine) DeleteAdmin(ctx context.Context, id string) error {
	return e.run(ctx, "", "ADMIN_DELETE", func() (string, error) {
		if _, _, _, err := e.getAdmin(ctx, id); err != nil {
			return id, err
		}
		return id, e.deleteAdmins(ctx, []string{id}, true)
	})
}

// DeleteAdmins removes the administrators among ids, skipping unknown
// ones. It removes all or none: if the set holds every enabled
// superAdministrator, nothing is deleted.
func (e *Engine) DeleteAdmins(ctx context.Context, ids []string) error {
	return e.run(ctx, "", "ADMIN_BULK_DELETE", func() (string, error) {
		known, err := e.knownAdmins(ctx, ids)
		if err != nil {
			return "", err
		}
		return strings.Join(known, ","), e.deleteAdmins(ctx, known, false)
	})
}

func (e *Engine) deleteAdmins(ctx context.Context, ids []string, strict bool) error {
	if len(ids) == 0 {
		return nil
	}
	err := e.mutateRoster(ctx, "deleted", func(r *adminRoster) error {
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
		if err := e.store.Delete(ctx, kindAdmin, store.PlatformTenant, id, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrNotFound) {
			// The tombstone already hides it; the next create reclaims its keys.
			e.log.Warn("administrator record not removed after its tombstone", "admin", id, "err", err)
		}
	}
	return nil
}

// knownAdmins keeps the ids of live administrators, each once.
func (e *Engine) knownAdmins(ctx context.Context, ids []string) ([]string, error) {
	r, _, err := e.loadRoster(ctx)
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
		_, err := e.store.Get(ctx, kindAdmin, store.PlatformTenant, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, storeErr(err, "administrator")
		}
		out = append(out, id)
	}
	return out, nil
}

// SetAdminEnabled enables or disables one administrator.
func (e *Engine) SetAdminEnabled(ctx context.Context, id string, enabled bool) error {
	name := "ADMIN_DISABLE"
	if enabled {
		name = "ADMIN_ENABLE"
	}
	return e.run(ctx, "", name, func() (string, error) {
		if _, _, _, err := e.getAdmin(ctx, id); err != nil {
			return id, err
		}
		return id, e.setEnabled(ctx, []string{id}, enabled)
	})
}

// SetAdminsEnabled enables or disables the administrators among ids,
// skipping unknown ones, all or none.
func (e *Engine) SetAdminsEnabled(ctx context.Context, ids []string, enabled bool) error {
	name := "ADMIN_BULK_DISABLE"
	if enabled {
		name = "ADMIN_BULK_ENABLE"
	}
	return e.run(ctx, "", name, func() (string, error) {
		known, err := e.knownAdmins(ctx, ids)
		if err != nil {
			return "", err
		}
		return strings.Join(known, ","), e.setEnabled(ctx, known, enabled)
	})
}

func (e *Engine) setEnabled(ctx context.Context, ids []string, enabled bool) error {
	if len(ids) == 0 {
		return nil
	}
	return e.mutateRoster(ctx, "disabled", func(r *adminRoster) error {
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

var errAdminDenied = &Error{Kind: KindUnauthenticated, Msg: "unknown, disabled or expired administrator certificate"}

// AuthenticateAdmin resolves a client certificate to an enabled
// administrator. The certificate must be the very one registered (same
// fingerprint, not only the same serial) and be within its validity.
// Every refusal is the same unauthenticated error.
func (e *Engine) AuthenticateAdmin(ctx context.Context, cert *x509.Certificate) (Caller, error) {
	serial := CertSerial(cert)
	refuse := func(reason string) (Caller, error) {
		e.log.Info("administrator certificate refused", "serial", serial, "reason", reason)
		return Caller{}, errAdminDenied
	}
	if serial == "" {
		return refuse("no serial")
	}
	sr, err := e.store.GetByUnique(ctx, kindAdmin, store.PlatformTenant, "serial:"+serial)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("unknown serial")
	}
	if err != nil {
		return Caller{}, storeErr(err, "administrator")
	}
	a, err := decodeAdmin(sr)
	if err != nil {
		return Caller{}, err
	}
	if subtle.ConstantTimeCompare([]byte(a.Fingerprint), []byte(CertFingerprint(cert.Raw))) != 1 {
		return refuse("certificate differs from the registered one")
	}
	now := e.now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return refuse("certificate outside its validity")
	}
	r, _, err := e.loadRoster(ctx)
	if err != nil {
		return Caller{}, err
	}
	en, ok := r.entry(a.UUID)
	if !ok || en.Deleted || !en.Enabled {
		return refuse("administrator disabled")
	}
	return Caller{Principal: "admin:" + serial, Roles: []string{en.Role}}, nil
}

// CountAdmins counts live administrators (ops tooling).
func (e *Engine) CountAdmins(ctx context.Context) (int, error) {
	r, _, err := e.loadRoster(ctx)
	if err != nil {
		return 0, err
	}
	return r.live(), nil
}
