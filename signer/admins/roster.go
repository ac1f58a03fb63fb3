package admins

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// adminRosterID is the roster record's id; rosterAttempts bounds the
// retries of one roster change under contention.
const (
	adminRosterID  = "roster"
	rosterAttempts = 32
)

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
			return &signer.Error{Kind: signer.KindWrongState, Reason: ReasonLastSuperAdministrator, Msg: "the last enabled superAdministrator cannot be " + verb}
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
