package acme

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/mail"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// Statuses of ACME objects.
const (
	StatusValid       = "valid"
	StatusPending     = "pending"
	StatusReady       = "ready"
	StatusProcessing  = "processing"
	StatusInvalid     = "invalid"
	StatusDeactivated = "deactivated"
	StatusRevoked     = "revoked"
	StatusExpired     = "expired"
)

// account is an account's record.
type account struct {
	Dir     string          `json:"dir"`
	Status  string          `json:"status"`
	Contact []string        `json:"contact,omitempty"`
	JWK     json.RawMessage `json:"jwk"`
	EABKey  string          `json:"eab_key,omitempty"`
	Created time.Time       `json:"created"`
}

// AccountObject is the account resource (RFC 8555 §7.1.2).
type AccountObject struct {
	Status                 string          `json:"status"`
	Contact                []string        `json:"contact,omitempty"`
	Orders                 string          `json:"orders"`
	ExternalAccountBinding json.RawMessage `json:"externalAccountBinding,omitempty"`
	CreatedAt              time.Time       `json:"createdAt"`
}

func (s *Service) accountAnswer(r Request, id string, a *account) *Answer {
	u := accountURL(r.Base, r.Dir, id)
	return &Answer{Location: u, Body: AccountObject{Status: a.Status, Contact: a.Contact, Orders: u + "/orders", CreatedAt: a.Created}}
}

// thumbKey is an account's unique key: one account per key and directory.
func thumbKey(dir, t string) string { return "jwk:" + dir + ":" + t }

// start opens an operation of a directory's tenant; the principal is the
// account once known.
func (s *Service) start(ctx context.Context, d *directory, event string) *signer.Op {
	return s.core.Start(ctx, d.Tenant, event)
}

// withAccount names the account as the caller of what follows.
func withAccount(ctx context.Context, id string) context.Context {
	c := signer.CallerFrom(ctx)
	c.Principal = "acme-account:" + id
	return signer.WithCaller(ctx, c)
}

type newAccountPayload struct {
	Contact              []string        `json:"contact"`
	TermsOfServiceAgreed bool            `json:"termsOfServiceAgreed"`
	OnlyReturnExisting   bool            `json:"onlyReturnExisting"`
	EAB                  json.RawMessage `json:"externalAccountBinding"`
}

// NewAccount creates an account for the key of the request, or finds the
// existing one (ACME_ACCOUNT_CREATE).
func (s *Service) NewAccount(ctx context.Context, r Request) (*Answer, error) {
	d, err := s.directoryOf(ctx, r.Dir)
	if err != nil {
		return nil, err
	}
	op := s.start(ctx, d, "ACME_ACCOUNT_CREATE")
	ans, id, err := s.newAccount(ctx, d, r)
	return ans, op.Done(id, err)
}

func (s *Service) newAccount(ctx context.Context, d *directory, r Request) (*Answer, string, error) {
	req, err := s.verify(ctx, d, r, true, false)
	if err != nil {
		return nil, "", err
	}
	var p newAccountPayload
	if err := req.decode(&p); err != nil {
		return nil, "", err
	}
	thumb, err := thumbprint(req.jwk)
	if err != nil {
		return nil, "", err
	}
	if rec, err := s.store.GetByUnique(ctx, RecordAccount, d.Tenant, thumbKey(d.ID, thumb)); err == nil {
		var a account
		if err := json.Unmarshal(rec.Data, &a); err != nil {
			return nil, "", signer.StoreErr(err, "account")
		}
		if a.Status != StatusValid {
			return nil, rec.ID, problem(ReasonUnauthorized, "the account is "+a.Status)
		}
		return s.accountAnswer(r, rec.ID, &a), rec.ID, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, "", signer.StoreErr(err, "account")
	}
	if p.OnlyReturnExisting {
		return nil, "", problem(ReasonAccountDoesNotExist, "no account has this key")
	}
	if err := checkContacts(p.Contact); err != nil {
		return nil, "", err
	}
	id := newID()
	a := &account{Dir: d.ID, Status: StatusValid, Contact: p.Contact, Created: s.now().UTC()}
	if a.JWK, err = req.jwk.MarshalJSON(); err != nil {
		return nil, "", err
	}
	ctx = withAccount(ctx, id)
	switch {
	case len(p.EAB) > 0 && d.Policy.ExternalAccountBinding != EABOff:
		if a.EABKey, err = s.checkEAB(ctx, d, r, req.jwk, p.EAB); err != nil {
			return nil, "", err
		}
	case d.Policy.ExternalAccountBinding == EABRequired:
		return nil, "", problem(ReasonExternalAccountRequired, "this directory requires an external account binding")
	}
	limit, err := s.core.QuotaFree(ctx, d.Tenant, QuotaAccounts)
	if err != nil {
		return nil, "", problem(ReasonRateLimited, "the tenant's quota of ACME accounts is used up")
	}
	data, err := json.Marshal(a)
	if err != nil {
		return nil, "", err
	}
	rec := &store.Record{Kind: RecordAccount, Tenant: d.Tenant, ID: id, Unique: []string{thumbKey(d.ID, thumb)},
		Fields: map[string]string{"dir": d.ID}, Data: data}
	if err := s.store.Create(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: QuotaAccounts, Limit: limit}}); err != nil {
		if errors.Is(err, store.ErrQuotaExceeded) {
			return nil, "", problem(ReasonRateLimited, "the tenant's quota of ACME accounts is used up")
		}
		return nil, "", signer.StoreErr(err, "account")
	}
	ans := s.accountAnswer(r, id, a)
	ans.Created = true
	return ans, id, nil
}

// checkContacts accepts mailto: URLs of plain addresses.
func checkContacts(cs []string) error {
	if len(cs) > 10 {
		return problem(ReasonInvalidContact, "at most 10 contacts")
	}
	for _, c := range cs {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok {
			return problem(ReasonUnsupportedContact, "contacts must be mailto: URLs")
		}
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || strings.ContainsAny(addr, ",?") {
			return problem(ReasonInvalidContact, "contact "+signer.QuoteID(c)+" is not a plain email address")
		}
	}
	return nil
}

type accountUpdate struct {
	Status  string   `json:"status"`
	Contact []string `json:"contact"`
}

// Account reads (ACME_ACCOUNT_RETRIEVE), updates (ACME_ACCOUNT_UPDATE)
// or deactivates (ACME_ACCOUNT_DEACTIVATE) the account of the request.
func (s *Service) Account(ctx context.Context, r Request) (*Answer, error) {
	d, err := s.directoryOf(ctx, r.Dir)
	if err != nil {
		return nil, err
	}
	req, err := s.verify(ctx, d, r, false, false)
	if err != nil {
		return nil, err
	}
	if req.acctRec.ID != r.ID {
		return nil, problem(ReasonUnauthorized, "the request is not signed by this account")
	}
	ctx = withAccount(ctx, r.ID)
	if req.postAsGet() {
		return s.accountAnswer(r, r.ID, req.account), s.start(ctx, d, "ACME_ACCOUNT_RETRIEVE").Done(r.ID, nil)
	}
	var p accountUpdate
	if err := req.decode(&p); err != nil {
		return nil, err
	}
	event := "ACME_ACCOUNT_UPDATE"
	if p.Status == StatusDeactivated {
		event = "ACME_ACCOUNT_DEACTIVATE"
	}
	op := s.start(ctx, d, event)
	switch p.Status {
	case "", StatusDeactivated:
	default:
		return nil, op.Done(r.ID, problem(ReasonMalformed, "an account's status can only become deactivated"))
	}
	if p.Contact != nil {
		if err := checkContacts(p.Contact); err != nil {
			return nil, op.Done(r.ID, err)
		}
	}
	a, err := update(ctx, s.store, RecordAccount, d.Tenant, r.ID, "account", func(_ *store.Record, a *account) (bool, error) {
		if a.Status != StatusValid {
			return false, problem(ReasonUnauthorized, "the account is "+a.Status)
		}
		if p.Status != "" {
			a.Status = p.Status
		}
		if p.Contact != nil {
			a.Contact = p.Contact
		}
		return true, nil
	})
	if err != nil {
		return nil, op.Done(r.ID, err)
	}
	return s.accountAnswer(r, r.ID, a), op.Done(r.ID, nil)
}

// KeyChange rolls an account over to a new key (RFC 8555 §7.3.5,
// ACME_ACCOUNT_KEY_CHANGE).
func (s *Service) KeyChange(ctx context.Context, r Request) (*Answer, error) {
	d, err := s.directoryOf(ctx, r.Dir)
	if err != nil {
		return nil, err
	}
	op := s.start(ctx, d, "ACME_ACCOUNT_KEY_CHANGE")
	ans, id, err := s.keyChange(ctx, d, r)
	return ans, op.Done(id, err)
}

func (s *Service) keyChange(ctx context.Context, d *directory, r Request) (*Answer, string, error) {
	outer, err := s.verify(ctx, d, r, false, false)
	if err != nil {
		return nil, "", err
	}
	id := outer.acctRec.ID
	inner, _, err := parseJWS(outer.payload, accountAlgs)
	if err != nil {
		return nil, id, err
	}
	h := inner.Signatures[0].Protected
	if h.JSONWebKey == nil || h.KeyID != "" || !h.JSONWebKey.Valid() || !h.JSONWebKey.IsPublic() {
		return nil, id, problem(ReasonMalformed, "the inner JWS must carry the new key as jwk")
	}
	if u, _ := h.ExtraHeaders["url"].(string); u != r.URL {
		return nil, id, problem(ReasonMalformed, "the inner JWS must name the keyChange URL")
	}
	if h.Nonce != "" {
		return nil, id, problem(ReasonMalformed, "the inner JWS must not have a nonce")
	}
	if err := checkAccountKey(h.JSONWebKey); err != nil {
		return nil, id, err
	}
	payload, err := inner.Verify(h.JSONWebKey)
	if err != nil {
		return nil, id, problem(ReasonMalformed, "the inner JWS signature does not verify")
	}
	var p struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, id, problem(ReasonMalformed, "the inner payload must be {account, oldKey}")
	}
	if p.Account != accountURL(r.Base, d.ID, id) {
		return nil, id, problem(ReasonMalformed, "the inner payload names another account")
	}
	var old jose.JSONWebKey
	if err := old.UnmarshalJSON(p.OldKey); err != nil {
		return nil, id, problem(ReasonMalformed, "oldKey is not a JWK")
	}
	oldThumb, err := thumbprint(&old)
	if err != nil {
		return nil, id, err
	}
	curThumb, err := thumbprint(outer.jwk)
	if err != nil {
		return nil, id, err
	}
	if oldThumb != curThumb {
		return nil, id, problem(ReasonMalformed, "oldKey is not the account's key")
	}
	newThumb, err := thumbprint(h.JSONWebKey)
	if err != nil {
		return nil, id, err
	}
	if other, err := s.store.GetByUnique(ctx, RecordAccount, d.Tenant, thumbKey(d.ID, newThumb)); err == nil {
		e := problem(ReasonConflict, "the new key belongs to another account")
		e.Fields = []signer.FieldError{{Field: "location", Value: accountURL(r.Base, d.ID, other.ID)}}
		return nil, id, e
	}
	newJWK, err := h.JSONWebKey.MarshalJSON()
	if err != nil {
		return nil, id, err
	}
	a, err := update(ctx, s.store, RecordAccount, d.Tenant, id, "account", func(rec *store.Record, a *account) (bool, error) {
		if a.Status != StatusValid {
			return false, problem(ReasonUnauthorized, "the account is "+a.Status)
		}
		a.JWK = newJWK
		rec.Unique = []string{thumbKey(d.ID, newThumb)}
		return true, nil
	})
	if errors.Is(err, store.ErrExists) || signer.KindOf(err) == signer.KindConflict {
		return nil, id, problem(ReasonConflict, "the new key belongs to another account")
	}
	if err != nil {
		return nil, id, err
	}
	return s.accountAnswer(r, id, a), id, nil
}

// eabKey is an external account binding key's record; the MAC key is
// sealed by the HSM.
type eabKey struct {
	Dir     string    `json:"directory"`
	Sealed  []byte    `json:"sealed"`
	Account string    `json:"account,omitempty"` // bound to, once used
	Created time.Time `json:"created"`
}

const (
	eabWrapKeyID    = "hsmca-acme-eab-wrap"
	eabWrapKeyLabel = "hsmca/acme/eab-wrap"
)

func eabAAD(tenant, id string) []byte { return []byte("hsmca/acme-eab/" + tenant + "/" + id) }

// EABKey is a new external account binding key: its id and its MAC key
// (base64url), shown once.
type EABKey struct {
	KeyID     string
	HMACKey   string
	Directory string
}

// CreateEABKey makes an external account binding key for a directory of
// the tenant (ACME_EAB_CREATE). One key binds one account.
func (s *Service) CreateEABKey(ctx context.Context, tenant, dirID string) (*EABKey, error) {
	op := s.core.Start(ctx, tenant, "ACME_EAB_CREATE")
	k, err := s.createEAB(ctx, tenant, dirID)
	if err != nil {
		return nil, op.Done("", err)
	}
	return k, op.Done(k.KeyID, nil)
}

func (s *Service) createEAB(ctx context.Context, tenant, dirID string) (*EABKey, error) {
	if _, err := s.tenantDirectory(ctx, tenant, dirID); err != nil {
		return nil, err
	}
	id := newID()
	mac := make([]byte, 32)
	_, _ = rand.Read(mac)
	defer clear(mac)
	sealed, err := s.core.Seal(ctx, eabWrapKeyID, eabWrapKeyLabel, mac, eabAAD(tenant, id))
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(eabKey{Dir: dirID, Sealed: sealed, Created: s.now().UTC()})
	if err != nil {
		return nil, err
	}
	rec := &store.Record{Kind: RecordEAB, Tenant: tenant, ID: id, Fields: map[string]string{"directory": dirID}, Data: data}
	if err := s.store.Create(ctx, rec, store.WriteOpts{}); err != nil {
		return nil, signer.StoreErr(err, "EAB key")
	}
	return &EABKey{KeyID: id, HMACKey: base64.RawURLEncoding.EncodeToString(mac), Directory: dirID}, nil
}

// checkEAB verifies an external account binding (RFC 8555 §7.3.4) for
// the account key jwk and binds its key to the new account (once).
func (s *Service) checkEAB(ctx context.Context, d *directory, r Request, jwk *jose.JSONWebKey, raw json.RawMessage) (string, error) {
	bad := func(msg string) error { return problem(ReasonUnauthorized, "externalAccountBinding: "+msg) }
	jws, _, err := parseJWS(raw, []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512})
	if err != nil {
		return "", bad("must be a JWS MACed with HS256, HS384 or HS512")
	}
	h := jws.Signatures[0].Protected
	if h.Nonce != "" || h.JSONWebKey != nil {
		return "", bad("must have neither nonce nor jwk")
	}
	if u, _ := h.ExtraHeaders["url"].(string); u != r.URL {
		return "", bad("must name the newAccount URL")
	}
	rec, k, err := getJSON[eabKey](ctx, s.store, RecordEAB, d.Tenant, h.KeyID, "EAB key")
	if err != nil || k.Dir != d.ID {
		if err == nil || signer.KindOf(err) == signer.KindNotFound {
			return "", bad("unknown key id")
		}
		return "", err
	}
	if k.Account != "" {
		return "", bad("this key is already bound to an account")
	}
	mac, err := s.core.Unseal(ctx, eabWrapKeyID, k.Sealed, eabAAD(d.Tenant, rec.ID))
	if err != nil {
		return "", err
	}
	defer clear(mac)
	payload, err := jws.Verify(mac)
	if err != nil {
		return "", bad("the MAC does not verify")
	}
	var inner jose.JSONWebKey
	if err := inner.UnmarshalJSON(payload); err != nil {
		return "", bad("the payload must be the account key")
	}
	a, _ := thumbprint(&inner)
	b, _ := thumbprint(jwk)
	if a == "" || a != b {
		return "", bad("the payload is not the account key")
	}
	acct := signer.CallerFrom(ctx).Principal
	_, err = update(ctx, s.store, RecordEAB, d.Tenant, rec.ID, "EAB key", func(_ *store.Record, k *eabKey) (bool, error) {
		if k.Account != "" {
			return false, bad("this key is already bound to an account")
		}
		k.Account = acct
		return true, nil
	})
	return rec.ID, err
}
