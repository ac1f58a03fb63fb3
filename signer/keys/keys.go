// Package keys is hsmca's own keys API (/v1/keys): raw keys generated in
// the HSM, and signing with any key the tenant owns, including keys that
// other families' records own (signer.KeyOwner). Its records are the
// "key" kind; sign.go holds signing and verification.
package keys

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// RecordKey is the record kind of a key of this API. Its record owns the
// key (signer.KeyField) and carries the owner fields signer.KeyOwner
// describes.
const RecordKey = "key"

// QuotaKeys is the per-tenant quota resource of this API's keys.
const QuotaKeys = "keys"

// Key states as the keys API shows them.
const (
	StateEnabled  = "enabled"
	StateDisabled = signer.KeyStateDisabled
)

// The reasons of the keys API's refusals. The native envelope answers
// them by their kind alone; they tell the refusals apart for callers in
// Go.
const (
	// ReasonQuota: the tenant's quota of keys is used up.
	ReasonQuota signer.Reason = "quota.keys"
	// ReasonOwned: the key belongs to another family's record, which
	// manages its life.
	ReasonOwned signer.Reason = "key.owned"
	// ReasonDisabled: the key is disabled and may not sign.
	ReasonDisabled signer.Reason = "key.disabled"
)

const (
	maxKeyLabel = 128
	// listMax bounds one page of GET /v1/keys.
	listMax = 1000
	// maxRetry bounds the retries of a state change after a concurrent
	// write.
	maxRetry = 5
)

// Family declares what the core needs of the keys API: its quota and its
// record kind as the first key owner (an id resolves to a key of this API
// before one of any other family).
func Family() signer.Family {
	return signer.Family{
		Name:      "keys",
		Quotas:    []signer.QuotaDefault{{Resource: QuotaKeys, Default: 1000}},
		KeyOwners: []signer.KeyOwner{{RecordKind: RecordKey}},
	}
}

// Service is the keys API over a core.
type Service struct {
	core  *signer.Core
	known signer.Known[knownKey] // keys signed with lately (Sign)
}

// New returns the keys API of core.
func New(core *signer.Core) *Service { return &Service{core: core} }

// Key is a key as the keys API shows it.
type Key struct {
	ID        string
	Label     string
	Algorithm string // hsm.Algorithm name; imported keys may carry RSA<bits>
	State     string // enabled or disabled
	// Owner is the kind of record that owns the key: "key" for keys of
	// this API, "apig_certificate" for an APIG certificate's imported key.
	Owner             string
	Created           time.Time
	PublicKeyPEM      string
	PublicKeyJWK      map[string]any
	SigningAlgorithms []string

	pub crypto.PublicKey
}

// keyData is the Data of a "key" record. The public key is kept so that
// reading a key needs no HSM call.
type keyData struct {
	Label        string `json:"label,omitempty"`
	Algorithm    string `json:"algorithm"`
	PublicKeyPEM string `json:"publicKeyPem"`
	CreatedBy    string `json:"createdBy,omitempty"`
}

// Create generates a key in the HSM and records it, taking one unit of
// the tenant's keys quota in the same atomic step.
func (s *Service) Create(ctx context.Context, tenant, algorithm, label string) (*Key, error) {
	op := s.core.Start(ctx, tenant, "KEY_CREATE")
	k, id, err := s.create(ctx, tenant, algorithm, label)
	return k, op.Done(id, err)
}

func (s *Service) create(ctx context.Context, tenant, algorithm, label string) (*Key, string, error) {
	alg, err := hsm.ParseAlgorithm(algorithm)
	if err != nil {
		msg := "must be one of " + s.algorithmNames()
		if s.algorithmNames() == "none" {
			msg = "the HSM token offers no key algorithm"
		}
		return nil, "", signer.Invalid("algorithm", algorithm, msg)
	}
	if err := checkLabel(label); err != nil {
		return nil, "", err
	}
	// A token without the algorithm is refused before the quota is read
	// and anything is written.
	if err := s.core.Supports(alg); err != nil {
		return nil, "", signer.Unsupported(err, "", "algorithm", algorithm, "it offers "+s.algorithmNames())
	}
	// Generating a key is slow and serialised in SoftHSM2: refuse early
	// when the quota is plainly used up. The reservation in CommitKey
	// below is what actually enforces it.
	limit, err := s.core.QuotaFree(ctx, tenant, QuotaKeys)
	if signer.KindOf(err) == signer.KindQuotaExceeded {
		return nil, "", quotaErr(limit, nil)
	}
	if err != nil {
		return nil, "", err
	}
	id := uuid.NewString()
	nk, err := s.core.GenerateKey(ctx, tenant, RecordKey, id, alg)
	if err != nil {
		return nil, id, err
	}
	pubPEM, err := encoding.PublicKeyPEM(nk.Signer.Public())
	if err != nil {
		s.core.AbandonKey(nk)
		return nil, id, internal(err)
	}
	data, _ := json.Marshal(keyData{Label: label, Algorithm: alg.String(), PublicKeyPEM: pubPEM,
		CreatedBy: signer.CallerFrom(ctx).Principal})
	rec := &store.Record{Kind: RecordKey, Tenant: tenant, ID: id, Data: data, Fields: map[string]string{
		signer.KeyAlgorithmField: alg.String(), signer.KeyStateField: StateEnabled,
	}}
	// Only a definite refusal proves the record is not there; after a
	// timeout it may have been written, and the key's intent then settles
	// it at the next reconciliation instead of destroying a key that a
	// record may own.
	err = s.core.CommitKey(ctx, rec, nk, store.WriteOpts{Quota: &store.Quota{Resource: QuotaKeys, Limit: limit}})
	if errors.Is(err, store.ErrQuotaExceeded) {
		return nil, id, quotaErr(limit, err)
	}
	if err != nil {
		return nil, id, signer.StoreErr(err, "key")
	}
	k, err := s.view(ctx, rec)
	return k, id, err
}

// algorithmNames lists the key algorithms the token offers, for
// messages: "EC256, EC384, ...", or "none" for a token that has none.
func (s *Service) algorithmNames() string {
	names := make([]string, 0, 7)
	for _, a := range s.core.Algorithms(hsm.AllAlgorithms()) {
		names = append(names, string(a))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func quotaErr(limit int64, cause error) error {
	return &signer.Error{Kind: signer.KindQuotaExceeded, Reason: ReasonQuota, Err: cause,
		Msg: fmt.Sprintf("the tenant's quota of %d keys is used up; delete a key first", limit)}
}

// internal hides a cause that no caller can act on.
func internal(err error) error {
	return &signer.Error{Kind: signer.KindInternal, Msg: "internal error", Err: err}
}

func checkLabel(label string) error {
	if len(label) > maxKeyLabel {
		return signer.Invalid("label", nil, fmt.Sprintf("must be at most %d bytes", maxKeyLabel))
	}
	for _, r := range label {
		if !unicode.IsPrint(r) {
			return signer.Invalid("label", label, "must be printable text")
		}
	}
	return nil
}

// Page is one page of GET /v1/keys.
type Page struct {
	Keys       []Key
	NextCursor string
}

// List lists the tenant's keys of this API in creation order. Keys that
// other families' records own are not listed (each family lists what it
// created) but can be read and used by id.
func (s *Service) List(ctx context.Context, tenant string, limit int, cursor string) (*Page, error) {
	op := s.core.Start(ctx, tenant, "KEY_RETRIEVE_LIST")
	p, err := s.list(ctx, tenant, limit, cursor)
	return p, op.Done("", err)
}

func (s *Service) list(ctx context.Context, tenant string, limit int, cursor string) (*Page, error) {
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > listMax {
		return nil, signer.QueryInvalid("limit", limit, fmt.Sprintf("must be from 1 to %d", listMax))
	}
	page, err := s.core.Store().List(ctx, store.Query{Kind: RecordKey, Tenant: tenant, Limit: limit, Cursor: cursor})
	if errors.Is(err, store.ErrInvalid) {
		return nil, signer.QueryInvalid("cursor", cursor, "not a cursor of this list")
	}
	if err != nil {
		return nil, signer.StoreErr(err, "key")
	}
	out := &Page{Keys: make([]Key, 0, len(page.Records)), NextCursor: page.NextCursor}
	for i := range page.Records {
		k, err := s.view(ctx, &page.Records[i])
		if err != nil {
			return nil, err
		}
		out.Keys = append(out.Keys, *k)
	}
	return out, nil
}

// Get returns one key, of any owner kind.
func (s *Service) Get(ctx context.Context, tenant, id string) (*Key, error) {
	op := s.core.Start(ctx, tenant, "KEY_RETRIEVE")
	k, err := s.get(ctx, tenant, id)
	return k, op.Done(id, err)
}

func (s *Service) get(ctx context.Context, tenant, id string) (*Key, error) {
	rec, err := s.resolve(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	return s.view(ctx, rec)
}

// Signer returns the HSM signer behind a key of /v1/keys/{id}, of any
// owner kind, for measuring what the HSM does next to what the API does.
func (s *Service) Signer(ctx context.Context, tenant, id string) (crypto.Signer, error) {
	rec, err := s.resolve(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	return s.core.Signer(ctx, rec.Fields[signer.KeyField])
}

// resolve finds the record owning key id, searching the registered key
// owners in order (this API's own kind first). A key of another tenant is
// not found, like a missing one.
func (s *Service) resolve(ctx context.Context, tenant, id string) (*store.Record, error) {
	for _, o := range s.core.KeyOwners() {
		rec, err := s.core.Store().Get(ctx, o.RecordKind, tenant, id)
		switch {
		case err == nil:
			if rec.Fields[signer.KeyField] == "" {
				continue
			}
			return rec, nil
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
			continue
		default:
			return nil, signer.StoreErr(err, "key")
		}
	}
	return nil, notFound(id, nil)
}

func notFound(id string, cause error) error {
	return &signer.Error{Kind: signer.KindNotFound, Msg: "key " + signer.QuoteID(id) + " not found", Err: cause}
}

// view builds the API view of an owner record. Keys of this API carry
// their public key; for other owners it comes from the (cached) signer.
func (s *Service) view(ctx context.Context, rec *store.Record) (*Key, error) {
	k := &Key{ID: rec.ID, Owner: rec.Kind, Created: rec.Created.UTC(),
		Algorithm: rec.Fields[signer.KeyAlgorithmField], State: StateEnabled}
	if rec.Fields[signer.KeyStateField] == StateDisabled {
		k.State = StateDisabled
	}
	var pub crypto.PublicKey
	if rec.Kind == RecordKey {
		var d keyData
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			return nil, signer.StoreErr(err, "key")
		}
		k.Label = d.Label
		if k.Algorithm == "" {
			k.Algorithm = d.Algorithm
		}
		p, err := encoding.ParsePublicKeyPEM(d.PublicKeyPEM)
		if err != nil {
			return nil, internal(fmt.Errorf("key %s: stored public key: %w", rec.ID, err))
		}
		pub, k.PublicKeyPEM = p, d.PublicKeyPEM
	} else {
		sg, err := s.core.Signer(ctx, rec.Fields[signer.KeyField])
		if err != nil {
			return nil, err
		}
		pub = sg.Public()
		if k.PublicKeyPEM, err = encoding.PublicKeyPEM(pub); err != nil {
			return nil, internal(err)
		}
	}
	jwk, err := encoding.PublicJWK(pub, rec.ID)
	if err != nil {
		return nil, internal(err)
	}
	k.PublicKeyJWK, k.pub = jwk, pub
	k.SigningAlgorithms = s.algorithmsFor(pub)
	return k, nil
}

// SetEnabled enables or disables a key of this API. The state lives in
// the record, which every replica reads on every signature, so a disabled
// key stops signing everywhere at once.
func (s *Service) SetEnabled(ctx context.Context, tenant, id string, enabled bool) (*Key, error) {
	event := "KEY_DISABLE"
	if enabled {
		event = "KEY_ENABLE"
	}
	op := s.core.Start(ctx, tenant, event)
	k, err := s.setEnabled(ctx, tenant, id, enabled)
	return k, op.Done(id, err)
}

func (s *Service) setEnabled(ctx context.Context, tenant, id string, enabled bool) (*Key, error) {
	want := StateDisabled
	if enabled {
		want = StateEnabled
	}
	for attempt := 0; ; attempt++ {
		rec, err := s.resolve(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if err := s.own(rec); err != nil {
			return nil, err
		}
		if rec.Fields[signer.KeyStateField] != want {
			rec.Fields[signer.KeyStateField] = want
			err = s.core.Store().Update(ctx, rec, store.WriteOpts{})
			if errors.Is(err, store.ErrVersionConflict) && attempt < maxRetry {
				continue
			}
			if err != nil {
				return nil, signer.StoreErr(err, "key")
			}
		}
		return s.view(ctx, rec)
	}
}

// Delete deletes a key of this API and destroys its HSM object, releasing
// one unit of the keys quota.
func (s *Service) Delete(ctx context.Context, tenant, id string) error {
	op := s.core.Start(ctx, tenant, "KEY_DELETE")
	return op.Done(id, s.delete(ctx, tenant, id))
}

func (s *Service) delete(ctx context.Context, tenant, id string) error {
	rec, err := s.resolve(ctx, tenant, id)
	if err != nil {
		return err
	}
	if err := s.own(rec); err != nil {
		return err
	}
	err = s.core.DeleteWithKey(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: QuotaKeys, Limit: s.core.QuotaLimit(QuotaKeys)}})
	if signer.KindOf(err) == signer.KindNotFound {
		// Deleted concurrently: answer like any missing key.
		return notFound(id, err)
	}
	return err
}

// own refuses to manage a key that another family's record owns: its
// life (state, deletion) follows that record and is changed through that
// family, which keeps the two views from disagreeing. The refusal names
// the owner as its family registered it (signer.KeyOwner.Describe).
func (s *Service) own(rec *store.Record) error {
	if rec.Kind == RecordKey {
		return nil
	}
	owner := rec.Kind
	for _, o := range s.core.KeyOwners() {
		if o.RecordKind == rec.Kind && o.Describe != "" {
			owner = o.Describe
			break
		}
	}
	return signer.Refused(signer.KindConflict, ReasonOwned, "", nil, fmt.Sprintf("key %q belongs to %s", rec.ID, owner))
}
