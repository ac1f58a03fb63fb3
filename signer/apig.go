package signer

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// SSL certificates of API family 3 (Huawei APIG v2). A certificate is
// imported with its private key; the key goes into the HSM as a
// sensitive, non-extractable object and the record (kind
// KindAPIGCertificate) owns it by the key-owner conventions, so the keys
// API can sign with it under the certificate's id. The record keeps the
// certificates (DER), never the key.

// Reasons of the APIG family's refusals, in the order checkAPIGInput
// checks them; api/apig_errors.go gives each its APIG code.
const (
	APIGReasonMissing      Reason = "apig.missing"       // a required parameter is absent
	APIGReasonBadValue     Reason = "apig.bad_value"     // a value, key type or size is not taken
	APIGReasonUnparseable  Reason = "apig.unparseable"   // the certificate or key cannot be read
	APIGReasonEncryptedKey Reason = "apig.encrypted_key" // the private key is encrypted
	APIGReasonKeyMismatch  Reason = "apig.key_mismatch"  // the key is not the certificate's
	APIGReasonExpired      Reason = "apig.expired"       // the certificate has expired
	APIGReasonNoSAN        Reason = "apig.no_san"        // the certificate names no host
	APIGReasonChain        Reason = "apig.chain"         // the chain does not verify
	APIGReasonNotFound     Reason = "apig.not_found"     // no such certificate in the tenant
	APIGReasonNameTaken    Reason = "apig.name_taken"    // another certificate has the name
	APIGReasonConcurrent   Reason = "apig.concurrent"    // the certificate changed meanwhile
)

// Certificate scopes.
const (
	APIGTypeGlobal   = "global"
	APIGTypeInstance = "instance"
	// APIGCommonInstance is the instance_id of a global certificate.
	APIGCommonInstance = "common"
)

// APIG list limits.
const (
	APIGDefaultLimit = 20
	APIGMaxLimit     = 500
)

// maxAPIGSANs bounds the names of an imported certificate: every list page
// and every object carries them, and no public CA issues more than this.
const maxAPIGSANs = 250

// APIGCertInput is the body of a create or a full replace.
type APIGCertInput struct {
	Name        string
	CertContent string
	// PrivateKey is unencrypted PEM (PKCS#1, PKCS#8 or SEC1). The engine
	// owns it once called and clears it before returning.
	PrivateKey    []byte
	Type          string
	InstanceID    string
	TrustedRootCA string
}

// APIGCertificate is an imported certificate as the API shows it, derived
// from the stored leaf certificate.
type APIGCertificate struct {
	ID                 string
	Name               string
	Type               string
	InstanceID         string
	ProjectID          string
	CommonName         string
	SAN                []string // DNS names, then IP addresses
	NotBefore          time.Time
	NotAfter           time.Time
	SignatureAlgorithm string // Go's name, e.g. SHA256-RSA
	Created            time.Time
	Updated            time.Time
	HasTrustedRootCA   bool
	Version            int // X.509 version
	Organization       []string
	OrganizationalUnit []string
	Locality           []string
	State              []string
	Country            []string
	SerialNumber       string // decimal
	Issuer             []string
	KeyAlgorithm       string
}

// APIGCertQuery selects a page of certificates.
type APIGCertQuery struct {
	Offset             int
	Limit              int // clamped to 1..APIGMaxLimit; 0 means the default
	Name               string
	CommonName         string
	SignatureAlgorithm string
	Type               string
	InstanceID         string
}

// apigCertData is the stored document: certificates only.
type apigCertData struct {
	Name          string   `json:"name"`
	Type          string   `json:"type"`
	InstanceID    string   `json:"instanceId"`
	Chain         [][]byte `json:"chain"` // DER, leaf first, as sent
	TrustedRootCA [][]byte `json:"trustedRootCa,omitempty"`
}

// apigChecked is an input that passed every check.
type apigChecked struct {
	data apigCertData
	leaf *x509.Certificate
	key  crypto.PrivateKey
	alg  string
}

func apigInvalid(r Reason, field string, value any, msg string) *Error {
	return Refused(KindInvalid, r, field, value, msg)
}

// ValidAPIGCertID reports whether id can name a certificate: 32 lowercase
// hex digits.
func ValidAPIGCertID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func validAPIGName(s string) bool {
	if len(s) < 4 || len(s) > 50 {
		return false
	}
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

// Gateway ids are not known to hsmca (it runs no gateways), so any id of a
// sane shape is accepted.
func validInstanceID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func apigNameKey(name string) string { return "name:" + name }

// checkAPIGInput validates an input in a fixed order, so that each failure
// has one reason: missing parameters, bad values, unparseable input,
// encrypted key, key mismatch, expiry, SAN, chain. It clears in.PrivateKey.
// On success the caller must encoding.WipeKey(checked.key).
func (e *Engine) checkAPIGInput(in *APIGCertInput) (*apigChecked, error) {
	defer clear(in.PrivateKey)
	for _, f := range []struct {
		name    string
		missing bool
	}{{"name", in.Name == ""}, {"cert_content", in.CertContent == ""}, {"private_key", len(in.PrivateKey) == 0}} {
		if f.missing {
			return nil, apigInvalid(APIGReasonMissing, f.name, nil, "is required")
		}
	}
	if !validAPIGName(in.Name) {
		return nil, apigInvalid(APIGReasonBadValue, "name", in.Name,
			"must be 4 to 50 characters, start with a letter and hold only letters, digits and underscores")
	}
	d := apigCertData{Name: in.Name, Type: in.Type}
	switch in.Type {
	case "":
		d.Type = APIGTypeGlobal
		fallthrough
	case APIGTypeGlobal:
		d.InstanceID = APIGCommonInstance
	case APIGTypeInstance:
		if in.InstanceID == "" {
			return nil, apigInvalid(APIGReasonMissing, "instance_id", nil, "is required when type is instance")
		}
		if !validInstanceID(in.InstanceID) {
			return nil, apigInvalid(APIGReasonBadValue, "instance_id", in.InstanceID,
				"must be 1 to 64 letters, digits, '-' or '_'")
		}
		d.InstanceID = in.InstanceID
	default:
		return nil, apigInvalid(APIGReasonBadValue, "type", in.Type, "must be global or instance")
	}

	chain, err := encoding.ParseCertificates([]byte(in.CertContent), encoding.RefuseOthers)
	if err != nil {
		return nil, apigRefusal("cert_content", err)
	}
	var roots []*x509.Certificate
	if in.TrustedRootCA != "" {
		if roots, err = encoding.ParseCertificates([]byte(in.TrustedRootCA), encoding.RefuseOthers); err != nil {
			return nil, apigRefusal("trusted_root_ca", err)
		}
	}
	key, err := encoding.ParsePrivateKey(in.PrivateKey)
	if err != nil {
		return nil, apigRefusal("private_key", err)
	}
	ok := false
	defer func() {
		if !ok {
			encoding.WipeKey(key)
		}
	}()
	leaf := chain[0]
	pub, _ := key.(crypto.Signer)
	if pub == nil || !encoding.PublicKeysEqual(pub.Public(), leaf.PublicKey) {
		return nil, apigInvalid(APIGReasonKeyMismatch, "private_key", nil, "does not match the certificate's public key")
	}
	alg, _, err := encoding.KeyAlgorithm(pub.Public())
	if err != nil {
		return nil, apigRefusal("private_key", err)
	}
	now := e.now()
	if !now.Before(leaf.NotAfter) {
		return nil, apigInvalid(APIGReasonExpired, "cert_content", leaf.NotAfter.UTC().Format(time.RFC3339), "the certificate has expired")
	}
	if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 {
		return nil, apigInvalid(APIGReasonNoSAN, "cert_content", nil, "the certificate has no subject alternative name (DNS name or IP address)")
	}
	if n := len(leaf.DNSNames) + len(leaf.IPAddresses); n > maxAPIGSANs {
		return nil, apigInvalid(APIGReasonBadValue, "cert_content", n, fmt.Sprintf("the certificate has %d subject alternative names; at most %d are accepted", n, maxAPIGSANs))
	}
	if err := verifyAPIGChain(chain, roots, now); err != nil {
		return nil, err
	}
	for _, c := range chain {
		d.Chain = append(d.Chain, c.Raw)
	}
	for _, c := range roots {
		d.TrustedRootCA = append(d.TrustedRootCA, c.Raw)
	}
	ok = true
	return &apigChecked{data: d, leaf: leaf, key: key, alg: string(alg)}, nil
}

// apigRefusal words a refusal of the encoding readers for field with the
// family's reason: unreadable input, an encrypted key, or a key or count the
// family does not take.
func apigRefusal(field string, err error) error {
	var ee *encoding.Error
	if !errors.As(err, &ee) {
		return err
	}
	r := APIGReasonBadValue
	switch ee.Reason {
	case encoding.Malformed, encoding.WrongBlock:
		r = APIGReasonUnparseable
	case encoding.Encrypted:
		r = APIGReasonEncryptedKey
	}
	return apigInvalid(r, field, ee.Value, ee.Msg)
}

// verifyAPIGChain checks the chain: against the trusted root CAs when
// given, else each certificate of cert_content must be signed by the next.
// A chain is checked at now, or at the leaf's start if that is later (a
// certificate not valid yet is accepted; an expired one is refused
// before).
func verifyAPIGChain(chain, roots []*x509.Certificate, now time.Time) error {
	at := now
	if at.Before(chain[0].NotBefore) {
		at = chain[0].NotBefore
	}
	if len(roots) > 0 {
		rp, ip := x509.NewCertPool(), x509.NewCertPool()
		for _, r := range roots {
			rp.AddCert(r)
		}
		for _, c := range chain[1:] {
			ip.AddCert(c)
		}
		_, err := chain[0].Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return apigInvalid(APIGReasonChain, "trusted_root_ca", nil, "the certificate does not verify against trusted_root_ca: "+err.Error())
		}
		return nil
	}
	for i := 0; i+1 < len(chain); i++ {
		child, parent := chain[i], chain[i+1]
		if err := child.CheckSignatureFrom(parent); err != nil {
			return apigInvalid(APIGReasonChain, "cert_content", nil,
				fmt.Sprintf("certificate %d is not signed by certificate %d: %v", i+1, i+2, err))
		}
		if at.Before(parent.NotBefore) || at.After(parent.NotAfter) {
			return apigInvalid(APIGReasonChain, "cert_content", nil, fmt.Sprintf("certificate %d of the chain is outside its validity", i+2))
		}
	}
	return nil
}

// apigRecord builds the stored record of a checked input.
func (e *Engine) apigRecord(tenant, id string, c *apigChecked, keyID string) (*store.Record, error) {
	data, err := json.Marshal(&c.data)
	if err != nil {
		return nil, err
	}
	return &store.Record{Kind: KindAPIGCertificate, Tenant: tenant, ID: id,
		Unique: []string{apigNameKey(c.data.Name)},
		Fields: map[string]string{
			KeyField:              keyID,
			KeyAlgorithmField:     c.alg,
			"name":                c.data.Name,
			"common_name":         c.leaf.Subject.CommonName,
			"signature_algorithm": c.leaf.SignatureAlgorithm.String(),
			"type":                c.data.Type,
			"instance_id":         c.data.InstanceID,
			"created":             e.now().UTC().Format("20060102T150405.000000000"),
		},
		Data: data}, nil
}

// apigStoreErr maps store errors with the family's reasons: a taken unique
// key is the name, a version conflict a concurrent change.
func apigStoreErr(err error) error {
	var ee *Error
	if errors.As(err, &ee) {
		return ee
	}
	switch {
	case errors.Is(err, store.ErrExists):
		return &Error{Kind: KindConflict, Reason: APIGReasonNameTaken, Msg: "a certificate with this name already exists", Err: err}
	case errors.Is(err, store.ErrVersionConflict):
		return &Error{Kind: KindConflict, Reason: APIGReasonConcurrent, Msg: "the certificate was changed concurrently; retry", Err: err}
	case errors.Is(err, store.ErrNotFound):
		return &Error{Kind: KindNotFound, Reason: APIGReasonNotFound, Msg: "the certificate does not exist", Err: err}
	}
	return storeErr(err, "certificate")
}

// definiteStoreFailure reports a write the store certainly refused, as
// opposed to one whose outcome is unknown (a timeout may have committed).
func definiteStoreFailure(err error) bool {
	for _, s := range []error{store.ErrExists, store.ErrQuotaExceeded, store.ErrVersionConflict, store.ErrNotFound, store.ErrInvalid} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// settleUncommitted disposes of a key whose record write failed: destroyed
// when the store refused the write, else left to the reconciler, which
// keeps it if the write did commit after all.
func (e *Engine) settleUncommitted(nk *NewKey, err error) {
	if definiteStoreFailure(err) {
		e.AbandonKey(nk)
		return
	}
	e.log.Warn("key of an unconfirmed write left for the reconciler", "key_id", nk.ID, "intent", nk.Intent, "err", err)
}

// checkNameFree fails when another certificate of the tenant has name. It
// spares an HSM import for a name that is taken; the unique key of the
// record write is what makes names unique.
func (e *Engine) checkNameFree(ctx context.Context, tenant, name, self string) error {
	rec, err := e.store.GetByUnique(ctx, KindAPIGCertificate, tenant, apigNameKey(name))
	switch {
	case err == nil && rec.ID != self:
		return apigStoreErr(store.ErrExists)
	case err == nil, errors.Is(err, store.ErrNotFound):
		return nil
	}
	return storeErr(err, "certificate")
}

// CreateAPIGCertificate imports a certificate and its private key.
func (e *Engine) CreateAPIGCertificate(ctx context.Context, tenant string, in APIGCertInput) (*APIGCertificate, error) {
	defer clear(in.PrivateKey)
	var out *APIGCertificate
	err := e.run(ctx, tenant, "APIG_CERTIFICATE_CREATE", func() (string, error) {
		c, err := e.checkAPIGInput(&in)
		if err != nil {
			return "", err
		}
		defer encoding.WipeKey(c.key)
		if err := e.checkNameFree(ctx, tenant, c.data.Name, ""); err != nil {
			return "", err
		}
		limit := e.QuotaLimit(QuotaAPIGCerts)
		if used, err := e.store.QuotaUsage(ctx, tenant, QuotaAPIGCerts); err != nil {
			return "", storeErr(err, "quota")
		} else if limit >= 0 && used >= limit {
			return "", E(KindQuotaExceeded, "the quota of %d SSL certificates is used up", limit)
		}
		id := NewKeyID()
		nk, err := e.ImportKey(ctx, tenant, KindAPIGCertificate, id, c.key)
		if err != nil {
			return id, err
		}
		encoding.WipeKey(c.key)
		rec, err := e.apigRecord(tenant, id, c, nk.ID)
		if err != nil {
			e.AbandonKey(nk)
			return id, err
		}
		if err := e.store.Create(ctx, rec, store.WriteOpts{Intent: nk.Intent,
			Quota: &store.Quota{Resource: QuotaAPIGCerts, Limit: limit}}); err != nil {
			e.settleUncommitted(nk, err)
			if errors.Is(err, store.ErrQuotaExceeded) {
				return id, E(KindQuotaExceeded, "the quota of %d SSL certificates is used up", limit)
			}
			return id, apigStoreErr(err)
		}
		out, err = apigView(rec)
		return id, err
	})
	return out, err
}

// apigResource is what the event log records of a requested id: only a
// well-formed one, so that arbitrary path text never enters the chain.
func apigResource(id string) string {
	if ValidAPIGCertID(id) {
		return id
	}
	return ""
}

func (e *Engine) getAPIGRecord(ctx context.Context, tenant, id string) (*store.Record, error) {
	if !ValidAPIGCertID(id) {
		return nil, E(KindNotFound, "the certificate does not exist").With(APIGReasonNotFound)
	}
	rec, err := e.store.Get(ctx, KindAPIGCertificate, tenant, id)
	if err != nil {
		return nil, apigStoreErr(err)
	}
	return rec, nil
}

// GetAPIGCertificate returns one certificate of the tenant.
func (e *Engine) GetAPIGCertificate(ctx context.Context, tenant, id string) (*APIGCertificate, error) {
	var out *APIGCertificate
	err := e.run(ctx, tenant, "APIG_CERTIFICATE_RETRIEVE", func() (string, error) {
		rec, err := e.getAPIGRecord(ctx, tenant, id)
		if err != nil {
			return apigResource(id), err
		}
		out, err = apigView(rec)
		return apigResource(id), err
	})
	return out, err
}

// ListAPIGCertificates returns a page of the tenant's certificates, newest
// first, and the number of all that match.
func (e *Engine) ListAPIGCertificates(ctx context.Context, tenant string, q APIGCertQuery) ([]APIGCertificate, int, error) {
	var (
		out   []APIGCertificate
		total int
	)
	err := e.run(ctx, tenant, "APIG_CERTIFICATE_RETRIEVE_LIST", func() (string, error) {
		if q.Offset < 0 {
			return "", apigInvalid(APIGReasonBadValue, "offset", q.Offset, "must not be negative")
		}
		switch {
		case q.Limit == 0:
			q.Limit = APIGDefaultLimit
		case q.Limit < 1:
			q.Limit = 1
		case q.Limit > APIGMaxLimit:
			q.Limit = APIGMaxLimit
		}
		sq := store.Query{Kind: KindAPIGCertificate, Tenant: tenant, SortBy: "created", Desc: true,
			Offset: q.Offset, Limit: q.Limit}
		for _, f := range []store.Filter{
			{Field: "name", Value: q.Name, Match: store.Contains},
			{Field: "common_name", Value: q.CommonName, Match: store.Contains},
			{Field: "signature_algorithm", Value: q.SignatureAlgorithm},
			{Field: "type", Value: q.Type},
			{Field: "instance_id", Value: q.InstanceID},
		} {
			if f.Value != "" {
				sq.Filters = append(sq.Filters, f)
			}
		}
		page, err := e.store.List(ctx, sq)
		if err != nil {
			return "", storeErr(err, "certificate")
		}
		out = make([]APIGCertificate, 0, len(page.Records))
		for i := range page.Records {
			v, err := apigView(&page.Records[i])
			if err != nil {
				return "", err
			}
			out = append(out, *v)
		}
		total = page.Total
		return "", nil
	})
	return out, total, err
}

// UpdateAPIGCertificate replaces a certificate and its key. The new key is
// committed before the old one is destroyed (replaceKey).
func (e *Engine) UpdateAPIGCertificate(ctx context.Context, tenant, id string, in APIGCertInput) (*APIGCertificate, error) {
	defer clear(in.PrivateKey)
	var out *APIGCertificate
	err := e.run(ctx, tenant, "APIG_CERTIFICATE_UPDATE", func() (string, error) {
		rec, err := e.getAPIGRecord(ctx, tenant, id)
		if err != nil {
			return apigResource(id), err
		}
		c, err := e.checkAPIGInput(&in)
		if err != nil {
			return apigResource(id), err
		}
		defer encoding.WipeKey(c.key)
		if err := e.checkNameFree(ctx, tenant, c.data.Name, id); err != nil {
			return apigResource(id), err
		}
		next, err := e.apigRecord(tenant, id, c, "")
		if err != nil {
			return apigResource(id), err
		}
		next.Fields["created"] = rec.Fields["created"]
		if st, ok := rec.Fields[KeyStateField]; ok {
			next.Fields[KeyStateField] = st
		}
		err = e.replaceKey(ctx, rec, c.key, func(r *store.Record) {
			r.Unique, r.Fields, r.Data = next.Unique, next.Fields, next.Data
		})
		if err != nil {
			return apigResource(id), apigStoreErr(err)
		}
		out, err = apigView(rec)
		return apigResource(id), err
	})
	return out, err
}

// DeleteAPIGCertificate deletes a certificate and destroys its key.
func (e *Engine) DeleteAPIGCertificate(ctx context.Context, tenant, id string) error {
	return e.run(ctx, tenant, "APIG_CERTIFICATE_DELETE", func() (string, error) {
		rec, err := e.getAPIGRecord(ctx, tenant, id)
		if err != nil {
			return apigResource(id), err
		}
		if err := e.DeleteWithKey(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: QuotaAPIGCerts}}); err != nil {
			return apigResource(id), apigStoreErr(err)
		}
		return apigResource(id), nil
	})
}

// replaceKey gives a record a new key, crash-safely: one intent names the
// new key and the old one, the new key is imported, the record is updated
// to name it (version-checked), and only then is the old key destroyed and
// the intent retired. Whatever the point of a crash, the reconciler keeps
// the key the record names and destroys the other. apply changes the
// record's content; replaceKey sets its KeyField. On success rec holds the
// record as stored. Errors are store errors or engine errors.
func (e *Engine) replaceKey(ctx context.Context, rec *store.Record, key crypto.PrivateKey, apply func(*store.Record)) error {
	h, err := e.HSM()
	if err != nil {
		return err
	}
	oldID := rec.Fields[KeyField]
	nk := &NewKey{ID: NewKeyID(), Tenant: rec.Tenant}
	ids := []string{nk.ID}
	if oldID != "" {
		ids = append(ids, oldID)
	}
	if nk.Intent, err = e.putIntent(ctx, rec.Tenant, rec.Kind, rec.ID, "replace", ids...); err != nil {
		return err
	}
	if _, err := h.Import(ctx, nk.ID, KeyLabel(rec.Tenant, rec.ID), key); err != nil {
		// The old key stays: the record still names it.
		e.AbandonKey(nk)
		return HSMError(err, "key")
	}
	next := *rec
	apply(&next)
	fields := make(map[string]string, len(next.Fields)+1)
	for k, v := range next.Fields {
		fields[k] = v
	}
	fields[KeyField] = nk.ID
	next.Fields = fields
	if err := e.store.Update(ctx, &next, store.WriteOpts{}); err != nil {
		e.settleUncommitted(nk, err)
		return err
	}
	*rec = next
	if oldID != "" {
		if err := h.Delete(ctx, oldID); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			e.log.Warn("replaced key left for the reconciler", "key_id", oldID, "err", err)
			return nil
		}
	}
	if err := e.store.DeleteIntent(context.WithoutCancel(ctx), nk.Intent); err != nil {
		e.log.Warn("intent left for the reconciler", "intent", nk.Intent, "err", err)
	}
	return nil
}

// apigView derives the API's view of a record from its leaf certificate.
func apigView(rec *store.Record) (*APIGCertificate, error) {
	var d apigCertData
	if err := json.Unmarshal(rec.Data, &d); err != nil {
		return nil, storeErr(err, "certificate")
	}
	if len(d.Chain) == 0 {
		return nil, &Error{Kind: KindInternal, Msg: "internal error", Err: errors.New("apig certificate record without a certificate")}
	}
	leaf, err := x509.ParseCertificate(d.Chain[0])
	if err != nil {
		return nil, &Error{Kind: KindInternal, Msg: "internal error", Err: fmt.Errorf("stored apig certificate: %w", err)}
	}
	san := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	san = append(san, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		san = append(san, net.IP(ip).String())
	}
	issuer := leaf.Issuer.Organization
	if len(issuer) == 0 && leaf.Issuer.CommonName != "" {
		issuer = []string{leaf.Issuer.CommonName}
	}
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return &APIGCertificate{
		ID: rec.ID, Name: d.Name, Type: d.Type, InstanceID: d.InstanceID, ProjectID: rec.Tenant,
		CommonName: leaf.Subject.CommonName, SAN: san,
		NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(),
		SignatureAlgorithm: leaf.SignatureAlgorithm.String(),
		Created:            rec.Created.UTC(), Updated: rec.Updated.UTC(),
		HasTrustedRootCA: len(d.TrustedRootCA) > 0, Version: leaf.Version,
		Organization:       nonNil(leaf.Subject.Organization),
		OrganizationalUnit: nonNil(leaf.Subject.OrganizationalUnit),
		Locality:           nonNil(leaf.Subject.Locality),
		State:              nonNil(leaf.Subject.Province),
		Country:            nonNil(leaf.Subject.Country),
		SerialNumber:       leaf.SerialNumber.String(),
		Issuer:             nonNil(issuer),
		KeyAlgorithm:       rec.Fields[KeyAlgorithmField],
	}, nil
}
