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
	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// DTS root CA certificates (MATTR VII ecosystem certificates, API.md
// family 1). A managed root holds its key in the HSM and signs its own
// certificate, its VICAL signers' certificates and its CRL; an unmanaged
// root is an uploaded certificate with no key, under which operators
// upload the signer certificates they issued elsewhere.

const (
	maxValidityYears = 20
	nameMax          = 64 // ub-common-name, ub-organization-name
	// notBeforeSkew tolerates a client clock slightly behind ours for
	// "notBefore must not be in the past".
	notBeforeSkew = time.Minute
	// defaultCountry is used when a managed root is created without a
	// country; the public service picks one by region, hsmca has none.
	defaultCountry = "US"
	keyAlgorithm   = hsm.EC256

	// Event names (API.md family 1).
	evCACreate   = "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE"
	evCAList     = "ECOSYSTEM_DTS_CA_CERTIFICATE_RETRIEVE_LIST"
	evCARetrieve = "ECOSYSTEM_DTS_CA_CERTIFICATE_RETRIEVE"
	evCAUpdate   = "ECOSYSTEM_DTS_CA_CERTIFICATE_UPDATE"
	evCADelete   = "ECOSYSTEM_DTS_CA_CERTIFICATE_DELETE"

	rootQuotaMsg = "a maximum of three DTS root CA certificates can be created per tenant"
	noIANMsg     = "this daemon cannot create managed DTS root CA certificates: ISO/IEC 18013-5 requires an " +
		"IssuerAlternativeName in them and none is configured; the operator sets issuer_alt_name " +
		"(HSMCA_ISSUER_ALT_NAME) or public_base_url (HSMCA_PUBLIC_BASE_URL). Unmanaged roots (certificatePem) are not affected"
)

// RootInput is a create request. Nil means absent. BadFields are fields
// the transport could not decode (wrong JSON type, unknown name); they
// are reported together with the family's own checks so that the caller
// gets one detail per invalid field in one answer.
type RootInput struct {
	OrganisationName *string
	CommonName       *string
	Country          *string
	NotBefore        *string // RFC 3339
	NotAfter         *string // RFC 3339
	CertificatePEM   *string
	// UseIntermediateCA makes a root of the 3-tier model, which issues
	// intermediate CA certificates rather than VICAL signers
	// (intermediate.go).
	UseIntermediateCA *bool
	// OCSPEnabled switches the OCSP of a managed root on from its
	// creation (hsmca's own field).
	OCSPEnabled *bool
	BadFields   []signer.FieldError
}

// CreateRoot creates a managed root (key in the HSM, self-signed) or
// registers an unmanaged one (certificatePem).
func (s *Service) CreateRoot(ctx context.Context, in RootInput) (*Root, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evCACreate)
	if err != nil {
		return nil, op.Done("", err)
	}
	var r *dtsRoot
	if in.CertificatePEM != nil || hasField(in.BadFields, "certificatePem") {
		r, err = s.createUnmanagedRoot(ctx, tenant, in)
	} else {
		r, err = s.createManagedRoot(ctx, tenant, in)
	}
	if err != nil {
		return nil, op.Done("", err)
	}
	return r.view(), op.Done(r.ID, nil)
}

type rootPlan struct {
	subject             pkix.Name
	notBefore, notAfter time.Time
	useIntermediate     bool
}

func (s *Service) checkManagedRoot(tenant string, in RootInput) (*rootPlan, error) {
	f := signer.FieldErrors(in.BadFields)
	bad := map[string]bool{}
	for _, b := range in.BadFields {
		bad[b.Field] = true
	}
	p := &rootPlan{}
	now := s.core.Now().UTC().Truncate(time.Second)

	org := ""
	switch {
	case bad["organisationName"]:
	case in.OrganisationName == nil:
		f.Add("organisationName", nil, "is required")
	default:
		org = *in.OrganisationName
		checkOrganisation(&f, org)
	}
	cn := tenant + " DTS CA"
	if in.CommonName != nil && !bad["commonName"] {
		cn = *in.CommonName
		checkCommonName(&f, cn)
	}
	country := defaultCountry
	if in.Country != nil && !bad["country"] {
		country = *in.Country
		checkCountry(&f, country)
	}
	// MATTR: notAfter is at most 20 years from creation, whatever
	// notBefore is; notBefore must come before notAfter, so before that
	// bound too.
	latest := now.AddDate(maxValidityYears, 0, 0)
	p.notBefore = now
	nbOK := true
	if in.NotBefore != nil && !bad["notBefore"] {
		t, err := time.Parse(time.RFC3339, *in.NotBefore)
		switch {
		case err != nil:
			nbOK = false
			f.Add("notBefore", *in.NotBefore, "must be an RFC 3339 date-time")
		case t.Before(now.Add(-notBeforeSkew)):
			nbOK = false
			f.Add("notBefore", *in.NotBefore, "must not be in the past")
		case !t.Before(latest):
			nbOK = false
			f.Add("notBefore", *in.NotBefore, "must be less than 20 years from now: notAfter is at most 20 years from creation")
		default:
			p.notBefore = t.UTC().Truncate(time.Second)
		}
	}
	// The default, notBefore + 20 years, is cut to the 20 years from
	// creation that bound every notAfter.
	p.notAfter = p.notBefore.AddDate(maxValidityYears, 0, 0)
	if p.notAfter.After(latest) {
		p.notAfter = latest
	}
	if in.NotAfter != nil && !bad["notAfter"] {
		p.notAfter = checkNotAfter(&f, *in.NotAfter, p.notAfter, now, p.notBefore, nbOK, latest,
			"must be at most 20 years from creation ("+latest.Format(time.RFC3339)+")")
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	p.subject = pkix.Name{Country: []string{country}, Organization: []string{org}, CommonName: cn}
	return p, nil
}

// checkOrganisation, checkCommonName and checkCountry check the subject
// fields of a certificate the daemon issues (a root or an intermediate).
func checkOrganisation(f *signer.FieldErrors, org string) {
	switch {
	case strings.TrimSpace(org) == "":
		f.Add("organisationName", org, "must not be empty")
	case len(org) > nameMax:
		f.Add("organisationName", org, "must be at most 64 characters")
	case unsafeText(org):
		f.Add("organisationName", nil, "must not contain control, format or bidirectional characters")
	}
}

func checkCommonName(f *signer.FieldErrors, cn string) {
	switch {
	case cn == "":
		f.Add("commonName", cn, "must not be empty")
	case len(cn) > nameMax:
		f.Add("commonName", cn, "must be at most 64 characters")
	case !issuance.PrintableString(cn):
		f.Add("commonName", cn, "must be a valid PrintableString (letters, digits, space and '()+,-./:=?)")
	}
}

func checkCountry(f *signer.FieldErrors, country string) {
	if !issuance.IsCountryCode(country) {
		f.Add("country", country, "must be an ISO 3166-1 alpha-2 country code, e.g. NZ")
	}
}

// checkNotAfter checks a requested notAfter of a certificate the daemon
// issues: in the future, after notBefore (when that one was valid,
// nbOK) and not after latest (tooLate says why). It returns the
// requested time, or def when it is refused.
func checkNotAfter(f *signer.FieldErrors, in string, def, now, notBefore time.Time, nbOK bool, latest time.Time, tooLate string) time.Time {
	t, err := time.Parse(time.RFC3339, in)
	t = t.UTC().Truncate(time.Second)
	switch {
	case err != nil:
		f.Add("notAfter", in, "must be an RFC 3339 date-time")
	case !t.After(now):
		f.Add("notAfter", in, "must be in the future")
	case nbOK && !t.After(notBefore):
		f.Add("notAfter", in, "must be after notBefore")
	case t.After(latest):
		f.Add("notAfter", in, tooLate)
	default:
		return t
	}
	return def
}

func (s *Service) createManagedRoot(ctx context.Context, tenant string, in RootInput) (*dtsRoot, error) {
	plan, err := s.checkManagedRoot(tenant, in)
	if err != nil {
		return nil, err
	}
	if s.issuerAltName == "" {
		return nil, &signer.Error{Kind: signer.KindUnavailable, Reason: ReasonNoIssuerAltName, Msg: noIANMsg}
	}
	plan.useIntermediate = usesIntermediates(in)
	ian, err := issuance.IssuerAltNameExtension(s.issuerAltName)
	if err != nil {
		return nil, &signer.Error{Kind: signer.KindInternal, Msg: "the daemon's issuer_alt_name setting is invalid", Err: err}
	}
	if err := s.supportsKeys("a managed DTS root CA has a P-256 key in the HSM; register a root made elsewhere (certificatePem) instead"); err != nil {
		return nil, err
	}
	if err := s.quotaFree(ctx, tenant, QuotaRoots, rootQuotaMsg); err != nil {
		return nil, err
	}
	id := uuid.NewString()
	nk, err := s.core.GenerateKey(ctx, tenant, RecordRoot, id, keyAlgorithm)
	if err != nil {
		return nil, err
	}
	r, err := s.commitManagedRoot(ctx, tenant, id, nk, plan, ian, in.OCSPEnabled != nil && *in.OCSPEnabled)
	if err != nil {
		s.core.AbandonUnlessSettled(nk, err)
		return nil, err
	}
	// The root publishes a CRL from its creation on; the route that
	// serves it never signs one.
	if _, err := s.signRootCRL(ctx, tenant, id, false); err != nil {
		s.core.Log().Warn("first CRL of a DTS root not signed; the refresher retries", "id", id, "err", err)
	}
	return r, nil
}

func (s *Service) commitManagedRoot(ctx context.Context, tenant, id string, nk *signer.NewKey, plan *rootPlan, ian *pkix.Extension, withOCSP bool) (*dtsRoot, error) {
	tmpl := rootTemplate(plan, ian)
	der, err := issuance.SignCertificate(tmpl, nil, nk.Signer.Public(),
		s.core.Timed(nk.Signer, "dts_root_certificate", string(keyAlgorithm)), issuance.KeyIDSHA256)
	if err != nil {
		return nil, signer.HSMError(err, "DTS root CA key")
	}
	r := &dtsRoot{ID: id, Active: true, Managed: true, CertDER: der, Fingerprint: encoding.Fingerprint(der),
		CommonName: plan.subject.CommonName, Country: plan.subject.Country[0],
		Organisation: plan.subject.Organization[0], NotBefore: plan.notBefore, NotAfter: plan.notAfter,
		KeyAlgorithm: string(keyAlgorithm), CreatedBy: signer.CallerFrom(ctx).Principal,
		UseIntermediateCA: plan.useIntermediate}
	// Due at once: if the first CRL below is not signed, the refresher
	// signs it.
	if err := s.putRootIndex(ctx, tenant, id, signer.CRLDueAt(time.UnixMilli(0))); err != nil {
		return nil, err
	}
	if withOCSP {
		// The responder is readied before the root exists: should the
		// root not be stored, it goes again.
		if err := s.enableNewRoot(ctx, tenant, nk.ID, r); err != nil {
			s.dropRootIndex(id)
			return nil, err
		}
	}
	rec, err := rootRecord(tenant, r)
	if err != nil {
		return nil, err
	}
	rec.Fields[signer.KeyAlgorithmField] = string(keyAlgorithm)
	// CommitKey names the key in the record and settles it when the write
	// fails (KeySettled); a write that may have committed keeps the root's
	// index and responder too.
	err = s.core.CommitKey(ctx, rec, nk, store.WriteOpts{
		Quota: &store.Quota{Resource: QuotaRoots, Limit: s.core.QuotaLimit(QuotaRoots)}})
	if err != nil {
		if signer.RefusedWrite(err) {
			if withOCSP {
				s.purgeOCSP(id)
			}
			s.dropRootIndex(id)
		}
		if qe := quotaErr(err, rootQuotaMsg); qe != nil {
			return nil, signer.KeySettled(qe)
		}
		return nil, signer.KeySettled(signer.StoreErr(err, "DTS root CA certificate"))
	}
	return r, nil
}

// checkUploadedRoot accepts a self-signed CA certificate that may sign
// certificates and is valid now (MATTR: "must be valid and not
// expired": one not valid yet is refused like an expired one); otherwise
// it says why not.
func (s *Service) checkUploadedRoot(pemText string) (*x509.Certificate, string) {
	c, err := encoding.ParseCertificate([]byte(pemText))
	if err != nil {
		return nil, err.Error()
	}
	if reason := s.uploadedCAReason(c); reason != "" {
		return nil, reason
	}
	if c.CheckSignatureFrom(c) != nil {
		return nil, "must be a self-signed root CA certificate"
	}
	return c, ""
}

// uploadedCAReason says why an uploaded certificate (root or
// intermediate) cannot serve as a CA, or "": it must be a CA certificate
// that may sign certificates and is valid now.
func (s *Service) uploadedCAReason(c *x509.Certificate) string {
	switch {
	case !c.BasicConstraintsValid || !c.IsCA:
		return "must be a CA certificate (basicConstraints cA true)"
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return "must allow certificate signing (keyUsage keyCertSign)"
	case !s.core.Now().Before(c.NotAfter):
		return "the certificate has expired"
	case s.core.Now().Before(c.NotBefore):
		return "the certificate is not valid yet (notBefore " + c.NotBefore.UTC().Format(time.RFC3339) + "): it must be valid now"
	}
	return ""
}

func (s *Service) createUnmanagedRoot(ctx context.Context, tenant string, in RootInput) (*dtsRoot, error) {
	f := signer.FieldErrors(in.BadFields)
	for name, v := range map[string]*string{"organisationName": in.OrganisationName, "commonName": in.CommonName,
		"country": in.Country, "notBefore": in.NotBefore, "notAfter": in.NotAfter} {
		if v != nil {
			f.Add(name, *v, "must not be given with certificatePem: an uploaded certificate carries its own")
		}
	}
	if in.OCSPEnabled != nil && *in.OCSPEnabled {
		f.Add("ocspEnabled", true, noOCSPUnmanaged)
	}
	var cert *x509.Certificate
	if in.CertificatePEM != nil {
		var reason string
		if cert, reason = s.checkUploadedRoot(*in.CertificatePEM); reason != "" {
			f.Add("certificatePem", nil, reason)
		} else if reason = uploadedRootForIntermediates(cert, in); reason != "" {
			f.Add("useIntermediateCa", true, reason)
		}
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	if err := s.quotaFree(ctx, tenant, QuotaRoots, rootQuotaMsg); err != nil {
		return nil, err
	}
	subject := issuance.NameOf(cert.Subject)
	r := &dtsRoot{ID: uuid.NewString(), Active: true, Managed: false, CertDER: cert.Raw,
		Fingerprint: encoding.Fingerprint(cert.Raw), CommonName: cert.Subject.CommonName,
		Country: subject.Country, Organisation: subject.Organization,
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(), UseIntermediateCA: usesIntermediates(in),
		CreatedBy: signer.CallerFrom(ctx).Principal}
	if err := s.putRootIndex(ctx, tenant, r.ID, signer.CRLDueNever); err != nil {
		return nil, err
	}
	rec, err := rootRecord(tenant, r)
	if err != nil {
		return nil, err
	}
	err = s.core.Store().Create(ctx, rec, store.WriteOpts{
		Quota: &store.Quota{Resource: QuotaRoots, Limit: s.core.QuotaLimit(QuotaRoots)}})
	if err != nil {
		s.dropRootIndex(r.ID)
		return nil, uploadedCreateErr(err, rootQuotaMsg, "DTS root CA certificate")
	}
	return r, nil
}

// uploadedCreateErr is the error of a failed write of an uploaded CA
// certificate (root or intermediate, which what names).
func uploadedCreateErr(err error, quotaMsg, what string) error {
	if qe := quotaErr(err, quotaMsg); qe != nil {
		return qe
	}
	if errors.Is(err, store.ErrExists) {
		return &signer.Error{Kind: signer.KindConflict, Msg: "this certificate is already registered as a " + what,
			Fields: []signer.FieldError{{Field: "certificatePem", Msg: "already registered", Location: "body"}}}
	}
	return signer.StoreErr(err, what)
}

// ListRoots lists the caller's roots in creation order.
func (s *Service) ListRoots(ctx context.Context, p ListParams) ([]Root, string, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evCAList)
	if err != nil {
		return nil, "", op.Done("", err)
	}
	out, next, err := s.listRoots(ctx, tenant, p)
	return out, next, op.Done("", err)
}

func (s *Service) listRoots(ctx context.Context, tenant string, p ListParams) ([]Root, string, error) {
	limit, err := p.check()
	if err != nil {
		return nil, "", err
	}
	page, err := s.core.Store().List(ctx, store.Query{Kind: RecordRoot, Tenant: tenant, Limit: limit, Cursor: p.Cursor})
	if err != nil {
		return nil, "", listErr(err, "DTS root CA certificate")
	}
	out := make([]Root, 0, len(page.Records))
	for _, rec := range page.Records {
		var r dtsRoot
		if err := json.Unmarshal(rec.Data, &r); err != nil {
			return nil, "", signer.StoreErr(err, "DTS root CA certificate")
		}
		out = append(out, *r.view())
	}
	return out, page.NextCursor, nil
}

// GetRoot returns one of the caller's roots.
func (s *Service) GetRoot(ctx context.Context, id string) (*Root, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evCARetrieve)
	if err == nil {
		err = checkID("id", id, "path")
	}
	if err != nil {
		return nil, op.Done("", err)
	}
	_, r, err := s.getRoot(ctx, tenant, id)
	if err != nil {
		return nil, op.Done("", err)
	}
	return r.view(), op.Done(id, nil)
}

// UpdateRoot sets a root's active flag and (hsmca's own field) whether
// it answers OCSP requests; at least one of them. Only an active root
// signs signer certificates, and only signers under an active root sign.
func (s *Service) UpdateRoot(ctx context.Context, id string, active, ocspEnabled *bool, bad []signer.FieldError) (*Root, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evCAUpdate)
	if err != nil {
		return nil, op.Done("", err)
	}
	r, err := s.updateRoot(ctx, tenant, id, active, ocspEnabled, bad)
	if err != nil {
		return nil, op.Done("", err)
	}
	return r.view(), op.Done(id, nil)
}

func (s *Service) updateRoot(ctx context.Context, tenant, id string, active, ocspEnabled *bool, bad []signer.FieldError) (*dtsRoot, error) {
	if err := checkID("id", id, "path"); err != nil {
		return nil, err
	}
	f := signer.FieldErrors(bad)
	if active == nil && ocspEnabled == nil && !hasField(bad, "active") && !hasField(bad, "ocspEnabled") {
		f.Add("active", nil, "is required")
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	if ocspEnabled != nil {
		r, err := s.switchRootOCSP(ctx, tenant, id, *ocspEnabled)
		if err != nil || active == nil {
			return r, err
		}
	}
	for attempt := 0; ; attempt++ {
		rec, r, err := s.getRoot(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if r.Active == *active {
			return r, nil
		}
		r.Active = *active
		if rec.Data, err = json.Marshal(r); err != nil {
			return nil, err
		}
		rec.Fields["active"] = strconv.FormatBool(r.Active)
		err = s.core.Store().Update(ctx, rec, store.WriteOpts{})
		if errors.Is(err, store.ErrVersionConflict) && attempt < 8 {
			continue
		}
		if err != nil {
			return nil, signer.StoreErr(err, "DTS root CA certificate")
		}
		return r, nil
	}
}

// DeleteRoot deletes a root; a managed root's HSM key is destroyed, so
// nothing can be issued under it any more. Its VICAL signers stay (the
// operator deletes them) but can no longer sign.
func (s *Service) DeleteRoot(ctx context.Context, id string) error {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evCADelete)
	if err == nil {
		err = s.deleteRoot(ctx, tenant, id)
	}
	if err != nil {
		return op.Done("", err)
	}
	return op.Done(id, nil)
}

func (s *Service) deleteRoot(ctx context.Context, tenant, id string) error {
	if err := checkID("id", id, "path"); err != nil {
		return err
	}
	rec, _, err := s.getRoot(ctx, tenant, id)
	if err != nil {
		return err
	}
	// The responder's records and key go first: a deletion that fails
	// here leaves the root as it was.
	if err := s.ocsp.Purge(ctx, id); err != nil {
		return err
	}
	opts := store.WriteOpts{Quota: &store.Quota{Resource: QuotaRoots, Limit: s.core.QuotaLimit(QuotaRoots)}}
	if err := s.core.DeleteWithKey(ctx, rec, opts); err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return signer.E(signer.KindNotFound, "DTS root CA certificate %s not found", id)
		}
		return err
	}
	s.dropRootIndex(id)
	if err := s.core.Store().Delete(context.WithoutCancel(ctx), kindCRL, tenant, id, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.core.Log().Warn("CRL record of a deleted DTS root left behind", "id", id, "err", err)
	}
	return nil
}
