package apig

import (
	"context"
	"crypto"
	"errors"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// List limits.
const (
	DefaultLimit = 20
	MaxLimit     = 500
)

// Query selects a page of certificates. As Huawei documents: a negative
// Offset means 0, a Limit of 0 or less means DefaultLimit and one over
// MaxLimit means MaxLimit.
type Query struct {
	Offset             int
	Limit              int
	Name               string
	CommonName         string
	SignatureAlgorithm string
	Type               string
	InstanceID         string
	AlgorithmType      string // RSA, ECC or SM2 (no certificate is SM2)
}

// algorithmFilters are the store filters of an algorithm type, on the key
// algorithm every record keeps by the key-owner conventions
// (hsm.AlgorithmOf names: RSA<bits>, EC256/EC384/EC521, ED25519), so that
// records written before algorithm_type existed are found too: RSA is
// the names from "RSA" up to "RSB", ECC those from "EC" up to "EE" (EC…
// and ED25519). ok is false for a type no record can have.
func algorithmFilters(t string) (fs []store.Filter, ok bool) {
	rng := func(lo, hi string) []store.Filter {
		return []store.Filter{{Field: signer.KeyAlgorithmField, Value: lo, Match: store.AtLeast},
			{Field: signer.KeyAlgorithmField, Value: hi, Match: store.Less}}
	}
	switch t {
	case AlgorithmRSA:
		return rng("RSA", "RSB"), true
	case AlgorithmECC:
		return rng("EC", "EE"), true
	}
	return nil, false
}

// Service is the family's use cases on a core.
type Service struct {
	core *signer.Core
}

// New returns the family's service on core, which must have registered
// Family().
func New(core *signer.Core) *Service { return &Service{core: core} }

// Create imports a certificate and its private key.
func (s *Service) Create(ctx context.Context, tenant string, in Input) (*Certificate, error) {
	defer clear(in.PrivateKey)
	defer clear(in.PrivateKeySign)
	op := s.core.Start(ctx, tenant, "APIG_CERTIFICATE_CREATE")
	out, id, err := s.create(ctx, tenant, &in)
	return out, op.Done(id, err)
}

func (s *Service) create(ctx context.Context, tenant string, in *Input) (*Certificate, string, error) {
	c, err := checkInput(in, s.core.Now())
	if err != nil {
		return nil, "", err
	}
	defer encoding.WipeKey(c.key)
	if err := s.supportsKey(c); err != nil {
		return nil, "", err
	}
	if err := s.checkNameFree(ctx, tenant, c.data.Name, ""); err != nil {
		return nil, "", err
	}
	limit, err := s.core.QuotaFree(ctx, tenant, QuotaCertificates)
	if signer.KindOf(err) == signer.KindQuotaExceeded {
		return nil, "", quotaUsedUp(limit)
	} else if err != nil {
		return nil, "", err
	}
	id := signer.NewKeyID()
	nk, err := s.core.ImportKey(ctx, tenant, RecordCertificate, id, c.key)
	if err != nil {
		return nil, id, err
	}
	encoding.WipeKey(c.key)
	rec, err := newRecord(tenant, id, c, nk.ID, s.core.Now())
	if err != nil {
		s.core.AbandonKey(nk)
		return nil, id, err
	}
	err = s.core.CommitKey(ctx, rec, nk, store.WriteOpts{Quota: &store.Quota{Resource: QuotaCertificates, Limit: limit}})
	if errors.Is(err, store.ErrQuotaExceeded) {
		return nil, id, quotaUsedUp(limit)
	} else if err != nil {
		return nil, id, storeErr(err)
	}
	out, err := view(rec)
	return out, id, err
}

// supportsKey refuses, before anything is written, a key the token
// cannot take (an EC key on a token without EC, an RSA size out of its
// range), naming the missing mechanism.
func (s *Service) supportsKey(c *checked) error {
	pub, ok := c.key.(crypto.Signer)
	if !ok {
		return nil // checkInput took only signers
	}
	if err := s.core.SupportsKey(pub.Public()); err != nil {
		return signer.Unsupported(err, ReasonBadValue, "private_key", nil, "")
	}
	return nil
}

// checkNameFree fails when another certificate of the tenant has name. It
// spares an HSM import for a name that is taken; the unique key of the
// record write is what makes names unique.
func (s *Service) checkNameFree(ctx context.Context, tenant, name, self string) error {
	rec, err := s.core.Store().GetByUnique(ctx, RecordCertificate, tenant, nameKey(name))
	switch {
	case err == nil && rec.ID != self:
		return storeErr(store.ErrExists)
	case err == nil, errors.Is(err, store.ErrNotFound):
		return nil
	}
	return signer.StoreErr(err, "certificate")
}

// resource is what the event log records of a requested id: only a
// well-formed one, so that arbitrary path text never enters the chain.
func resource(id string) string {
	if ValidID(id) {
		return id
	}
	return ""
}

func (s *Service) get(ctx context.Context, tenant, id string) (*store.Record, error) {
	if !ValidID(id) {
		return nil, notFound(nil)
	}
	rec, err := s.core.Store().Get(ctx, RecordCertificate, tenant, id)
	if err != nil {
		return nil, storeErr(err)
	}
	return rec, nil
}

// Get returns one certificate of the tenant.
func (s *Service) Get(ctx context.Context, tenant, id string) (*Certificate, error) {
	op := s.core.Start(ctx, tenant, "APIG_CERTIFICATE_RETRIEVE")
	rec, err := s.get(ctx, tenant, id)
	var out *Certificate
	if err == nil {
		out, err = view(rec)
	}
	return out, op.Done(resource(id), err)
}

// List returns a page of the tenant's certificates, newest first, and the
// number of all that match.
func (s *Service) List(ctx context.Context, tenant string, q Query) ([]Certificate, int, error) {
	op := s.core.Start(ctx, tenant, "APIG_CERTIFICATE_RETRIEVE_LIST")
	out, total, err := s.list(ctx, tenant, q)
	return out, total, op.Done("", err)
}

func (s *Service) list(ctx context.Context, tenant string, q Query) ([]Certificate, int, error) {
	q.Offset = max(q.Offset, 0)
	switch {
	case q.Limit <= 0:
		q.Limit = DefaultLimit
	case q.Limit > MaxLimit:
		q.Limit = MaxLimit
	}
	sq := store.Query{Kind: RecordCertificate, Tenant: tenant, SortBy: "created", Desc: true,
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
	switch q.AlgorithmType {
	case "":
	case AlgorithmSM2:
		return []Certificate{}, 0, nil // hsmca holds no SM2 certificate
	default:
		fs, ok := algorithmFilters(q.AlgorithmType)
		if !ok {
			return nil, 0, signer.QueryInvalid("algorithm_type", nil, "must be RSA, ECC or SM2").With(ReasonBadValue)
		}
		sq.Filters = append(sq.Filters, fs...)
	}
	page, err := s.core.Store().List(ctx, sq)
	if err != nil {
		return nil, 0, signer.StoreErr(err, "certificate")
	}
	out := make([]Certificate, 0, len(page.Records))
	for i := range page.Records {
		v, err := view(&page.Records[i])
		if err != nil {
			return nil, 0, err
		}
		out = append(out, *v)
	}
	return out, page.Total, nil
}

// Update replaces a certificate and its key. The new key is committed
// before the old one is destroyed (signer.Core.ReplaceKey).
func (s *Service) Update(ctx context.Context, tenant, id string, in Input) (*Certificate, error) {
	defer clear(in.PrivateKey)
	defer clear(in.PrivateKeySign)
	op := s.core.Start(ctx, tenant, "APIG_CERTIFICATE_UPDATE")
	out, err := s.update(ctx, tenant, id, &in)
	return out, op.Done(resource(id), err)
}

func (s *Service) update(ctx context.Context, tenant, id string, in *Input) (*Certificate, error) {
	rec, err := s.get(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	c, err := checkInput(in, s.core.Now())
	if err != nil {
		return nil, err
	}
	defer encoding.WipeKey(c.key)
	if err := s.supportsKey(c); err != nil {
		return nil, err
	}
	if err := s.checkNameFree(ctx, tenant, c.data.Name, id); err != nil {
		return nil, err
	}
	next, err := newRecord(tenant, id, c, "", s.core.Now())
	if err != nil {
		return nil, err
	}
	next.Fields["created"] = rec.Fields["created"]
	if st, ok := rec.Fields[signer.KeyStateField]; ok {
		next.Fields[signer.KeyStateField] = st
	}
	err = s.core.ReplaceKey(ctx, rec, c.key, func(r *store.Record) {
		r.Unique, r.Fields, r.Data = next.Unique, next.Fields, next.Data
	})
	if err != nil {
		return nil, storeErr(err)
	}
	return view(rec)
}

// Delete deletes a certificate and destroys its key.
func (s *Service) Delete(ctx context.Context, tenant, id string) error {
	op := s.core.Start(ctx, tenant, "APIG_CERTIFICATE_DELETE")
	return op.Done(resource(id), s.delete(ctx, tenant, id))
}

func (s *Service) delete(ctx context.Context, tenant, id string) error {
	rec, err := s.get(ctx, tenant, id)
	if err != nil {
		return err
	}
	if err := s.core.DeleteWithKey(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: QuotaCertificates}}); err != nil {
		return storeErr(err)
	}
	return nil
}
