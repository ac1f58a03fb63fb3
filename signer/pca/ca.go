package pca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/store"
)

// CA types and generation modes.
const (
	CATypeRoot        = "ROOT"
	CATypeSubordinate = "SUBORDINATE"

	GenModeGenerate = "GENERATE" // key and certificate made here
	GenModeImport   = "IMPORT"   // key made here, certificate signed outside
)

// CRLConfiguration says whether a CA publishes a CRL and for how long each
// one is valid.
type CRLConfiguration struct {
	Enabled   bool `json:"enabled"`
	ValidDays int  `json:"valid_days"`
}

const (
	minCRLDays, maxCRLDays = 7, 30
	defaultCRLDays         = 7
	minPendingDays         = 7
	maxPendingDays         = 30
)

// caRecord is the stored form of a CA.
type caRecord struct {
	Type               string            `json:"type"`
	Status             string            `json:"status"` // never EXPIRED; see effective
	PathLength         int               `json:"path_length"`
	IssuerID           string            `json:"issuer_id,omitempty"`
	IssuerName         string            `json:"issuer_name,omitempty"`
	KeyAlgorithm       string            `json:"key_algorithm"`
	SignatureAlgorithm string            `json:"signature_algorithm"`
	GenMode            string            `json:"gen_mode"`
	Serial             string            `json:"serial_number,omitempty"`
	CreateTime         int64             `json:"create_time"`
	DeleteTime         int64             `json:"delete_time,omitempty"`
	NotBefore          int64             `json:"not_before,omitempty"`
	NotAfter           int64             `json:"not_after,omitempty"`
	DN                 DistinguishedName `json:"distinguished_name"`
	CRL                CRLConfiguration  `json:"crl_configuration"`
	KeyUsages          []string          `json:"key_usages,omitempty"`
	Cert               []byte            `json:"cert,omitempty"`
	CSR                []byte            `json:"csr,omitempty"`
	ExtChain           [][]byte          `json:"ext_chain,omitempty"` // chain of an imported certificate
	CRLNumber          int64             `json:"crl_number"`
	RevokeReason       string            `json:"revoke_reason,omitempty"`
	RevokeTime         int64             `json:"revoke_time,omitempty"`
}

// effective is the status a client sees: an ACTIVED CA past its notAfter
// is EXPIRED.
func (c *caRecord) effective(now time.Time) string {
	if c.Status == CAActived && c.NotAfter != 0 && now.UnixMilli() >= c.NotAfter {
		return CAExpired
	}
	return c.Status
}

func (c *caRecord) certificate() (*x509.Certificate, error) {
	if len(c.Cert) == 0 {
		return nil, errors.New("CA has no certificate")
	}
	return x509.ParseCertificate(c.Cert)
}

// CA is a certificate authority as the family shows it.
type CA struct {
	ID                 string
	Type               string
	Status             string
	PathLength         int
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
}

func (s *Service) toCA(rec *store.Record, c *caRecord) *CA {
	return &CA{ID: rec.ID, Type: c.Type, Status: c.effective(s.now()), PathLength: c.PathLength,
		IssuerID: c.IssuerID, IssuerName: c.IssuerName, KeyAlgorithm: c.KeyAlgorithm,
		SignatureAlgorithm: c.SignatureAlgorithm, GenMode: c.GenMode, SerialNumber: c.Serial,
		CreateTime: c.CreateTime, DeleteTime: c.DeleteTime, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		DN: c.DN, CRL: c.CRL}
}

// msField encodes epoch milliseconds so that byte order is time order.
func msField(ms int64) string { return fmt.Sprintf("%016d", ms) }

// caFields are the indexed values of a CA record.
func caFields(keyID string, c *caRecord) map[string]string {
	return map[string]string{
		signer.KeyField: keyID, signer.KeyAlgorithmField: c.KeyAlgorithm,
		"status": c.Status, "type": c.Type, "common_name": c.DN.CommonName,
		"create_time": msField(c.CreateTime), "not_after": msField(c.NotAfter),
		"issuer_id": c.IssuerID,
	}
}

func serialKey(issuerID, serial string) string { return "serial:" + issuerID + ":" + serial }

// caUnique is the serial-number key of a CA certificate signed by one of
// the tenant's CAs (a root is its own issuer).
func caUnique(id string, c *caRecord) []string {
	switch {
	case c.Serial == "" || c.GenMode == GenModeImport:
		return nil
	case c.Type == CATypeRoot:
		return []string{serialKey(id, c.Serial)}
	}
	return []string{serialKey(c.IssuerID, c.Serial)}
}

func (s *Service) getCA(ctx context.Context, tenant, id string) (*store.Record, *caRecord, error) {
	return getRecord[caRecord](ctx, s, RecordCA, "CA", tenant, id)
}

// getRecord reads and decodes one PCA record by its UUID; a malformed,
// unknown or foreign id answers the family's not-found alike.
func getRecord[T any](ctx context.Context, s *Service, kind, what, tenant, id string) (*store.Record, *T, error) {
	return getRecordVia(ctx, s, kind, what, tenant, id, func(b []byte) (T, error) {
		var v T
		err := json.Unmarshal(b, &v)
		return v, err
	})
}

// getRecordVia is getRecord with the decoding step given (a
// bytesCache's for read-only uses on hot paths).
func getRecordVia[T any](ctx context.Context, s *Service, kind, what, tenant, id string, decode func([]byte) (T, error)) (*store.Record, *T, error) {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return nil, nil, notFound(what, id)
	}
	rec, err := s.store.Get(ctx, kind, tenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, notFound(what, id)
		}
		return nil, nil, signer.StoreErr(err, what)
	}
	v, err := decode(rec.Data)
	if err != nil {
		return nil, nil, signer.StoreErr(err, what)
	}
	return rec, &v, nil
}

// putCA writes c into rec with a version check.
func (s *Service) putCA(ctx context.Context, rec *store.Record, c *caRecord) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	rec.Data = data
	rec.Fields = caFields(rec.Fields[signer.KeyField], c)
	rec.Unique = caUnique(rec.ID, c)
	return s.store.Update(ctx, rec, store.WriteOpts{})
}

// issuer is a CA about to sign, with what signing needs. ca may be shared
// with other requests (see loadIssuer): read it, never change it.
type issuer struct {
	rec  *store.Record
	ca   *caRecord
	cert *x509.Certificate
}

// loadIssuer resolves a body's issuer_id: a CA of the tenant whose status
// allows issuing.
func (s *Service) loadIssuer(ctx context.Context, tenant, id string) (*issuer, error) {
	if id == "" {
		return nil, refused(ReasonBadCAID, "issuer_id", id, "is required")
	}
	// Read-only from here on: the decoded record may be shared (see
	// bytesCache), which spares every issuance a JSON decode of its CA.
	rec, c, err := getRecordVia(ctx, s, RecordCA, "CA", tenant, id, s.issuers.Get)
	if err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return nil, refused(ReasonBadCAID, "issuer_id", id, "is not a CA of this tenant")
		}
		return nil, err
	}
	if _, err := CATransition(CAOpIssue, c.effective(s.now())); err != nil {
		err.(*signer.Error).Msg = "issuer " + id + ": " + err.(*signer.Error).Msg
		return nil, err
	}
	cert, err := s.issuerCerts.Get(c.Cert)
	if err != nil {
		return nil, signer.StoreErr(err, "CA certificate")
	}
	return &issuer{rec: rec, ca: c, cert: cert}, nil
}

// sign signs tmpl with the issuer's HSM key.
func (s *Service) sign(ctx context.Context, is *issuer, tmpl *x509.Certificate, pub crypto.PublicKey, hash, op string) ([]byte, error) {
	key, err := s.core.TimedSigner(ctx, is.rec.Fields[signer.KeyField], is.ca.KeyAlgorithm, op)
	if err != nil {
		return nil, err
	}
	tmpl.SignatureAlgorithm = x509SigAlg(is.ca.KeyAlgorithm, hash)
	der, err := issuance.SignCertificate(tmpl, is.cert, pub, key, issuance.KeyIDSHA1)
	if err != nil {
		return nil, signer.HSMError(err, "CA key")
	}
	return der, nil
}

// caTemplate is the profile of every CA certificate: basicConstraints CA
// (critical) with the path length, keyCertSign and cRLSign always, plus
// the requested usages.
func caTemplate(dn DistinguishedName, nb, na time.Time, pathLen int, ku x509.KeyUsage) *x509.Certificate {
	t := &x509.Certificate{
		Subject: dn.pkixName(), NotBefore: nb, NotAfter: na,
		BasicConstraintsValid: true, IsCA: true,
		KeyUsage: ku | x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if pathLen >= unlimitedPathLength {
		t.MaxPathLen = -1
	} else {
		t.MaxPathLen = pathLen
		t.MaxPathLenZero = pathLen == 0
	}
	return t
}

// setCert records a freshly signed certificate in c.
func setCert(c *caRecord, der []byte, cert *x509.Certificate) {
	c.Cert = der
	c.Serial = cert.SerialNumber.Text(16)
	c.NotBefore = cert.NotBefore.UnixMilli()
	c.NotAfter = cert.NotAfter.UnixMilli()
}

// CACreate is the body of a CA creation.
type CACreate struct {
	Type               string
	DN                 *DistinguishedName
	KeyAlgorithm       string
	SignatureAlgorithm string
	Validity           *Validity
	IssuerID           string
	PathLength         *int
	KeyUsages          []string
	CRL                *CRLConfiguration
}

func checkCRLConfig(in *CRLConfiguration) (CRLConfiguration, error) {
	out := CRLConfiguration{ValidDays: defaultCRLDays}
	if in == nil {
		return out, nil
	}
	out.Enabled = in.Enabled
	if in.ValidDays != 0 || in.Enabled {
		if in.ValidDays < minCRLDays || in.ValidDays > maxCRLDays {
			return out, refused(ReasonBadParameter, "crl_configuration.valid_days", in.ValidDays,
				fmt.Sprintf("must be from %d to %d", minCRLDays, maxCRLDays))
		}
		out.ValidDays = in.ValidDays
	}
	return out, nil
}

// CreateCA creates a root (signed at once), a subordinate signed at once
// by one of the tenant's CAs (issuer_id, signature_algorithm and validity
// all given), or a PENDING subordinate waiting for activation or an
// externally signed certificate.
func (s *Service) CreateCA(ctx context.Context, tenant string, in CACreate) (string, error) {
	var id string
	err := s.run(ctx, tenant, "PCA_CA_CREATE", func() (string, error) {
		var err error
		id, err = s.createCA(ctx, tenant, in)
		return id, err
	})
	return id, err
}

func (s *Service) createCA(ctx context.Context, tenant string, in CACreate) (string, error) {
	now := s.now()
	if in.Type != CATypeRoot && in.Type != CATypeSubordinate {
		return "", refused(ReasonBadParameter, "type", in.Type, "must be ROOT or SUBORDINATE")
	}
	if in.DN == nil {
		return "", refused(ReasonBadDN, "distinguished_name", nil, "is required")
	}
	if err := in.DN.check(true); err != nil {
		return "", err
	}
	alg, err := parseKeyAlgorithm("key_algorithm", in.KeyAlgorithm)
	if err != nil {
		return "", err
	}
	root := in.Type == CATypeRoot
	signNow := root || (in.IssuerID != "" && in.SignatureAlgorithm != "" && in.Validity != nil)
	hash, err := checkSigAlg("signature_algorithm", in.SignatureAlgorithm, root)
	if err != nil {
		return "", err
	}
	ku, err := parseKeyUsages(in.KeyUsages)
	if err != nil {
		return "", err
	}
	if len(in.KeyUsages) == 0 {
		// A CA key also signs OCSP responses and the like.
		ku = x509.KeyUsageDigitalSignature
	}
	crl, err := checkCRLConfig(in.CRL)
	if err != nil {
		return "", err
	}
	c := &caRecord{Type: in.Type, Status: CAPending, KeyAlgorithm: string(alg), SignatureAlgorithm: hash,
		GenMode: GenModeGenerate, CreateTime: now.UnixMilli(), DN: *in.DN, CRL: crl}

	var (
		is     *issuer
		nb, na time.Time
	)
	switch {
	case root:
		c.PathLength = unlimitedPathLength
		if nb, na, err = in.Validity.window(now, maxRootValidity); err != nil {
			return "", err
		}
	default:
		c.PathLength = 0
		if in.PathLength != nil {
			c.PathLength = *in.PathLength
		}
		if c.PathLength < 0 || c.PathLength > 6 {
			return "", refused(ReasonBadParameter, "path_length", c.PathLength, "must be from 0 to 6")
		}
		if in.IssuerID != "" {
			// Checked even when the CA stays PENDING: a wrong id is a
			// mistake worth reporting now.
			if _, _, err := s.getCA(ctx, tenant, in.IssuerID); err != nil {
				if signer.KindOf(err) == signer.KindNotFound {
					return "", refused(ReasonBadCAID, "issuer_id", in.IssuerID, "is not a CA of this tenant")
				}
				return "", err
			}
		}
		if signNow {
			if is, err = s.loadIssuer(ctx, tenant, in.IssuerID); err != nil {
				return "", err
			}
			if err := checkPathLength("path_length", c.PathLength, is.ca.PathLength); err != nil {
				return "", err
			}
			if nb, na, err = in.Validity.window(now, maxChildValidity); err != nil {
				return "", err
			}
			if err := withinIssuer(nb, na, is.cert); err != nil {
				return "", err
			}
			if err := s.checkCANames(ctx, tenant, is, *in.DN); err != nil {
				return "", err
			}
		}
	}
	c.KeyUsages = keyUsageList(ku | x509.KeyUsageCertSign | x509.KeyUsageCRLSign)

	// Fail fast before the slow key generation; the store enforces the
	// quota atomically at commit.
	limit := s.core.QuotaLimit(QuotaCAs)
	if used, err := s.store.QuotaUsage(ctx, tenant, QuotaCAs); err == nil && limit >= 0 && used >= limit {
		return "", &signer.Error{Kind: signer.KindQuotaExceeded, Reason: ReasonCAQuota,
			Msg: fmt.Sprintf("the tenant has reached its quota of %d CAs", limit)}
	}

	id := uuid.NewString()
	// A CA signed now with CRLs on is due for its first CRL at once, so
	// that the refresher signs it should the signature below not happen.
	crlDue := signer.CRLDueNever
	if signNow && crl.Enabled {
		crlDue = signer.CRLDueAt(time.UnixMilli(0))
	}
	idx := &store.Record{Kind: RecordIndex, Tenant: store.PlatformTenant, ID: id,
		Fields: map[string]string{"tenant": tenant, signer.CRLDueField: crlDue},
		Data:   json.RawMessage(`{"tenant":` + strconv.Quote(tenant) + `}`)}
	if err := s.store.Create(ctx, idx, store.WriteOpts{}); err != nil {
		return "", signer.StoreErr(err, "CA index")
	}
	committed := false
	defer func() {
		if !committed {
			_ = s.store.Delete(context.WithoutCancel(ctx), RecordIndex, store.PlatformTenant, id, store.WriteOpts{})
		}
	}()

	nk, err := s.core.GenerateKey(ctx, tenant, RecordCA, id, alg)
	if err != nil {
		return id, err
	}
	if err := s.buildCA(ctx, id, c, nk, is, nb, na, ku, signNow); err != nil {
		s.core.AbandonKey(nk)
		return id, err
	}
	data, err := json.Marshal(c)
	if err != nil {
		s.core.AbandonKey(nk)
		return id, err
	}
	rec := &store.Record{Kind: RecordCA, Tenant: tenant, ID: id, Unique: caUnique(id, c),
		Fields: caFields(nk.ID, c), Data: data}
	err = s.store.Create(ctx, rec, store.WriteOpts{Intent: nk.Intent,
		Quota: &store.Quota{Resource: QuotaCAs, Limit: limit}})
	if err != nil {
		s.core.AbandonKey(nk)
		if errors.Is(err, store.ErrQuotaExceeded) {
			return id, &signer.Error{Kind: signer.KindQuotaExceeded, Reason: ReasonCAQuota,
				Msg: fmt.Sprintf("the tenant has reached its quota of %d CAs", limit), Err: err}
		}
		return id, signer.StoreErr(err, "CA")
	}
	committed = true
	if c.Status == CAActived && c.CRL.Enabled {
		if err := s.refreshCRL(ctx, tenant, id); err != nil {
			s.core.Log().Warn("first CRL of a new CA not generated", "ca", id, "err", err)
		}
	}
	return id, nil
}

// buildCA makes the certificate (root, or subordinate signed now) or the
// CSR (PENDING subordinate) of a new CA whose key is nk.
func (s *Service) buildCA(ctx context.Context, id string, c *caRecord, nk *signer.NewKey, is *issuer, nb, na time.Time, ku x509.KeyUsage, signNow bool) error {
	pub := nk.Signer.Public()
	if !signNow {
		own := s.core.Timed(nk.Signer, "pca_csr", c.KeyAlgorithm)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: c.DN.pkixName(), SignatureAlgorithm: x509SigAlg(c.KeyAlgorithm, c.SignatureAlgorithm),
		}, own)
		if err != nil {
			return signer.HSMError(err, "CA key")
		}
		c.CSR = der
		return nil
	}
	tmpl := caTemplate(c.DN, nb, na, c.PathLength, ku)
	var (
		der []byte
		err error
	)
	if is == nil {
		own := s.core.Timed(nk.Signer, "pca_ca_certificate", c.KeyAlgorithm)
		tmpl.SignatureAlgorithm = x509SigAlg(c.KeyAlgorithm, c.SignatureAlgorithm)
		der, err = issuance.SignCertificate(tmpl, nil, pub, own, issuance.KeyIDSHA1)
		if err != nil {
			err = signer.HSMError(err, "CA key")
		}
	} else {
		der, err = s.sign(ctx, is, tmpl, pub, c.SignatureAlgorithm, "pca_ca_certificate")
		c.IssuerID, c.IssuerName = is.rec.ID, is.ca.DN.CommonName
	}
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	setCert(c, der, cert)
	if is == nil {
		c.IssuerName = c.DN.CommonName
	}
	c.Status = CAActived
	return nil
}

// transitCA moves a CA through op: it reads the record, asks the state
// machine, lets mutate change the record and writes it with a version
// check, starting over when another writer got there first (the state
// machine then judges the new status).
func (s *Service) transitCA(ctx context.Context, tenant, id string, op CAOp, mutate func(rec *store.Record, c *caRecord, from, to string) error) (*store.Record, *caRecord, error) {
	for attempt := 0; ; attempt++ {
		rec, c, err := s.getCA(ctx, tenant, id)
		if err != nil {
			return nil, nil, err
		}
		from := c.effective(s.now())
		to, err := CATransition(op, from)
		if err != nil {
			return nil, nil, err
		}
		if err := mutate(rec, c, from, to); err != nil {
			return nil, nil, err
		}
		err = s.putCA(ctx, rec, c)
		switch {
		case err == nil:
			return rec, c, nil
		case errors.Is(err, store.ErrVersionConflict) && attempt < 20:
			signer.Backoff(attempt)
			continue
		case errors.Is(err, store.ErrVersionConflict):
			return nil, nil, &signer.Error{Kind: signer.KindConflict, Reason: ReasonBusy, Msg: "CA " + id + " is being changed concurrently; retry", Err: err}
		case errors.Is(err, store.ErrExists):
			return nil, nil, &signer.Error{Kind: signer.KindConflict, Reason: ReasonBadCert, Msg: "a certificate with this serial number already exists under the issuer", Err: err}
		}
		return nil, nil, signer.StoreErr(err, "CA")
	}
}

// GetCA shows one CA.
func (s *Service) GetCA(ctx context.Context, tenant, id string) (*CA, error) {
	var out *CA
	err := s.run(ctx, tenant, "PCA_CA_RETRIEVE", func() (string, error) {
		s.sweepTenant(ctx, tenant)
		rec, c, err := s.getCA(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		out = s.toCA(rec, c)
		return id, nil
	})
	return out, err
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
	var (
		out   []*CA
		total int
	)
	err := s.run(ctx, tenant, "PCA_CA_RETRIEVE_LIST", func() (string, error) {
		if q.Status != "" && !slices.Contains(CAStatuses, q.Status) {
			return "", refused(ReasonBadParameter, "status", q.Status, "must be one of "+strings.Join(CAStatuses, ", "))
		}
		if q.Type != "" && q.Type != CATypeRoot && q.Type != CATypeSubordinate {
			return "", refused(ReasonBadParameter, "type", q.Type, "must be ROOT or SUBORDINATE")
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
			return "", signer.StoreErr(err, "CA")
		}
		all := make([]*CA, 0, len(page.Records))
		for i := range page.Records {
			var c caRecord
			if err := json.Unmarshal(page.Records[i].Data, &c); err != nil {
				return "", signer.StoreErr(err, "CA")
			}
			ca := s.toCA(&page.Records[i], &c)
			if q.Status == "" || ca.Status == q.Status {
				all = append(all, ca)
			}
		}
		if err := sortCAs(all, q.SortKey, q.SortDir); err != nil {
			return "", err
		}
		total = len(all)
		from := min(q.Offset, total)
		to := min(from+q.Limit, total)
		out = all[from:to]
		return "", nil
	})
	return out, total, err
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

// CAActivate is the body of an activation (the public page's example).
type CAActivate struct {
	IssuerID           string
	SignatureAlgorithm string
	Validity           *Validity
	PathLength         *int
}

// ActivateCA signs a PENDING subordinate with one of the tenant's CAs.
func (s *Service) ActivateCA(ctx context.Context, tenant, id string, in CAActivate) error {
	return s.run(ctx, tenant, "PCA_CA_ACTIVATE", func() (string, error) {
		hash, err := checkSigAlg("signature_algorithm", in.SignatureAlgorithm, true)
		if err != nil {
			return id, err
		}
		pathLen := 0
		if in.PathLength != nil {
			pathLen = *in.PathLength
		}
		if pathLen < 0 || pathLen > 6 {
			return id, refused(ReasonBadParameter, "path_length", pathLen, "must be from 0 to 6")
		}
		_, _, err = s.transitCA(ctx, tenant, id, CAOpActivate, func(rec *store.Record, c *caRecord, _, to string) error {
			if in.IssuerID == id {
				return refused(ReasonBadCAID, "issuer_id", in.IssuerID, "a CA cannot sign itself")
			}
			is, err := s.loadIssuer(ctx, tenant, in.IssuerID)
			if err != nil {
				return err
			}
			if err := checkPathLength("path_length", pathLen, is.ca.PathLength); err != nil {
				return err
			}
			now := s.now()
			nb, na, err := in.Validity.window(now, maxChildValidity)
			if err != nil {
				return err
			}
			if err := withinIssuer(nb, na, is.cert); err != nil {
				return err
			}
			if err := s.checkCANames(ctx, tenant, is, c.DN); err != nil {
				return err
			}
			csr, err := x509.ParseCertificateRequest(c.CSR)
			if err != nil {
				return signer.StoreErr(err, "CA CSR")
			}
			ku, _ := parseKeyUsages(c.KeyUsages)
			c.PathLength = pathLen
			der, err := s.sign(ctx, is, caTemplate(c.DN, nb, na, pathLen, ku), csr.PublicKey, hash, "pca_ca_certificate")
			if err != nil {
				return err
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return err
			}
			setCert(c, der, cert)
			c.SignatureAlgorithm = hash
			c.IssuerID, c.IssuerName = is.rec.ID, is.ca.DN.CommonName
			c.Status = to
			return nil
		})
		if err == nil {
			s.firstCRL(ctx, tenant, id)
		}
		return id, err
	})
}

// firstCRL publishes the first CRL of a CA that just got its certificate.
func (s *Service) firstCRL(ctx context.Context, tenant, id string) {
	if _, c, err := s.getCA(ctx, tenant, id); err == nil && c.CRL.Enabled {
		if err := s.crlChanged(ctx, tenant, id); err != nil {
			s.core.Log().Warn("first CRL of a CA not generated", "ca", id, "err", err)
		}
	}
}

// CACSR returns the PEM CSR of a PENDING CA.
func (s *Service) CACSR(ctx context.Context, tenant, id string) (string, error) {
	var out string
	err := s.run(ctx, tenant, "PCA_CA_CSR_EXPORT", func() (string, error) {
		_, c, err := s.getCA(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		if _, err := CATransition(CAOpCSR, c.effective(s.now())); err != nil {
			return id, err
		}
		out = encoding.EncodePEM("CERTIFICATE REQUEST", c.CSR)
		return id, nil
	})
	return out, err
}

// ImportCACertificate installs a certificate signed outside hsmca for a
// PENDING CA: it must certify the CA's own key as a CA, be valid now, and
// chain through certificate_chain when one is given.
func (s *Service) ImportCACertificate(ctx context.Context, tenant, id, certPEM, chainPEM string) error {
	return s.run(ctx, tenant, "PCA_CA_IMPORT", func() (string, error) {
		cert, err := parseOneCert("certificate", certPEM)
		if err != nil {
			return id, err
		}
		var chain []*x509.Certificate
		if strings.TrimSpace(chainPEM) != "" {
			if chain, err = parseCerts("certificate_chain", chainPEM); err != nil {
				return id, err
			}
		}
		_, _, err = s.transitCA(ctx, tenant, id, CAOpImport, func(rec *store.Record, c *caRecord, _, to string) error {
			csr, err := x509.ParseCertificateRequest(c.CSR)
			if err != nil {
				return signer.StoreErr(err, "CA CSR")
			}
			if err := checkImported(cert, chain, csr.PublicKey, s.now()); err != nil {
				return err
			}
			if _, err := crlIssuer(cert); err != nil && c.CRL.Enabled {
				// Each public CRL fetch would otherwise fail on a
				// signature the certificate does not allow.
				return refused(ReasonBadCert, "certificate", nil, noCRLSignMsg+
					", and this CA's CRL is enabled; import a certificate with cRLSign or disable the CRL first")
			}
			setCert(c, cert.Raw, cert)
			c.ExtChain = nil
			for _, ch := range chain {
				c.ExtChain = append(c.ExtChain, ch.Raw)
			}
			c.GenMode = GenModeImport
			c.IssuerID, c.IssuerName = "", cert.Issuer.CommonName
			c.DN = dnFromPKIX(cert.Subject)
			c.SignatureAlgorithm = hashOf(cert.SignatureAlgorithm)
			c.PathLength = unlimitedPathLength
			if cert.MaxPathLen > 0 || cert.MaxPathLenZero {
				c.PathLength = min(cert.MaxPathLen, unlimitedPathLength)
			}
			c.KeyUsages = keyUsageList(cert.KeyUsage)
			c.Status = to
			return nil
		})
		if err == nil {
			s.firstCRL(ctx, tenant, id)
		}
		return id, err
	})
}

func checkImported(cert *x509.Certificate, chain []*x509.Certificate, pub crypto.PublicKey, now time.Time) error {
	bad := func(msg string) error { return refused(ReasonBadCert, "certificate", nil, msg) }
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if k, ok := pub.(equaler); !ok || !k.Equal(cert.PublicKey) {
		return bad("the certificate does not certify this CA's key")
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return bad("the certificate is not a CA certificate (basicConstraints)")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return bad("the certificate's key usage lacks keyCertSign")
	}
	if now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return bad("the certificate is not valid now")
	}
	if len(chain) == 0 {
		return nil
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range chain {
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots.AddCert(c)
		} else {
			inter.AddCert(c)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return refused(ReasonBadCert, "certificate_chain", nil, "the certificate does not chain to a root of certificate_chain: "+err.Error())
	}
	return nil
}

func hashOf(a x509.SignatureAlgorithm) string {
	switch a {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		return "SHA384"
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		return "SHA512"
	}
	return "SHA256"
}

// ExportCA returns the CA's certificate and the chain above it (PEM).
func (s *Service) ExportCA(ctx context.Context, tenant, id string) (string, string, error) {
	var cert, chain string
	err := s.run(ctx, tenant, "PCA_CA_EXPORT", func() (string, error) {
		_, c, err := s.getCA(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		if _, err := CATransition(CAOpExport, c.effective(s.now())); err != nil {
			return id, err
		}
		cert = encoding.EncodePEM("CERTIFICATE", c.Cert)
		chain, err = s.chainAbove(ctx, tenant, c)
		return id, err
	})
	return cert, chain, err
}

// chainAbove is the PEM chain of c's issuers up to the root, or up to the
// chain supplied with an externally signed certificate.
func (s *Service) chainAbove(ctx context.Context, tenant string, c *caRecord) (string, error) {
	var b strings.Builder
	for depth := 0; depth < 16; depth++ {
		if c.GenMode == GenModeImport {
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

// DisableCA stops a CA from issuing.
func (s *Service) DisableCA(ctx context.Context, tenant, id string) error {
	return s.simpleTransit(ctx, tenant, id, "PCA_CA_DISABLE", CAOpDisable)
}

// EnableCA lets a disabled CA issue again.
func (s *Service) EnableCA(ctx context.Context, tenant, id string) error {
	return s.simpleTransit(ctx, tenant, id, "PCA_CA_ENABLE", CAOpEnable)
}

// RestoreCA cancels a scheduled deletion; the CA comes back DISABLED.
func (s *Service) RestoreCA(ctx context.Context, tenant, id string) error {
	err := s.simpleTransit(ctx, tenant, id, "PCA_CA_RESTORE", CAOpRestore)
	if err == nil {
		s.markIndex(ctx, id, "")
	}
	return err
}

func (s *Service) simpleTransit(ctx context.Context, tenant, id, event string, op CAOp) error {
	return s.run(ctx, tenant, event, func() (string, error) {
		if op == CAOpRestore {
			s.sweepTenant(ctx, tenant)
		}
		_, _, err := s.transitCA(ctx, tenant, id, op, func(_ *store.Record, c *caRecord, _, to string) error {
			c.Status = to
			if to != CADeleted {
				c.DeleteTime = 0
			}
			return nil
		})
		return id, err
	})
}

// DeleteCA deletes a PENDING or REVOKED CA at once, and schedules the
// deletion of a DISABLED or EXPIRED one in pendingDays (0: the minimum).
// When the time comes the record goes and its HSM key is destroyed.
func (s *Service) DeleteCA(ctx context.Context, tenant, id string, pendingDays int) error {
	return s.run(ctx, tenant, "PCA_CA_DELETE", func() (string, error) {
		if pendingDays == 0 {
			pendingDays = minPendingDays
		}
		if pendingDays < minPendingDays || pendingDays > maxPendingDays {
			return id, refused(ReasonBadParameter, "pending_days", pendingDays,
				fmt.Sprintf("must be from %d to %d", minPendingDays, maxPendingDays))
		}
		now := s.now()
		rec, c, err := s.transitCA(ctx, tenant, id, CAOpDelete, func(_ *store.Record, c *caRecord, _, to string) error {
			// Removal happens in two steps, both judged by the state
			// machine: mark DELETED (version-checked), then purge.
			c.Status = CADeleted
			c.DeleteTime = now.Add(time.Duration(pendingDays) * pcaDay).UnixMilli()
			if to == caGone {
				c.DeleteTime = now.UnixMilli()
			}
			return nil
		})
		if err != nil {
			return id, err
		}
		if c.DeleteTime <= now.UnixMilli() {
			return id, s.purgeCA(ctx, rec)
		}
		s.markIndex(ctx, id, msField(c.DeleteTime))
		return id, nil
	})
}

// markIndex notes in the CA's index record when it is due for purging, so
// that SweepDeletedCAs finds it without reading every tenant.
func (s *Service) markIndex(ctx context.Context, id, purgeAt string) {
	for attempt := 0; attempt < 5; attempt++ {
		rec, err := s.store.Get(ctx, RecordIndex, store.PlatformTenant, id)
		if err != nil {
			return
		}
		if purgeAt == "" {
			delete(rec.Fields, "purge_at")
		} else {
			rec.Fields["purge_at"] = purgeAt
		}
		if err := s.store.Update(ctx, rec, store.WriteOpts{}); !errors.Is(err, store.ErrVersionConflict) {
			return
		}
	}
}

// purgeCA removes a DELETED CA whose time has come: record, index, CRL and
// (crash-safely) its HSM key, and gives back its quota unit.
func (s *Service) purgeCA(ctx context.Context, rec *store.Record) error {
	var c caRecord
	if err := json.Unmarshal(rec.Data, &c); err != nil {
		return signer.StoreErr(err, "CA")
	}
	if _, err := CATransition(CAOpPurge, c.Status); err != nil || c.DeleteTime > s.now().UnixMilli() {
		return err
	}
	lim := s.core.QuotaLimit(QuotaCAs)
	if err := s.core.DeleteWithKey(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: QuotaCAs, Limit: lim}}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// A concurrent sweep purged it first: the deletion happened.
			return nil
		}
		return err
	}
	bg := context.WithoutCancel(ctx)
	_ = s.store.Delete(bg, RecordCRL, rec.Tenant, rec.ID, store.WriteOpts{})
	_ = s.store.Delete(bg, RecordIndex, store.PlatformTenant, rec.ID, store.WriteOpts{})
	return nil
}

// sweepTenant purges the tenant's CAs whose scheduled deletion is due. It
// runs on access to the tenant's CAs, so a due CA is never seen again;
// SweepDeletedCAs does the same for tenants nobody looks at.
func (s *Service) sweepTenant(ctx context.Context, tenant string) {
	page, err := s.store.List(ctx, store.Query{Kind: RecordCA, Tenant: tenant,
		Filters: []store.Filter{{Field: "status", Value: CADeleted}}})
	if err != nil {
		return
	}
	now := s.now().UnixMilli()
	for i := range page.Records {
		rec := &page.Records[i]
		var c caRecord
		if json.Unmarshal(rec.Data, &c) != nil || c.DeleteTime > now {
			continue
		}
		_ = s.run(ctx, tenant, "PCA_CA_PURGE", func() (string, error) {
			return rec.ID, s.purgeCA(ctx, rec)
		})
	}
}

// SweepDeletedCAs purges every CA, in every tenant, whose scheduled
// deletion is due, destroying its HSM key. The daemon may call it
// periodically; it is safe to run on several replicas at once.
func (s *Service) SweepDeletedCAs(ctx context.Context) (int, error) {
	nowMs := s.now().UnixMilli()
	// Only the due entries: scheduled ones have a fixed-width purge_at
	// (all digits, so at least "0"); the index reads no other.
	page, err := s.store.List(ctx, store.Query{Kind: RecordIndex, Tenant: store.PlatformTenant,
		SortBy: "purge_at", Filters: []store.Filter{{Field: "purge_at", Value: "0", Match: store.AtLeast},
			{Field: "purge_at", Value: msField(nowMs + 1), Match: store.Less}}})
	if err != nil {
		return 0, signer.StoreErr(err, "CA index")
	}
	now := msField(nowMs)
	n := 0
	seen := map[string]bool{}
	for _, r := range page.Records {
		at := r.Fields["purge_at"]
		if at == "" || at > now || seen[r.Fields["tenant"]] {
			continue
		}
		seen[r.Fields["tenant"]] = true
		before, _ := s.store.CountRecords(ctx, RecordCA, r.Fields["tenant"])
		s.sweepTenant(ctx, r.Fields["tenant"])
		after, _ := s.store.CountRecords(ctx, RecordCA, r.Fields["tenant"])
		n += int(before - after)
	}
	return n, nil
}

// RevokeCA revokes a subordinate CA: it goes on its issuer's CRL, which is
// regenerated at once.
func (s *Service) RevokeCA(ctx context.Context, tenant, id, reason string) error {
	return s.run(ctx, tenant, "PCA_CA_REVOKE", func() (string, error) {
		code, err := parseReason(reason)
		if err != nil {
			return id, err
		}
		_, c, err := s.getCA(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		if c.Type != CATypeSubordinate {
			return id, &signer.Error{Kind: signer.KindWrongState, Reason: ReasonCAType, Msg: "a root CA cannot be revoked; disable and delete it instead"}
		}
		if _, err := CATransition(CAOpRevoke, c.effective(s.now())); err != nil {
			return id, err
		}
		now := s.now()
		// The revocation entry goes first: once it exists, every later CRL
		// of the issuer lists the CA, whatever happens next.
		if c.IssuerID != "" && c.GenMode != GenModeImport {
			if err := s.addRevocation(ctx, tenant, c.IssuerID, c.Serial, id, now, code, c.NotAfter); err != nil {
				return id, err
			}
		}
		_, _, err = s.transitCA(ctx, tenant, id, CAOpRevoke, func(_ *store.Record, c *caRecord, _, to string) error {
			c.Status = to
			c.RevokeReason = reasonName(code)
			c.RevokeTime = now.UnixMilli()
			return nil
		})
		if err != nil {
			return id, err
		}
		if c.IssuerID != "" && c.GenMode != GenModeImport {
			return id, s.crlChanged(ctx, tenant, c.IssuerID)
		}
		return id, nil
	})
}

// QuotaUse is one resource's use in the tenant.
type QuotaUse struct {
	Type  string
	Used  int64
	Quota int64
}

// Quotas reports the tenant's CA and certificate quotas.
func (s *Service) Quotas(ctx context.Context, tenant string) ([]QuotaUse, error) {
	var out []QuotaUse
	err := s.run(ctx, tenant, "PCA_QUOTA_RETRIEVE", func() (string, error) {
		for _, q := range []struct{ typ, res string }{
			{"CERTIFICATE_AUTHORITY", QuotaCAs}, {"CERTIFICATE", QuotaCertificates},
		} {
			used, err := s.store.QuotaUsage(ctx, tenant, q.res)
			if err != nil {
				return "", signer.StoreErr(err, "quota")
			}
			out = append(out, QuotaUse{Type: q.typ, Used: used, Quota: s.core.QuotaLimit(q.res)})
		}
		return "", nil
	})
	return out, err
}
