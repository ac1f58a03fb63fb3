package pca

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// The private certificates of a tenant once issued: reading and listing
// them, their export, revocation and deletion.

// Certificate is a private certificate as the family shows it.
type Certificate struct {
	ID                 string
	Status             string
	Type               string
	IssuerID           string
	IssuerName         string
	KeyAlgorithm       string
	SignatureAlgorithm string
	GenMode            string
	SerialNumber       string
	CreateTime         int64
	NotBefore          int64
	NotAfter           int64
	DN                 DistinguishedName
	SANs               []SAN
	KeyUsages          []string
	EKU                ExtendedKeyUsage
	PathLength         *int
	RevokeReason       string
	RevokeTime         int64
}

func toCertAt(id string, c *certSummary, now time.Time) *Certificate {
	return &Certificate{ID: id, Status: c.effective(now), Type: c.Type, IssuerID: c.IssuerID,
		IssuerName: c.IssuerName, KeyAlgorithm: c.KeyAlgorithm, SignatureAlgorithm: c.SignatureAlgorithm,
		GenMode: c.GenMode, SerialNumber: c.Serial, CreateTime: c.CreateTime, NotBefore: c.NotBefore,
		NotAfter: c.NotAfter, DN: c.DN, SANs: c.SANs, KeyUsages: c.KeyUsages, EKU: c.EKU,
		PathLength: c.PathLength, RevokeReason: c.RevokeReason, RevokeTime: c.RevokeTime}
}

// GetCertificate shows one private certificate.
func (s *Service) GetCertificate(ctx context.Context, tenant, id string) (*Certificate, error) {
	op := s.core.Start(ctx, tenant, "PCA_CERTIFICATE_RETRIEVE")
	// The answer shows no certificate bytes: decode only what it shows.
	_, c, err := getRecord[certSummary](ctx, s, RecordCertificate, "certificate", tenant, id)
	if err != nil {
		return nil, op.Done(id, err)
	}
	out := toCertAt(id, c, s.now())
	return out, op.Done(id, nil)
}

// CertQuery selects private certificates to list.
type CertQuery struct {
	Name, Status     string
	SortKey, SortDir string
	Limit, Offset    int
}

// ListCertificates lists the tenant's private certificates. The store
// sorts and pages from its indexes (see Family): the derived ISSUED and
// EXPIRED states are ranges of the expiry field, and creation time is
// creation order.
func (s *Service) ListCertificates(ctx context.Context, tenant string, q CertQuery) ([]*Certificate, int, error) {
	op := s.core.Start(ctx, tenant, "PCA_CERTIFICATE_RETRIEVE_LIST")
	out, total, err := s.listCerts(ctx, tenant, q)
	return out, total, op.Done("", err)
}

func (s *Service) listCerts(ctx context.Context, tenant string, q CertQuery) ([]*Certificate, int, error) {
	sq := store.Query{Kind: RecordCertificate, Tenant: tenant, Offset: q.Offset, Limit: q.Limit, OffsetPaging: true}
	switch q.SortKey {
	case "", "create_time":
		// Creation time is creation order (the store's sequence, which
		// also breaks create_time ties), which the indexes keep within
		// one value. Only issuances committed within the same moment can
		// differ in order, by the time their store writes took.
		sq.SortBy = ""
	case "common_name", "not_after":
		sq.SortBy = q.SortKey
	default:
		return nil, 0, refused(ReasonBadParameter, "sort_key", q.SortKey, "must be create_time, common_name or not_after")
	}
	switch q.SortDir {
	case "", "DESC":
		sq.Desc = true
	case "ASC":
	default:
		return nil, 0, refused(ReasonBadParameter, "sort_dir", q.SortDir, "must be ASC or DESC")
	}
	switch q.Status {
	case "", CertRevoked, CertIssued, CertExpired:
	default:
		return nil, 0, refused(ReasonBadParameter, "status", q.Status, "must be ISSUED, EXPIRED or REVOKED")
	}
	if q.Status != "" {
		s.fillCertFields(ctx, tenant)
	}
	now := s.now()
	if q.Name != "" {
		sq.Filters = append(sq.Filters, store.Filter{Field: "common_name", Value: q.Name, Match: store.Contains})
	}
	// countValid: the matches are counted apart from the page.
	countValid := false
	switch {
	case q.Status == "":
	case sq.SortBy == "not_after" && q.Name == "":
		// Within one stored status, expiry order is not_after order.
		sq.Filters = certStatusRange(q.Status, now)
		sq.SortBy = certExpiryField
	case q.Status == CertRevoked:
		sq.Filters = append(sq.Filters, store.Filter{Field: "status", Value: CertRevoked})
	case q.Status == CertIssued && sq.SortBy == "" && q.Name == "":
		// Most stored ISSUED certificates are usually valid: walking them
		// in creation order fills a page after a few reads.
		countValid = true
		sq.Filters = append(certStatusRange(q.Status, now), store.Filter{Field: "status", Value: CertIssued})
		sq.NoTotal = true
	default:
		sq.Filters = append(sq.Filters, certStatusRange(q.Status, now)...)
	}
	if q.Limit == 0 {
		sq.Limit = 1 // only the total is wanted
	}
	page, err := s.store.List(ctx, sq)
	if err != nil {
		return nil, 0, signer.StoreErr(err, "certificate")
	}
	total := page.Total
	if countValid {
		if total, err = s.countValidCerts(ctx, tenant, now); err != nil {
			return nil, total, signer.StoreErr(err, "certificate")
		}
	}
	out := make([]*Certificate, 0, len(page.Records))
	if q.Limit == 0 {
		return out, total, nil
	}
	for i := range page.Records {
		var c certSummary
		if err := json.Unmarshal(page.Records[i].Data, &c); err != nil {
			return out, total, signer.StoreErr(err, "certificate")
		}
		out = append(out, toCertAt(page.Records[i].ID, &c, now))
	}
	return out, total, nil
}

// countValidCerts counts the certificates shown ISSUED at now: those
// stored ISSUED (one read of the status index's count) less the expired
// ones among them (a count over the expiry range of the expired, which
// are usually few; the valid ones' range can hold nearly every
// certificate, and bolt counts a range by walking it). The two counts are
// separate reads: a write between them can move the total by its own
// change.
func (s *Service) countValidCerts(ctx context.Context, tenant string, now time.Time) (int, error) {
	stored, err := s.store.List(ctx, store.Query{Kind: RecordCertificate, Tenant: tenant, OffsetPaging: true, Limit: 1,
		Filters: []store.Filter{{Field: "status", Value: CertIssued}}})
	if err != nil {
		return 0, err
	}
	expired, err := s.store.List(ctx, store.Query{Kind: RecordCertificate, Tenant: tenant, Limit: 1,
		Filters: certStatusRange(CertExpired, now), SortBy: certExpiryField})
	if err != nil {
		return 0, err
	}
	return max(stored.Total-expired.Total, 0), nil
}

// fillCertFields gives the tenant's certificates stored before the expiry
// field existed their current fields, so that status lists find them. It
// costs one index count when there are none.
func (s *Service) fillCertFields(ctx context.Context, tenant string) {
	for {
		page, err := s.store.List(ctx, store.Query{Kind: RecordCertificate, Tenant: tenant, Limit: 500,
			Filters: []store.Filter{{Field: certExpiryField, Value: ""}}})
		if err != nil || len(page.Records) == 0 {
			return
		}
		done := 0
		for i := range page.Records {
			r := &page.Records[i]
			var c certRecord
			if json.Unmarshal(r.Data, &c) != nil {
				continue
			}
			r.Fields = certFields(&c)
			// A conflict means a concurrent write, which sets the fields.
			if s.store.Update(ctx, r, store.WriteOpts{}) == nil {
				done++
			}
		}
		if done == 0 {
			return
		}
	}
}

// CertExport asks for a certificate's export.
type CertExport struct {
	Type       string // OTHER, NGINX, APACHE (PEM); IIS and TOMCAT are not offered
	Compressed string
	Password   string
}

// Exported is an exported certificate; PrivateKey is set only for keys
// hsmca generated.
type Exported struct {
	Certificate, Chain, PrivateKey string
}

// ExportCertificate returns the certificate, its chain and, for a key the
// daemon generated, the private key: PKCS#8, encrypted under the password
// when one is given.
func (s *Service) ExportCertificate(ctx context.Context, tenant, id string, in CertExport) (*Exported, error) {
	op := s.core.Start(ctx, tenant, "PCA_CERTIFICATE_EXPORT")
	out, err := s.exportCertificate(ctx, tenant, id, in)
	return out, op.Done(id, err)
}

func (s *Service) exportCertificate(ctx context.Context, tenant, id string, in CertExport) (*Exported, error) {
	switch strings.ToUpper(in.Type) {
	case "", "OTHER", "NGINX", "APACHE":
	case "IIS", "TOMCAT":
		return nil, &signer.Error{Kind: signer.KindInvalid, Reason: ReasonExportRefused, Msg: in.Type + " export (PFX/JKS) is not offered; use OTHER, NGINX or APACHE (PEM)"}
	default:
		return nil, refused(ReasonBadParameter, "type", in.Type, "must be OTHER, NGINX, APACHE, IIS or TOMCAT")
	}
	switch strings.ToLower(in.Compressed) {
	case "", "false":
	case "true":
		return nil, &signer.Error{Kind: signer.KindInvalid, Reason: ReasonExportRefused, Msg: "compressed (zip) export is not offered"}
	default:
		return nil, refused(ReasonBadParameter, "is_compressed", in.Compressed, "must be \"true\" or \"false\"")
	}
	if in.Password != "" && (utf8.RuneCountInString(in.Password) < 6 || len(in.Password) > 64 || issuance.HasControl(in.Password)) {
		return nil, refused(ReasonBadParameter, "password", nil, "must be 6 to 64 printable characters")
	}
	_, c, err := s.getCert(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if _, err := CertTransition(CertOpExport, c.effective(s.now())); err != nil {
		return nil, err
	}
	out := &Exported{Certificate: encoding.EncodePEM("CERTIFICATE", c.Cert)}
	if _, ic, err := s.getCA(ctx, tenant, c.IssuerID); err == nil {
		above, err := s.chainAbove(ctx, tenant, ic)
		if err != nil {
			return out, err
		}
		out.Chain = encoding.EncodePEM("CERTIFICATE", ic.Cert) + above
	}
	if strings.EqualFold(in.Type, "NGINX") {
		out.Certificate += out.Chain
	}
	if len(c.WrappedKey) == 0 {
		return out, nil
	}
	pkcs8, err := s.core.Unseal(ctx, leafWrapKeyID, c.WrappedKey, leafKeyAAD(tenant, id))
	if err != nil {
		return out, err
	}
	defer clear(pkcs8)
	if in.Password == "" {
		out.PrivateKey = encoding.EncodePEM("PRIVATE KEY", pkcs8)
		return out, nil
	}
	release, err := s.core.Heavy(ctx, tenant, signer.HeavyExportPassword)
	if err != nil {
		return out, err
	}
	enc, err := encoding.EncryptPKCS8(pkcs8, in.Password)
	release()
	if err != nil {
		return out, err
	}
	out.PrivateKey = string(enc)
	return out, nil
}

// RevokeCertificate revokes a private certificate and regenerates its
// issuer's CRL.
func (s *Service) RevokeCertificate(ctx context.Context, tenant, id, reason string) error {
	op := s.core.Start(ctx, tenant, "PCA_CERTIFICATE_REVOKE")
	return op.Done(id, s.revokeCertificate(ctx, tenant, id, reason))
}

func (s *Service) revokeCertificate(ctx context.Context, tenant, id, reason string) error {
	code, err := parseReason(reason)
	if err != nil {
		return err
	}
	_, c, err := s.getCert(ctx, tenant, id)
	if err != nil {
		return err
	}
	if _, err := CertTransition(CertOpRevoke, c.effective(s.now())); err != nil {
		return err
	}
	now := s.now()
	if err := s.addRevocation(ctx, tenant, c.IssuerID, c.Serial, id, now, code, c.NotAfter); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		rec, cur, err := s.getCert(ctx, tenant, id)
		if err != nil {
			return err
		}
		to, err := CertTransition(CertOpRevoke, cur.effective(s.now()))
		if err != nil {
			return err
		}
		cur.Status, cur.RevokeReason, cur.RevokeTime = to, reasonName(code), now.UnixMilli()
		if rec.Data, err = json.Marshal(cur); err != nil {
			return err
		}
		rec.Fields = certFields(cur)
		err = s.store.Update(ctx, rec, store.WriteOpts{})
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrVersionConflict) || attempt >= 20 {
			return signer.StoreErr(err, "certificate")
		}
		signer.Backoff(attempt)
	}
	err = s.crlChanged(ctx, tenant, c.IssuerID)
	if oerr := s.ocspRevoked(ctx, tenant, c.IssuerID, c.Serial); err == nil {
		err = oerr
	}
	return err
}

// reasonDeleted is the revocation reason of a certificate deleted while
// still valid (RFC 5280 cessationOfOperation).
const reasonDeleted = 5

// DeleteCertificate deletes a private certificate record and gives back
// its quota unit. A certificate still ISSUED (unexpired and never
// revoked) is revoked first, with reason CESSATION_OF_OPERATION, and its
// issuer's CRL re-signed: deleting the record must not leave a valid
// certificate that nobody can revoke any more. A revoked certificate
// stays on its issuer's CRL; an expired one is simply deleted.
func (s *Service) DeleteCertificate(ctx context.Context, tenant, id string) error {
	op := s.core.Start(ctx, tenant, "PCA_CERTIFICATE_DELETE")
	return op.Done(id, s.deleteCertificate(ctx, tenant, id))
}

func (s *Service) deleteCertificate(ctx context.Context, tenant, id string) error {
	_, c, err := s.getCert(ctx, tenant, id)
	if err != nil {
		return err
	}
	now := s.now()
	status := c.effective(now)
	if _, err := CertTransition(CertOpDelete, status); err != nil {
		return err
	}
	revoke := status == CertIssued
	if revoke {
		// The entry goes first: from then on every CRL of the issuer lists
		// the certificate, whatever happens next.
		if err := s.addRevocation(ctx, tenant, c.IssuerID, c.Serial, id, now, reasonDeleted, c.NotAfter); err != nil {
			return err
		}
	}
	err = s.store.Delete(ctx, RecordCertificate, tenant, id, store.WriteOpts{
		Quota: &store.Quota{Resource: QuotaCertificates, Limit: s.core.QuotaLimit(QuotaCertificates)}})
	if errors.Is(err, store.ErrNotFound) {
		return notFound("certificate", id)
	}
	if err != nil {
		return signer.StoreErr(err, "certificate")
	}
	s.forgetTags(ctx, RecordCertTags, tenant, id)
	if revoke {
		// The deletion has happened; a CRL that could not be signed now
		// stays marked and the background refresher signs it.
		if err := s.crlChanged(ctx, tenant, c.IssuerID); err != nil {
			s.core.Log().Warn("CRL not re-signed after a certificate deletion; the refresher retries",
				"issuer", c.IssuerID, "err", err)
		}
		if err := s.ocspRevoked(ctx, tenant, c.IssuerID, c.Serial); err != nil {
			s.core.Log().Warn("OCSP answers not updated after a certificate deletion",
				"issuer", c.IssuerID, "err", err)
		}
	}
	return nil
}
