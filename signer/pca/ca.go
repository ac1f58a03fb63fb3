package pca

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// The CAs of a tenant: reading them, their state changes other than
// issuance and deletion, revocation, and the tenant's quotas.

// CA is a certificate authority as the family shows it.
type CA struct {
	ID     string
	Type   string
	Status string
	// PathLength is what the CA's certificate allows below it: nil when
	// the certificate sets no pathLenConstraint (every root, and some
	// imported CAs); a PENDING CA's is the requested one.
	PathLength         *int
	IssuerID           string
	IssuerName         string
	KeyAlgorithm       string
	SignatureAlgorithm string
	GenMode            string
	SerialNumber       string
	CreateTime         int64
	DeleteTime         int64
	NotBefore          int64
	NotAfter           int64
	DN                 DistinguishedName
	CRL                CRLConfiguration
	OCSP               bool // answers OCSP requests
}

func (s *Service) toCA(rec *store.Record, c *caRecord) *CA {
	issuerName := c.IssuerName
	if c.Type == CATypeRoot {
		// A root has no issuer: the service answers null for both its
		// issuer_id and issuer_name. (Roots stored before this named
		// themselves.)
		issuerName = ""
	}
	return &CA{ID: rec.ID, Type: c.Type, Status: c.effective(s.now()), PathLength: s.reportedPathLength(c),
		IssuerID: c.IssuerID, IssuerName: issuerName, KeyAlgorithm: c.KeyAlgorithm,
		SignatureAlgorithm: c.SignatureAlgorithm, GenMode: c.GenMode, SerialNumber: c.Serial,
		CreateTime: c.CreateTime, DeleteTime: c.DeleteTime, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		DN: c.DN, CRL: c.CRL, OCSP: c.OCSP}
}

// reportedPathLength is the path length a CA reports: its certificate's.
// The stored one is the rules' (issuance.CheckPathLength), where
// issuance.UnlimitedPathLength (7, what the public service stores for
// roots) stands for "no constraint" and an imported certificate's larger
// constraint counts as such; below it the stored value is the
// certificate's by construction, so only those CAs read their
// certificate (through the parsed-certificate cache).
func (s *Service) reportedPathLength(c *caRecord) *int {
	n := c.PathLength
	if n < issuance.UnlimitedPathLength || len(c.Cert) == 0 {
		return &n
	}
	cert, err := s.issuerCerts.Get(c.Cert)
	if err != nil {
		return &n // unreadable certificate: the stored value, as before
	}
	if !cert.BasicConstraintsValid || cert.MaxPathLen < 0 || (cert.MaxPathLen == 0 && !cert.MaxPathLenZero) {
		return nil
	}
	n = cert.MaxPathLen
	return &n
}

// transit reads a CA for op: its record, the CA, and the status op leads
// to, or the state machine's refusal. A caller changes the CA and saves
// it with saveTransit, starting over when asked to.
func (s *Service) transit(ctx context.Context, tenant, id string, op CAOp) (*store.Record, *caRecord, string, error) {
	rec, c, err := s.getCA(ctx, tenant, id)
	if err != nil {
		return nil, nil, "", err
	}
	to, err := CATransition(op, c.effective(s.now()))
	if err != nil {
		return nil, nil, "", err
	}
	return rec, c, to, nil
}

// saveTransit writes a CA changed by a transition with a version check.
// retry says that another writer got there first: the caller reads again
// (transit), and the state machine judges the new status.
func (s *Service) saveTransit(ctx context.Context, rec *store.Record, c *caRecord, id string, attempt int) (retry bool, err error) {
	err = s.putCA(ctx, rec, c)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, store.ErrVersionConflict) && attempt < 20:
		signer.Backoff(attempt)
		return true, nil
	case errors.Is(err, store.ErrVersionConflict):
		return false, &signer.Error{Kind: signer.KindConflict, Reason: ReasonBusy, Msg: "CA " + id + " is being changed concurrently; retry", Err: err}
	case errors.Is(err, store.ErrExists):
		return false, &signer.Error{Kind: signer.KindConflict, Reason: ReasonBadCert, Msg: "a certificate with this serial number already exists under the issuer", Err: err}
	}
	return false, signer.StoreErr(err, "CA")
}

// GetCA shows one CA.
func (s *Service) GetCA(ctx context.Context, tenant, id string) (*CA, error) {
	op := s.core.Start(ctx, tenant, "PCA_CA_RETRIEVE")
	s.sweepTenant(ctx, tenant)
	rec, c, err := s.getCA(ctx, tenant, id)
	if err != nil {
		return nil, op.Done(id, err)
	}
	out := s.toCA(rec, c)
	return out, op.Done(id, nil)
}

// CAQuery selects CAs to list.
type CAQuery struct {
	Name, Status, Type string
	SortKey, SortDir   string
	Limit, Offset      int
}

// ListCAs lists the tenant's CAs. A tenant holds at most its CA quota, so
// filtering on the derived EXPIRED status, sorting and paging happen here.
func (s *Service) ListCAs(ctx context.Context, tenant string, q CAQuery) ([]*CA, int, error) {
	op := s.core.Start(ctx, tenant, "PCA_CA_RETRIEVE_LIST")
	out, total, err := s.listCAs(ctx, tenant, q)
	return out, total, op.Done("", err)
}

func (s *Service) listCAs(ctx context.Context, tenant string, q CAQuery) ([]*CA, int, error) {
	if q.Status != "" && !slices.Contains(CAStatuses, q.Status) {
		return nil, 0, refused(ReasonBadParameter, "status", q.Status, "must be one of "+strings.Join(CAStatuses, ", "))
	}
	if q.Type != "" && q.Type != CATypeRoot && q.Type != CATypeSubordinate {
		return nil, 0, refused(ReasonBadParameter, "type", q.Type, "must be ROOT or SUBORDINATE")
	}
	s.sweepTenant(ctx, tenant)
	sq := store.Query{Kind: RecordCA, Tenant: tenant}
	if q.Type != "" {
		sq.Filters = append(sq.Filters, store.Filter{Field: "type", Value: q.Type})
	}
	if q.Name != "" {
		sq.Filters = append(sq.Filters, store.Filter{Field: "common_name", Value: q.Name, Match: store.Contains})
	}
	page, err := s.store.List(ctx, sq)
	if err != nil {
		return nil, 0, signer.StoreErr(err, "CA")
	}
	all := make([]*CA, 0, len(page.Records))
	for i := range page.Records {
		var c caRecord
		if err := json.Unmarshal(page.Records[i].Data, &c); err != nil {
			return nil, 0, signer.StoreErr(err, "CA")
		}
		ca := s.toCA(&page.Records[i], &c)
		if q.Status == "" || ca.Status == q.Status {
			all = append(all, ca)
		}
	}
	if err := sortCAs(all, q.SortKey, q.SortDir); err != nil {
		return nil, 0, err
	}
	total := len(all)
	from := min(q.Offset, total)
	to := min(from+q.Limit, total)
	return all[from:to], total, nil
}

func sortCAs(all []*CA, key, dir string) error {
	var cmp func(a, b *CA) int
	switch key {
	case "", "create_time":
		cmp = func(a, b *CA) int { return int(sign64(a.CreateTime - b.CreateTime)) }
	case "common_name":
		cmp = func(a, b *CA) int { return strings.Compare(a.DN.CommonName, b.DN.CommonName) }
	case "type":
		cmp = func(a, b *CA) int { return strings.Compare(a.Type, b.Type) }
	case "not_after":
		cmp = func(a, b *CA) int { return int(sign64(a.NotAfter - b.NotAfter)) }
	default:
		return refused(ReasonBadParameter, "sort_key", key, "must be create_time, common_name, type or not_after")
	}
	desc := false
	switch dir {
	case "", "DESC":
		desc = true
	case "ASC":
	default:
		return refused(ReasonBadParameter, "sort_dir", dir, "must be ASC or DESC")
	}
	if desc {
		// Ties then keep the newest first, like the rest of a DESC list.
		slices.Reverse(all)
	}
	slices.SortStableFunc(all, func(a, b *CA) int {
		if desc {
			return cmp(b, a)
		}
		return cmp(a, b)
	})
	return nil
}

func sign64(v int64) int64 {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// CACSR returns the PEM CSR of a PENDING CA.
func (s *Service) CACSR(ctx context.Context, tenant, id string) (string, error) {
	op := s.core.Start(ctx, tenant, "PCA_CA_CSR_EXPORT")
	_, c, _, err := s.transit(ctx, tenant, id, CAOpCSR)
	if err != nil {
		return "", op.Done(id, err)
	}
	out := encoding.EncodePEM("CERTIFICATE REQUEST", c.CSR)
	return out, op.Done(id, nil)
}

// ExportCA returns the CA's certificate and its chain (PEM): the
// certificates above it up to the root, as the public service orders them
// (intermediates, then the root). A root's chain is the root itself, as
// the public service answers it (its chain is never empty).
func (s *Service) ExportCA(ctx context.Context, tenant, id string) (string, string, error) {
	op := s.core.Start(ctx, tenant, "PCA_CA_EXPORT")
	_, c, _, err := s.transit(ctx, tenant, id, CAOpExport)
	if err != nil {
		return "", "", op.Done(id, err)
	}
	cert := encoding.EncodePEM("CERTIFICATE", c.Cert)
	if c.Type == CATypeRoot {
		return cert, cert, op.Done(id, nil)
	}
	chain, err := s.chainAbove(ctx, tenant, c)
	return cert, chain, op.Done(id, err)
}

// chainAbove is the PEM chain of c's issuers up to the root, or up to the
// chain supplied with an externally signed certificate.
func (s *Service) chainAbove(ctx context.Context, tenant string, c *caRecord) (string, error) {
	var b strings.Builder
	for depth := 0; depth < 16; depth++ {
		if chainSupplied(c) {
			for _, der := range c.ExtChain {
				b.WriteString(encoding.EncodePEM("CERTIFICATE", der))
			}
			break
		}
		if c.Type == CATypeRoot || c.IssuerID == "" {
			break
		}
		_, parent, err := s.getCA(ctx, tenant, c.IssuerID)
		if signer.KindOf(err) == signer.KindNotFound {
			break // the issuer was purged; the chain ends where it can
		}
		if err != nil {
			return "", err
		}
		b.WriteString(encoding.EncodePEM("CERTIFICATE", parent.Cert))
		c = parent
	}
	return b.String(), nil
}

// chainSupplied reports a CA whose chain is the one supplied with its
// imported certificate: an imported CA, unless it came without a chain
// and one of the tenant's CAs issued it (its chain is then the tenant's).
func chainSupplied(c *caRecord) bool {
	return c.GenMode == GenModeImport && (len(c.ExtChain) > 0 || c.IssuerID == "")
}

// DisableCA stops a CA from issuing.
func (s *Service) DisableCA(ctx context.Context, tenant, id string) error {
	op := s.core.Start(ctx, tenant, "PCA_CA_DISABLE")
	return op.Done(id, s.setStatus(ctx, tenant, id, CAOpDisable))
}

// EnableCA lets a disabled CA issue again.
func (s *Service) EnableCA(ctx context.Context, tenant, id string) error {
	op := s.core.Start(ctx, tenant, "PCA_CA_ENABLE")
	return op.Done(id, s.setStatus(ctx, tenant, id, CAOpEnable))
}

// RestoreCA cancels a scheduled deletion; the CA comes back DISABLED.
func (s *Service) RestoreCA(ctx context.Context, tenant, id string) error {
	op := s.core.Start(ctx, tenant, "PCA_CA_RESTORE")
	s.sweepTenant(ctx, tenant)
	err := op.Done(id, s.setStatus(ctx, tenant, id, CAOpRestore))
	if err == nil {
		s.markIndex(ctx, id, "")
	}
	return err
}

// setStatus moves a CA through op, which changes nothing but its status
// (and cancels a scheduled deletion).
func (s *Service) setStatus(ctx context.Context, tenant, id string, op CAOp) error {
	for attempt := 0; ; attempt++ {
		rec, c, to, err := s.transit(ctx, tenant, id, op)
		if err != nil {
			return err
		}
		c.Status = to
		if to != CADeleted {
			c.DeleteTime = 0
		}
		if retry, err := s.saveTransit(ctx, rec, c, id, attempt); !retry {
			return err
		}
	}
}

// RevokeCA revokes a subordinate CA: it goes on its issuer's CRL, which is
// regenerated at once.
func (s *Service) RevokeCA(ctx context.Context, tenant, id, reason string) error {
	op := s.core.Start(ctx, tenant, "PCA_CA_REVOKE")
	return op.Done(id, s.revokeCA(ctx, tenant, id, reason))
}

func (s *Service) revokeCA(ctx context.Context, tenant, id, reason string) error {
	code, err := parseReason(reason)
	if err != nil {
		return err
	}
	_, c, err := s.getCA(ctx, tenant, id)
	if err != nil {
		return err
	}
	if c.Type != CATypeSubordinate {
		return &signer.Error{Kind: signer.KindWrongState, Reason: ReasonCAType, Msg: "a root CA cannot be revoked; disable and delete it instead"}
	}
	if _, err := CATransition(CAOpRevoke, c.effective(s.now())); err != nil {
		return err
	}
	now := s.now()
	// The revocation entry goes first: once it exists, every later CRL of
	// the issuer lists the CA, whatever happens next.
	// An imported CA has an issuer id only when one of the tenant's CAs
	// issued its certificate, which that CA's CRL then lists.
	onCRL := c.IssuerID != ""
	if onCRL {
		if err := s.addRevocation(ctx, tenant, c.IssuerID, c.Serial, id, now, code, c.NotAfter); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		rec, cur, to, err := s.transit(ctx, tenant, id, CAOpRevoke)
		if err != nil {
			return err
		}
		cur.Status, cur.RevokeReason, cur.RevokeTime = to, reasonName(code), now.UnixMilli()
		retry, err := s.saveTransit(ctx, rec, cur, id, attempt)
		if err != nil {
			return err
		}
		if !retry {
			break
		}
	}
	if onCRL {
		err := s.crlChanged(ctx, tenant, c.IssuerID)
		if oerr := s.ocspRevoked(ctx, tenant, c.IssuerID, c.Serial); err == nil {
			err = oerr
		}
		return err
	}
	return nil
}

// QuotaUse is one resource's use in the tenant.
type QuotaUse struct {
	Type  string
	Used  int64
	Quota int64
}

// Quota types, as the public service names them.
const (
	QuotaTypeCA          = "CERTIFICATE_AUTHORITY"
	QuotaTypeCertificate = "CERTIFICATE"
)

// Quota reports the tenant's use and limit of one resource: its CAs
// (QuotaTypeCA) or its private certificates (QuotaTypeCertificate).
func (s *Service) Quota(ctx context.Context, tenant, typ string) (QuotaUse, error) {
	op := s.core.Start(ctx, tenant, "PCA_QUOTA_RETRIEVE")
	var res string
	switch typ {
	case QuotaTypeCA:
		res = QuotaCAs
	case QuotaTypeCertificate:
		res = QuotaCertificates
	default:
		return QuotaUse{}, op.Done("", refused(ReasonBadParameter, "type", typ,
			"must be "+QuotaTypeCA+" or "+QuotaTypeCertificate))
	}
	used, err := s.store.QuotaUsage(ctx, tenant, res)
	if err != nil {
		return QuotaUse{}, op.Done("", signer.StoreErr(err, "quota"))
	}
	return QuotaUse{Type: typ, Used: used, Quota: s.core.QuotaLimit(res)}, op.Done("", nil)
}
