package admins

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// The record kinds of the family, in store.PlatformTenant.
const (
	RecordAdmin  = "admin"       // one per administrator
	RecordRoster = "adminroster" // the one roster, id adminRosterID
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
		return &signer.Error{Kind: signer.KindConflict, Reason: ReasonUsernameTaken, Msg: "Admin with username " + rec.Username + " already exists."}
	}
	return &signer.Error{Kind: signer.KindConflict, Reason: ReasonSerialTaken, Msg: "Admin with certificate serial number " + rec.Serial + " already exists."}
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

func (s *Service) updateAdminRecord(ctx context.Context, sr *store.Record, a *adminRecord) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	sr.Data = data
	sr.Unique = a.unique()
	err = s.core.Store().Update(ctx, sr, store.WriteOpts{})
	if errors.Is(err, store.ErrExists) {
		return &signer.Error{Kind: signer.KindConflict, Reason: ReasonSerialTaken, Msg: "Admin with certificate serial number " + a.Serial + " already exists.", Err: err}
	}
	return signer.StoreErr(err, "administrator")
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
