package dts

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// DTS intermediate CA certificates (MATTR VII's 3-tier model): a root
// created with useIntermediateCa issues intermediate CA certificates,
// which in turn issue the VICAL signers' certificates. Under a managed
// root the intermediate is managed too: its key is generated in the HSM
// (the same intent/commit lifecycle as the roots'), the root signs its
// certificate (DTSIntermediateTemplate), and it publishes a CRL of the
// signers it issued. Under an unmanaged root the operator uploads an
// intermediate certificate the root issued elsewhere, as MATTR VII does;
// no key is held for it. The routes are nested under the root:
// /v1/ecosystems/certificates/ca/{id}/intermediate[/{intermediateId}].
//
// Deleting a root leaves its intermediate CA certificates, as it leaves
// its signers: they can then neither issue nor have their signers sign,
// and stay listed (and deletable) under the root's id until deleted.

const (
	// RecordIntermediate is a DTS intermediate CA certificate of a tenant.
	RecordIntermediate = "dts_intermediate_ca"
	// kindIntermediateIndex maps an intermediate's id to its tenant and
	// root in the platform namespace, for the unauthenticated
	// revocation-list route; its crl_due field schedules the CRL.
	kindIntermediateIndex = "dts_intermediate_index"

	// QuotaIntermediates is the per-tenant limit of intermediate CA
	// certificates. MATTR VII publishes none; hsmca's default is 10, and
	// configuration (quotas.dts_intermediate_cas) may change it.
	QuotaIntermediates        = "dts_intermediate_cas"
	defaultIntermediatesQuota = 10

	// UsageVICAL is the one usage hsmca's intermediates serve: issuing
	// VICAL signers.
	UsageVICAL = "VICAL"

	// intermediateYears is the default lifetime of a managed
	// intermediate, cut to its root's notAfter.
	intermediateYears = 10

	evICACreate   = "ECOSYSTEM_DTS_INTERMEDIATE_CA_CERTIFICATE_CREATE"
	evICAList     = "ECOSYSTEM_DTS_INTERMEDIATE_CA_CERTIFICATE_RETRIEVE_LIST"
	evICARetrieve = "ECOSYSTEM_DTS_INTERMEDIATE_CA_CERTIFICATE_RETRIEVE"
	evICAUpdate   = "ECOSYSTEM_DTS_INTERMEDIATE_CA_CERTIFICATE_UPDATE"
	evICADelete   = "ECOSYSTEM_DTS_INTERMEDIATE_CA_CERTIFICATE_DELETE"

	intermediateQuotaMsg = "the tenant's maximum number of DTS intermediate CA certificates is reached; delete one first"
)

// intermediateIndexes are the family's store indexes for intermediates:
// the CRL schedule, and the list of a root's intermediates.
var intermediateIndexes = []store.Index{{Kind: kindIntermediateIndex, Field: signer.CRLDueField},
	{Kind: RecordIntermediate, Field: "ca_id"}}

// dtsIntermediate is the stored form of an intermediate CA certificate.
type dtsIntermediate struct {
	ID           string    `json:"id"`
	CAID         string    `json:"caCertificateId"`
	Active       bool      `json:"active"`
	Managed      bool      `json:"managed"`
	Usages       []string  `json:"usages"`
	CertDER      []byte    `json:"certDer"`
	Fingerprint  string    `json:"fingerprint"`
	CommonName   string    `json:"commonName"`
	Country      string    `json:"country"`
	Organisation string    `json:"organisationName"`
	NotBefore    time.Time `json:"notBefore"`
	NotAfter     time.Time `json:"notAfter"`
	KeyAlgorithm string    `json:"keyAlgorithm,omitempty"`
	CreatedBy    string    `json:"createdBy,omitempty"`
}

// Intermediate is an intermediate CA certificate as the API shows it.
type Intermediate struct {
	ID             string
	CAID           string // the root's id (caCertificateId)
	Active         bool
	Managed        bool
	Usages         []string
	CertificatePEM string
	Fingerprint    string
	CommonName     string
	Country        string
	Organisation   string
	NotBefore      time.Time
	NotAfter       time.Time
}

func (m *dtsIntermediate) view() *Intermediate {
	return &Intermediate{ID: m.ID, CAID: m.CAID, Active: m.Active, Managed: m.Managed,
		Usages: append([]string{}, m.Usages...), CertificatePEM: encoding.EncodePEM("CERTIFICATE", m.CertDER),
		Fingerprint: m.Fingerprint, CommonName: m.CommonName, Country: m.Country, Organisation: m.Organisation,
		NotBefore: m.NotBefore, NotAfter: m.NotAfter}
}

func (m *dtsIntermediate) setCert(c *x509.Certificate) {
	n := issuance.NameOf(c.Subject)
	m.CertDER, m.Fingerprint = c.Raw, encoding.Fingerprint(c.Raw)
	m.CommonName, m.Country, m.Organisation = c.Subject.CommonName, n.Country, n.Organization
	m.NotBefore, m.NotAfter = c.NotBefore.UTC(), c.NotAfter.UTC()
}

// activeIntermediateExpiry is the notAfter of an active intermediate,
// for the CA-expiry gauges.
func activeIntermediateExpiry(rec *store.Record) (time.Time, bool) {
	var m dtsIntermediate
	if rec.Fields["active"] != "true" || json.Unmarshal(rec.Data, &m) != nil {
		return time.Time{}, false
	}
	return m.NotAfter, true
}

func intermediateRecord(tenant string, m *dtsIntermediate) (*store.Record, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &store.Record{Kind: RecordIntermediate, Tenant: tenant, ID: m.ID,
		Unique: []string{"fingerprint:" + m.Fingerprint},
		Fields: map[string]string{"ca_id": m.CAID, "active": strconv.FormatBool(m.Active)}, Data: data}, nil
}

func intermediateNotFound(id string) error {
	return signer.E(signer.KindNotFound, "DTS intermediate CA certificate %s not found", id)
}

// getIntermediate reads an intermediate of the tenant; rootID, when not
// empty, must be its root (the path it is addressed by), else it is not
// found there.
func (s *Service) getIntermediate(ctx context.Context, tenant, rootID, id string) (*store.Record, *dtsIntermediate, error) {
	rec, m, err := getStored[dtsIntermediate](ctx, s, RecordIntermediate, tenant, id, "DTS intermediate CA certificate", intermediateNotFound)
	if err != nil {
		return nil, nil, err
	}
	if rootID != "" && m.CAID != rootID {
		return nil, nil, intermediateNotFound(id)
	}
	return rec, m, nil
}

// putIntermediateIndex is written before the intermediate, like the
// root's index entry (putRootIndex).
func (s *Service) putIntermediateIndex(ctx context.Context, tenant, rootID, id, crlDue string) error {
	data, _ := json.Marshal(map[string]string{"tenant": tenant, "caId": rootID})
	rec := &store.Record{Kind: kindIntermediateIndex, Tenant: store.PlatformTenant, ID: id,
		Fields: map[string]string{"tenant": tenant, "ca_id": rootID, signer.CRLDueField: crlDue}, Data: data}
	return signer.StoreErr(s.core.Store().Create(ctx, rec, store.WriteOpts{}), "DTS intermediate CA index")
}

func (s *Service) dropIntermediateIndex(id string) {
	s.dropIndex(kindIntermediateIndex, id, "DTS intermediate index entry left behind")
}

// usesIntermediates is the root create request's useIntermediateCa.
func usesIntermediates(in RootInput) bool {
	return in.UseIntermediateCA != nil && *in.UseIntermediateCA
}

// rootTemplate is the certificate profile of a managed root: path length
// 1 when it issues intermediates, else the IACA profile's 0.
func rootTemplate(p *rootPlan, ian *pkix.Extension) *x509.Certificate {
	if p.useIntermediate {
		return issuance.IACARootForIntermediatesTemplate(p.subject, p.notBefore, p.notAfter, ian)
	}
	return issuance.IACARootTemplate(p.subject, p.notBefore, p.notAfter, ian)
}

// uploadedRootForIntermediates says why an uploaded root cannot be
// registered with useIntermediateCa, or "".
func uploadedRootForIntermediates(c *x509.Certificate, in RootInput) string {
	if usesIntermediates(in) && !issuance.AllowsIntermediate(c) {
		return "the certificate's basicConstraints path length 0 forbids intermediate CA certificates under it"
	}
	return ""
}

// IntermediateInput is a create request; nil means absent. Under an
// unmanaged root only certificatePem (required) and usages apply; under a
// managed root the daemon issues the certificate and the subject and
// validity fields are hsmca's additions.
type IntermediateInput struct {
	CertificatePEM   *string
	Usages           *[]string
	OrganisationName *string
	CommonName       *string
	Country          *string
	NotBefore        *string // RFC 3339
	NotAfter         *string // RFC 3339
	BadFields        []signer.FieldError
}

// CreateIntermediate creates an intermediate CA certificate under root
// rootID: issued here with a new HSM key under a managed root, uploaded
// (certificatePem) under an unmanaged one.
func (s *Service) CreateIntermediate(ctx context.Context, rootID string, in IntermediateInput) (*Intermediate, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evICACreate)
	if err != nil {
		return nil, op.Done("", err)
	}
	m, err := s.createIntermediate(ctx, tenant, rootID, in)
	if err != nil {
		return nil, op.Done("", err)
	}
	return m.view(), op.Done(m.ID, nil)
}

func (s *Service) createIntermediate(ctx context.Context, tenant, rootID string, in IntermediateInput) (*dtsIntermediate, error) {
	if err := checkID("id", rootID, "path"); err != nil {
		return nil, err
	}
	rootRec, root, err := s.getRoot(ctx, tenant, rootID)
	if err != nil {
		return nil, err
	}
	if !root.UseIntermediateCA {
		return nil, &signer.Error{Kind: signer.KindInvalid,
			Msg: "DTS root CA certificate " + rootID + " does not use intermediate CA certificates (useIntermediateCa is false)",
			Fields: []signer.FieldError{{Field: "id", Value: rootID, Location: "path",
				Msg: "the DTS root CA certificate was not created with useIntermediateCa"}}}
	}
	f := signer.FieldErrors(in.BadFields)
	usages := checkUsages(&f, in.Usages, in.BadFields)
	if root.Managed {
		return s.createManagedIntermediate(ctx, tenant, rootRec, root, usages, in, f)
	}
	return s.createUploadedIntermediate(ctx, tenant, root, usages, in, f)
}

// checkUsages validates usages (default [VICAL]): a non-empty list of
// distinct known usages.
func checkUsages(f *signer.FieldErrors, in *[]string, bad []signer.FieldError) []string {
	if hasField(bad, "usages") {
		return nil
	}
	if in == nil {
		return []string{UsageVICAL}
	}
	if len(*in) == 0 {
		f.Add("usages", *in, "must name at least one usage: VICAL")
		return nil
	}
	seen := map[string]bool{}
	for _, u := range *in {
		switch {
		case u != UsageVICAL:
			f.Add("usages", u, "must contain only VICAL (the usage of hsmca's VICAL signers)")
			return nil
		case seen[u]:
			f.Add("usages", u, "must not repeat a usage")
			return nil
		}
		seen[u] = true
	}
	return append([]string{}, *in...)
}

type intermediatePlan struct {
	subject             pkix.Name
	notBefore, notAfter time.Time
}

// checkManagedIntermediate checks the fields of an intermediate the
// daemon issues: the subject defaults to the root's organisation and
// country; the validity, which must lie within the root's, defaults to
// from now (or the root's notBefore) for intermediateYears, cut to the
// root's notAfter.
func (s *Service) checkManagedIntermediate(tenant string, root *dtsRoot, in IntermediateInput, f signer.FieldErrors) (*intermediatePlan, error) {
	bad := map[string]bool{}
	for _, b := range in.BadFields {
		bad[b.Field] = true
	}
	if in.CertificatePEM != nil {
		f.Add("certificatePem", nil, "must not be given: a managed DTS root CA certificate issues its intermediate CA certificates itself")
	}
	org := root.Organisation
	if in.OrganisationName != nil && !bad["organisationName"] {
		org = *in.OrganisationName
		checkOrganisation(&f, org)
	}
	cn := tenant + " DTS Intermediate CA"
	if in.CommonName != nil && !bad["commonName"] {
		cn = *in.CommonName
		checkCommonName(&f, cn)
	}
	country := root.Country
	if in.Country != nil && !bad["country"] {
		country = *in.Country
		checkCountry(&f, country)
	}
	if country == "" {
		country = defaultCountry
	}
	now := s.core.Now().UTC().Truncate(time.Second)
	p := &intermediatePlan{notBefore: now}
	if root.NotBefore.After(p.notBefore) {
		p.notBefore = root.NotBefore
	}
	nbOK := true
	if in.NotBefore != nil && !bad["notBefore"] {
		t, err := time.Parse(time.RFC3339, *in.NotBefore)
		t = t.UTC().Truncate(time.Second)
		switch {
		case err != nil:
			nbOK = false
			f.Add("notBefore", *in.NotBefore, "must be an RFC 3339 date-time")
		case t.Before(now.Add(-notBeforeSkew)):
			nbOK = false
			f.Add("notBefore", *in.NotBefore, "must not be in the past")
		case t.Before(root.NotBefore):
			nbOK = false
			f.Add("notBefore", *in.NotBefore, "must not be before the DTS root CA certificate's notBefore")
		case !t.Before(root.NotAfter):
			nbOK = false
			f.Add("notBefore", *in.NotBefore, "must be before the DTS root CA certificate's notAfter")
		default:
			p.notBefore = t
		}
	}
	p.notAfter = p.notBefore.AddDate(intermediateYears, 0, 0)
	if p.notAfter.After(root.NotAfter) {
		p.notAfter = root.NotAfter
	}
	if in.NotAfter != nil && !bad["notAfter"] {
		p.notAfter = checkNotAfter(&f, *in.NotAfter, p.notAfter, now, p.notBefore, nbOK, root.NotAfter,
			"must not be after the DTS root CA certificate's notAfter")
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	p.subject = pkix.Name{Country: []string{country}, Organization: []string{org}, CommonName: cn}
	return p, nil
}

func (s *Service) createManagedIntermediate(ctx context.Context, tenant string, rootRec *store.Record, root *dtsRoot,
	usages []string, in IntermediateInput, f signer.FieldErrors) (*dtsIntermediate, error) {
	plan, err := s.checkManagedIntermediate(tenant, root, in, f)
	if err != nil {
		return nil, err
	}
	rootCert, err := s.usableRoot(root)
	if err != nil {
		return nil, err
	}
	if err := s.supportsKeys("a managed intermediate CA has a P-256 key in the HSM"); err != nil {
		return nil, err
	}
	if err := s.quotaFree(ctx, tenant, QuotaIntermediates, intermediateQuotaMsg); err != nil {
		return nil, err
	}
	m := &dtsIntermediate{ID: uuid.NewString(), CAID: root.ID, Active: true, Managed: true, Usages: usages,
		KeyAlgorithm: string(keyAlgorithm), CreatedBy: signer.CallerFrom(ctx).Principal}
	nk, err := s.core.GenerateKey(ctx, tenant, RecordIntermediate, m.ID, keyAlgorithm)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			s.core.AbandonKey(nk)
		}
	}()
	rs, err := s.core.TimedSigner(ctx, rootRec.Fields[signer.KeyField], root.KeyAlgorithm, "dts_intermediate_certificate")
	if err != nil {
		return nil, err
	}
	tmpl := issuance.DTSIntermediateTemplate(plan.subject, rootCert, plan.notBefore, plan.notAfter)
	issuance.AddIssuerURLs(tmpl, s.rootURLs(root))
	der, err := issuance.SignCertificate(tmpl, rootCert, nk.Signer.Public(), rs, issuance.KeyIDSHA256)
	if err != nil {
		return nil, signer.HSMError(err, "DTS root CA key")
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	m.setCert(c)
	// Due at once: if the first CRL below is not signed, the refresher
	// signs it.
	if err := s.putIntermediateIndex(ctx, tenant, root.ID, m.ID, signer.CRLDueAt(time.UnixMilli(0))); err != nil {
		return nil, err
	}
	rec, err := intermediateRecord(tenant, m)
	if err != nil {
		s.dropIntermediateIndex(m.ID)
		return nil, err
	}
	rec.Fields[signer.KeyAlgorithmField] = m.KeyAlgorithm
	// CommitKey settles the key itself when the write fails.
	committed = true
	err = s.core.CommitKey(ctx, rec, nk, store.WriteOpts{
		Quota: &store.Quota{Resource: QuotaIntermediates, Limit: s.core.QuotaLimit(QuotaIntermediates)}})
	if err != nil {
		s.dropIntermediateIndex(m.ID)
		if qe := quotaErr(err, intermediateQuotaMsg); qe != nil {
			return nil, qe
		}
		return nil, signer.StoreErr(err, "DTS intermediate CA certificate")
	}
	// The intermediate publishes a CRL from its creation on.
	if _, err := s.signIntermediateCRL(ctx, tenant, m.ID, false); err != nil {
		s.core.Log().Warn("first CRL of a DTS intermediate CA not signed; the refresher retries", "id", m.ID, "err", err)
	}
	return m, nil
}

// checkUploadedIntermediate accepts a CA certificate issued and signed by
// the root that may sign certificates and is valid now (the rule of the
// uploaded roots); otherwise it says why not.
func (s *Service) checkUploadedIntermediate(root *dtsRoot, pemText string) (*x509.Certificate, string) {
	c, err := encoding.ParseCertificate([]byte(pemText))
	if err != nil {
		return nil, err.Error()
	}
	rc, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, "the DTS root CA certificate cannot be read"
	}
	if reason := s.uploadedCAReason(c); reason != "" {
		return nil, reason
	}
	switch {
	case c.CheckSignatureFrom(c) == nil && string(c.RawIssuer) == string(c.RawSubject):
		return nil, "must be an intermediate CA certificate, not a self-signed root"
	case string(c.RawIssuer) != string(rc.RawSubject) || c.CheckSignatureFrom(rc) != nil:
		return nil, "the certificate is not issued by the DTS root CA certificate"
	}
	return c, ""
}

func (s *Service) createUploadedIntermediate(ctx context.Context, tenant string, root *dtsRoot, usages []string,
	in IntermediateInput, f signer.FieldErrors) (*dtsIntermediate, error) {
	for name, v := range map[string]*string{"organisationName": in.OrganisationName, "commonName": in.CommonName,
		"country": in.Country, "notBefore": in.NotBefore, "notAfter": in.NotAfter} {
		if v != nil {
			f.Add(name, *v, "must not be given under an unmanaged DTS root CA certificate: the uploaded certificate carries its own")
		}
	}
	var cert *x509.Certificate
	switch {
	case hasField(in.BadFields, "certificatePem"):
	case in.CertificatePEM == nil:
		f.Add("certificatePem", nil, "is required under an unmanaged DTS root CA certificate")
	default:
		var reason string
		if cert, reason = s.checkUploadedIntermediate(root, *in.CertificatePEM); reason != "" {
			f.Add("certificatePem", nil, reason)
		}
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	if err := s.quotaFree(ctx, tenant, QuotaIntermediates, intermediateQuotaMsg); err != nil {
		return nil, err
	}
	m := &dtsIntermediate{ID: uuid.NewString(), CAID: root.ID, Active: true, Managed: false, Usages: usages,
		CreatedBy: signer.CallerFrom(ctx).Principal}
	m.setCert(cert)
	if err := s.putIntermediateIndex(ctx, tenant, root.ID, m.ID, signer.CRLDueNever); err != nil {
		return nil, err
	}
	rec, err := intermediateRecord(tenant, m)
	if err != nil {
		s.dropIntermediateIndex(m.ID)
		return nil, err
	}
	err = s.core.Store().Create(ctx, rec, store.WriteOpts{
		Quota: &store.Quota{Resource: QuotaIntermediates, Limit: s.core.QuotaLimit(QuotaIntermediates)}})
	if err != nil {
		s.dropIntermediateIndex(m.ID)
		return nil, uploadedCreateErr(err, intermediateQuotaMsg, "DTS intermediate CA certificate")
	}
	return m, nil
}

// ListIntermediates lists the intermediates of root rootID in creation
// order. Those of a deleted root stay listed under its id until deleted;
// a root that neither exists nor has any is not found.
func (s *Service) ListIntermediates(ctx context.Context, rootID string, p ListParams) ([]Intermediate, string, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evICAList)
	if err != nil {
		return nil, "", op.Done("", err)
	}
	out, next, err := s.listIntermediates(ctx, tenant, rootID, p)
	return out, next, op.Done("", err)
}

func (s *Service) listIntermediates(ctx context.Context, tenant, rootID string, p ListParams) ([]Intermediate, string, error) {
	if err := checkID("id", rootID, "path"); err != nil {
		return nil, "", err
	}
	limit, err := p.check()
	if err != nil {
		return nil, "", err
	}
	page, err := s.core.Store().List(ctx, store.Query{Kind: RecordIntermediate, Tenant: tenant, Limit: limit, Cursor: p.Cursor,
		Filters: []store.Filter{{Field: "ca_id", Value: rootID, Match: store.Equal}}})
	if err != nil {
		return nil, "", listErr(err, "DTS intermediate CA certificate")
	}
	if len(page.Records) == 0 && p.Cursor == "" {
		if _, _, err := s.getRoot(ctx, tenant, rootID); err != nil {
			return nil, "", err
		}
	}
	out := make([]Intermediate, 0, len(page.Records))
	for _, rec := range page.Records {
		var m dtsIntermediate
		if err := json.Unmarshal(rec.Data, &m); err != nil {
			return nil, "", signer.StoreErr(err, "DTS intermediate CA certificate")
		}
		out = append(out, *m.view())
	}
	return out, page.NextCursor, nil
}

// GetIntermediate returns one intermediate of root rootID.
func (s *Service) GetIntermediate(ctx context.Context, rootID, id string) (*Intermediate, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evICARetrieve)
	if err == nil {
		err = checkIntermediatePath(rootID, id)
	}
	if err != nil {
		return nil, op.Done("", err)
	}
	_, m, err := s.getIntermediate(ctx, tenant, rootID, id)
	if err != nil {
		return nil, op.Done("", err)
	}
	return m.view(), op.Done(id, nil)
}

func checkIntermediatePath(rootID, id string) error {
	if err := checkID("id", rootID, "path"); err != nil {
		return err
	}
	return checkID("intermediateId", id, "path")
}

// IntermediateUpdate is an update request; nil fields are left alone, and
// at least one is required.
type IntermediateUpdate struct {
	Active    *bool
	Usages    *[]string
	BadFields []signer.FieldError
}

// UpdateIntermediate (de)activates an intermediate and/or sets its
// usages. Only an active intermediate issues, and only the signers of an
// active intermediate sign.
func (s *Service) UpdateIntermediate(ctx context.Context, rootID, id string, in IntermediateUpdate) (*Intermediate, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evICAUpdate)
	if err != nil {
		return nil, op.Done("", err)
	}
	m, err := s.updateIntermediate(ctx, tenant, rootID, id, in)
	if err != nil {
		return nil, op.Done("", err)
	}
	return m.view(), op.Done(id, nil)
}

func (s *Service) updateIntermediate(ctx context.Context, tenant, rootID, id string, in IntermediateUpdate) (*dtsIntermediate, error) {
	if err := checkIntermediatePath(rootID, id); err != nil {
		return nil, err
	}
	f := signer.FieldErrors(in.BadFields)
	var usages []string
	if in.Usages != nil {
		usages = checkUsages(&f, in.Usages, in.BadFields)
	}
	if in.Active == nil && in.Usages == nil && len(in.BadFields) == 0 {
		f.Add("active", nil, "is required when usages is not given")
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		rec, m, err := s.getIntermediate(ctx, tenant, rootID, id)
		if err != nil {
			return nil, err
		}
		changed := false
		if in.Active != nil && *in.Active != m.Active {
			m.Active, changed = *in.Active, true
		}
		if usages != nil && strings.Join(usages, ",") != strings.Join(m.Usages, ",") {
			m.Usages, changed = usages, true
		}
		if !changed {
			return m, nil
		}
		if rec.Data, err = json.Marshal(m); err != nil {
			return nil, err
		}
		rec.Fields["active"] = strconv.FormatBool(m.Active)
		err = s.core.Store().Update(ctx, rec, store.WriteOpts{})
		if errors.Is(err, store.ErrVersionConflict) && attempt < 8 {
			continue
		}
		if err != nil {
			return nil, signer.StoreErr(err, "DTS intermediate CA certificate")
		}
		return m, nil
	}
}

// DeleteIntermediate deletes an intermediate; a managed one's HSM key is
// destroyed and its certificate revoked on its root's CRL, which is
// re-signed at once. Its VICAL signers stay (the operator deletes them)
// but can no longer sign.
func (s *Service) DeleteIntermediate(ctx context.Context, rootID, id string) error {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evICADelete)
	if err == nil {
		err = s.deleteIntermediate(ctx, tenant, rootID, id)
	}
	if err != nil {
		return op.Done("", err)
	}
	return op.Done(id, nil)
}

func (s *Service) deleteIntermediate(ctx context.Context, tenant, rootID, id string) error {
	if err := checkIntermediatePath(rootID, id); err != nil {
		return err
	}
	rec, m, err := s.getIntermediate(ctx, tenant, rootID, id)
	if err != nil {
		return err
	}
	revoked := false
	if m.Managed {
		_, root, rerr := s.getRoot(ctx, tenant, m.CAID)
		switch {
		case rerr == nil && root.Managed:
			c, err := x509.ParseCertificate(m.CertDER)
			if err != nil {
				return signer.StoreErr(err, "DTS intermediate CA certificate")
			}
			if err := s.revokeSerialOn(ctx, tenant, kindRootIndex, m.CAID, encoding.SerialHex(c.SerialNumber)); err != nil {
				return err
			}
			revoked = true
		case rerr != nil && signer.KindOf(rerr) != signer.KindNotFound:
			return rerr
		}
	}
	opts := store.WriteOpts{Quota: &store.Quota{Resource: QuotaIntermediates, Limit: s.core.QuotaLimit(QuotaIntermediates)}}
	if err := s.core.DeleteWithKey(ctx, rec, opts); err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return intermediateNotFound(id)
		}
		return err
	}
	s.dropIntermediateIndex(id)
	if err := s.core.Store().Delete(context.WithoutCancel(ctx), kindCRL, tenant, id, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.core.Log().Warn("CRL record of a deleted DTS intermediate CA left behind", "id", id, "err", err)
	}
	if revoked {
		if _, err := s.signRootCRL(ctx, tenant, m.CAID, false); err != nil {
			s.core.Log().Warn("CRL of a DTS root not re-signed after an intermediate CA deletion; the refresher retries",
				"id", m.CAID, "err", err)
		}
		if c, err := x509.ParseCertificate(m.CertDER); err == nil {
			if err := s.ocsp.Revoked(ctx, tenant, m.CAID, c.SerialNumber); err != nil {
				s.core.Log().Warn("OCSP answers of a DTS root not updated after an intermediate CA deletion", "id", m.CAID, "err", err)
			}
		}
	}
	return nil
}

// usableIntermediate checks that a managed intermediate may issue now:
// it and its root are active, and it has not expired.
func (s *Service) usableIntermediate(m *dtsIntermediate, root *dtsRoot) (*x509.Certificate, error) {
	if !m.Active {
		return nil, signer.E(signer.KindWrongState, "DTS intermediate CA certificate %s is not active; only an active intermediate CA may sign", m.ID)
	}
	if !root.Active {
		return nil, signer.E(signer.KindWrongState, "the DTS root CA certificate %s of intermediate CA certificate %s is not active", root.ID, m.ID)
	}
	now := s.core.Now()
	if !now.Before(m.NotAfter) {
		return nil, signer.E(signer.KindWrongState, "DTS intermediate CA certificate %s has expired", m.ID)
	}
	c, err := x509.ParseCertificate(m.CertDER)
	if err != nil {
		return nil, signer.StoreErr(err, "DTS intermediate CA certificate")
	}
	return c, nil
}
