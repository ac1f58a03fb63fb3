package signer

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/hsm"
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
	KindDTSRootCA = "dts_root_ca"
	// kindDTSRootIndex maps a root's id to its tenant in the platform
	// namespace, for the unauthenticated revocation-list route.
	kindDTSRootIndex = "dts_root_index"
	// kindDTSCRL holds a managed root's revocations and its current CRL,
	// apart from the root record so that CRL refreshes never race with
	// updates of the root.
	kindDTSCRL = "dts_crl"

	dtsMaxValidityYears = 20
	dtsNameMax          = 64 // ub-common-name, ub-organization-name
	// dtsNotBeforeSkew tolerates a client clock slightly behind ours for
	// "notBefore must not be in the past".
	dtsNotBeforeSkew = time.Minute
	// dtsDefaultCountry is used when a managed root is created without a
	// country; the public service picks one by region, hsmca has none.
	dtsDefaultCountry = "US"
	dtsKeyAlgorithm   = hsm.EC256

	// Event names (API.md family 1).
	evDTSCACreate   = "ECOSYSTEM_DTS_CA_CERTIFICATE_CREATE"
	evDTSCAList     = "ECOSYSTEM_DTS_CA_CERTIFICATE_RETRIEVE_LIST"
	evDTSCARetrieve = "ECOSYSTEM_DTS_CA_CERTIFICATE_RETRIEVE"
	evDTSCAUpdate   = "ECOSYSTEM_DTS_CA_CERTIFICATE_UPDATE"
	evDTSCADelete   = "ECOSYSTEM_DTS_CA_CERTIFICATE_DELETE"
)

// Active DTS roots, managed or not, feed the CA-expiry gauges: signers
// under an expired root stop being trusted either way.
func init() {
	caExpirySources = append(caExpirySources, caExpirySource{label: "dts_root", kind: KindDTSRootCA,
		active: func(rec *store.Record) (time.Time, bool) {
			var r dtsRoot
			if rec.Fields["active"] != "true" || json.Unmarshal(rec.Data, &r) != nil {
				return time.Time{}, false
			}
			return r.NotAfter, true
		}})
}

// ReasonDTSNoCRL refuses a revocation-list request for a root that has
// none (an unmanaged root, or a first CRL not signed yet).
const ReasonDTSNoCRL Reason = "dts.no_crl"

// dtsRoot is the stored form of a DTS root CA certificate.
type dtsRoot struct {
	ID           string    `json:"id"`
	Active       bool      `json:"active"`
	Managed      bool      `json:"managed"`
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

// DTSRootCA is a root as the API shows it.
type DTSRootCA struct {
	ID             string
	Active         bool
	Managed        bool
	CertificatePEM string
	Fingerprint    string
	CommonName     string
	Country        string
	Organisation   string
	NotBefore      time.Time
	NotAfter       time.Time
}

func (r *dtsRoot) view() *DTSRootCA {
	return &DTSRootCA{ID: r.ID, Active: r.Active, Managed: r.Managed,
		CertificatePEM: encoding.EncodePEM("CERTIFICATE", r.CertDER), Fingerprint: r.Fingerprint,
		CommonName: r.CommonName, Country: r.Country, Organisation: r.Organisation,
		NotBefore: r.NotBefore, NotAfter: r.NotAfter}
}

// DTSRootCAInput is a create request. Nil means absent. BadFields are
// fields the transport could not decode (wrong JSON type, unknown name);
// they are reported together with the engine's own checks so that the
// caller gets one detail per invalid field in one answer.
type DTSRootCAInput struct {
	OrganisationName *string
	CommonName       *string
	Country          *string
	NotBefore        *string // RFC 3339
	NotAfter         *string // RFC 3339
	CertificatePEM   *string
	BadFields        []FieldError
}

// DTSListParams page a list: Limit 0 means the default (100).
type DTSListParams struct {
	Limit     int
	Cursor    string
	BadFields []FieldError
}

const (
	dtsListDefault = 100
	dtsListMax     = 1000
)

func (p DTSListParams) check() (int, error) {
	f := fieldErrs(p.BadFields)
	limit := p.Limit
	switch {
	case limit == 0:
		limit = dtsListDefault
	case limit < 1 || limit > dtsListMax:
		f = append(f, FieldError{Field: "limit", Value: p.Limit, Msg: "must be an integer from 1 to 1000", Location: "query"})
	}
	return limit, f.err()
}

func listErr(err error, what string) error {
	if errors.Is(err, store.ErrInvalid) {
		return &Error{Kind: KindInvalid, Msg: "cursor: not a cursor of this list", Err: err,
			Fields: []FieldError{{Field: "cursor", Msg: "not a cursor of this list", Location: "query"}}}
	}
	return storeErr(err, what)
}

// dtsTenant is the caller's tenant; the routes admit only tenant tokens,
// so an empty tenant is a wiring error, refused rather than guessed.
func dtsTenant(ctx context.Context) (string, error) {
	t := CallerFrom(ctx).Tenant
	if t == "" {
		return "", E(KindForbidden, "DTS certificates belong to a tenant; use a tenant's API token")
	}
	return t, nil
}

// checkDTSID validates a path id; ids are canonical UUIDs.
func checkDTSID(param, id string, loc string) error {
	if len(id) != 36 {
		return idInvalid(param, id, loc)
	}
	if _, err := uuid.Parse(id); err != nil {
		return idInvalid(param, id, loc)
	}
	return nil
}

func idInvalid(param, id, loc string) error {
	return &Error{Kind: KindInvalid, Msg: param + ": must be a UUID",
		Fields: []FieldError{{Field: param, Value: id, Msg: "must be a UUID", Location: loc}}}
}

func (e *Engine) getDTSRoot(ctx context.Context, tenant, id string) (*store.Record, *dtsRoot, error) {
	rec, err := e.store.Get(ctx, KindDTSRootCA, tenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, E(KindNotFound, "DTS root CA certificate %s not found", id)
		}
		return nil, nil, storeErr(err, "DTS root CA certificate")
	}
	var r dtsRoot
	if err := json.Unmarshal(rec.Data, &r); err != nil {
		return nil, nil, storeErr(err, "DTS root CA certificate")
	}
	return rec, &r, nil
}

// CreateDTSRootCA creates a managed root (key in the HSM, self-signed) or
// registers an unmanaged one (certificatePem).
func (e *Engine) CreateDTSRootCA(ctx context.Context, in DTSRootCAInput) (*DTSRootCA, error) {
	var out *DTSRootCA
	tenant, terr := dtsTenant(ctx)
	err := e.run(ctx, tenant, evDTSCACreate, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		var (
			r   *dtsRoot
			err error
		)
		if in.CertificatePEM != nil || hasField(in.BadFields, "certificatePem") {
			r, err = e.createUnmanagedRoot(ctx, tenant, in)
		} else {
			r, err = e.createManagedRoot(ctx, tenant, in)
		}
		if err != nil {
			return "", err
		}
		out = r.view()
		return r.ID, nil
	})
	return out, err
}

type dtsRootPlan struct {
	subject             pkix.Name
	notBefore, notAfter time.Time
}

func (e *Engine) checkManagedRoot(tenant string, in DTSRootCAInput) (*dtsRootPlan, error) {
	f := fieldErrs(in.BadFields)
	bad := map[string]bool{}
	for _, b := range in.BadFields {
		bad[b.Field] = true
	}
	p := &dtsRootPlan{}
	now := e.now().UTC().Truncate(time.Second)

	org := ""
	switch {
	case bad["organisationName"]:
	case in.OrganisationName == nil:
		f.add("organisationName", nil, "is required")
	default:
		org = *in.OrganisationName
		switch {
		case strings.TrimSpace(org) == "":
			f.add("organisationName", org, "must not be empty")
		case len(org) > dtsNameMax:
			f.add("organisationName", org, "must be at most 64 characters")
		case hasUnsafeText(org):
			f.add("organisationName", nil, "must not contain control, format or bidirectional characters")
		}
	}
	cn := tenant + " DTS CA"
	if in.CommonName != nil && !bad["commonName"] {
		cn = *in.CommonName
		switch {
		case cn == "":
			f.add("commonName", cn, "must not be empty")
		case len(cn) > dtsNameMax:
			f.add("commonName", cn, "must be at most 64 characters")
		case !issuance.PrintableString(cn):
			f.add("commonName", cn, "must be a valid PrintableString (letters, digits, space and '()+,-./:=?)")
		}
	}
	country := dtsDefaultCountry
	if in.Country != nil && !bad["country"] {
		country = *in.Country
		if !issuance.IsCountryCode(country) {
			f.add("country", country, "must be an ISO 3166-1 alpha-2 country code, e.g. NZ")
		}
	}
	p.notBefore = now
	nbOK := true
	if in.NotBefore != nil && !bad["notBefore"] {
		t, err := time.Parse(time.RFC3339, *in.NotBefore)
		switch {
		case err != nil:
			nbOK = false
			f.add("notBefore", *in.NotBefore, "must be an RFC 3339 date-time")
		case t.Before(now.Add(-dtsNotBeforeSkew)):
			nbOK = false
			f.add("notBefore", *in.NotBefore, "must not be in the past")
		case t.After(now.AddDate(dtsMaxValidityYears, 0, 0)):
			nbOK = false
			f.add("notBefore", *in.NotBefore, "must be within 20 years from now")
		default:
			p.notBefore = t.UTC().Truncate(time.Second)
		}
	}
	p.notAfter = p.notBefore.AddDate(dtsMaxValidityYears, 0, 0)
	if in.NotAfter != nil && !bad["notAfter"] {
		t, err := time.Parse(time.RFC3339, *in.NotAfter)
		t = t.UTC().Truncate(time.Second)
		switch {
		case err != nil:
			f.add("notAfter", *in.NotAfter, "must be an RFC 3339 date-time")
		case !t.After(now):
			f.add("notAfter", *in.NotAfter, "must be in the future")
		case nbOK && !t.After(p.notBefore):
			f.add("notAfter", *in.NotAfter, "must be after notBefore")
		case nbOK && t.After(p.notBefore.AddDate(dtsMaxValidityYears, 0, 0)):
			f.add("notAfter", *in.NotAfter, "must be at most 20 years after notBefore")
		default:
			p.notAfter = t
		}
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	p.subject = pkix.Name{Country: []string{country}, Organization: []string{org}, CommonName: cn}
	return p, nil
}

// reserveCheck fails fast when the tenant's quota is already used up, so
// that a burst of creates over the limit does not generate keys only to
// destroy them. The store's atomic reservation at commit stays the rule.
func (e *Engine) reserveCheck(ctx context.Context, tenant, resource, msg string) error {
	used, err := e.store.QuotaUsage(ctx, tenant, resource)
	if err != nil {
		return storeErr(err, "quota")
	}
	if limit := e.QuotaLimit(resource); limit >= 0 && used >= limit {
		return &Error{Kind: KindQuotaExceeded, Msg: msg}
	}
	return nil
}

func dtsQuotaErr(err error, msg string) error {
	if errors.Is(err, store.ErrQuotaExceeded) {
		return &Error{Kind: KindQuotaExceeded, Msg: msg, Err: err}
	}
	return nil
}

const dtsRootQuotaMsg = "a maximum of three DTS root CA certificates can be created per tenant"

func (e *Engine) createManagedRoot(ctx context.Context, tenant string, in DTSRootCAInput) (*dtsRoot, error) {
	plan, err := e.checkManagedRoot(tenant, in)
	if err != nil {
		return nil, err
	}
	ian, err := issuance.IssuerAltNameExtension(e.issuerAltName)
	if err != nil {
		return nil, &Error{Kind: KindInternal, Msg: "the daemon's issuer_alt_name setting is invalid", Err: err}
	}
	if err := e.reserveCheck(ctx, tenant, QuotaDTSRootCAs, dtsRootQuotaMsg); err != nil {
		return nil, err
	}
	id := uuid.NewString()
	nk, err := e.GenerateKey(ctx, tenant, KindDTSRootCA, id, dtsKeyAlgorithm)
	if err != nil {
		return nil, err
	}
	r, err := e.commitManagedRoot(ctx, tenant, id, nk, plan, ian)
	if err != nil {
		e.AbandonKey(nk)
		return nil, err
	}
	// The root publishes a CRL from its creation on; the route that
	// serves it never signs one.
	if _, err := e.signDTSRootCRL(ctx, tenant, id, false); err != nil {
		e.log.Warn("first CRL of a DTS root not signed; the refresher retries", "id", id, "err", err)
	}
	return r, nil
}

func (e *Engine) commitManagedRoot(ctx context.Context, tenant, id string, nk *NewKey, plan *dtsRootPlan, ian *pkix.Extension) (*dtsRoot, error) {
	tmpl := issuance.IACARootTemplate(plan.subject, plan.notBefore, plan.notAfter, ian)
	der, err := issuance.SignCertificate(tmpl, nil, nk.Signer.Public(),
		e.Timed(nk.Signer, "dts_root_certificate", string(dtsKeyAlgorithm)), issuance.KeyIDSHA256)
	if err != nil {
		return nil, HSMError(err, "DTS root CA key")
	}
	r := &dtsRoot{ID: id, Active: true, Managed: true, CertDER: der, Fingerprint: encoding.Fingerprint(der),
		CommonName: plan.subject.CommonName, Country: plan.subject.Country[0],
		Organisation: plan.subject.Organization[0], NotBefore: plan.notBefore, NotAfter: plan.notAfter,
		KeyAlgorithm: string(dtsKeyAlgorithm), CreatedBy: CallerFrom(ctx).Principal}
	// Due at once: if the first CRL below is not signed, the refresher
	// signs it.
	if err := e.putRootIndex(ctx, tenant, id, crlDueAt(time.UnixMilli(0))); err != nil {
		return nil, err
	}
	rec, err := rootRecord(tenant, r)
	if err != nil {
		return nil, err
	}
	rec.Fields[KeyField] = nk.ID
	rec.Fields[KeyAlgorithmField] = string(dtsKeyAlgorithm)
	err = e.store.Create(ctx, rec, store.WriteOpts{Intent: nk.Intent,
		Quota: &store.Quota{Resource: QuotaDTSRootCAs, Limit: e.QuotaLimit(QuotaDTSRootCAs)}})
	if err != nil {
		e.dropRootIndex(id)
		if qe := dtsQuotaErr(err, dtsRootQuotaMsg); qe != nil {
			return nil, qe
		}
		return nil, storeErr(err, "DTS root CA certificate")
	}
	return r, nil
}

func rootRecord(tenant string, r *dtsRoot) (*store.Record, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return &store.Record{Kind: KindDTSRootCA, Tenant: tenant, ID: r.ID,
		Unique: []string{"fingerprint:" + r.Fingerprint},
		Fields: map[string]string{"active": strconv.FormatBool(r.Active)}, Data: data}, nil
}

// putRootIndex is written before the root: a crash in between leaves an
// index entry pointing at nothing, which reads as "not found". crlDue is
// when the root's CRL is to be signed (see crl_refresh.go).
func (e *Engine) putRootIndex(ctx context.Context, tenant, id, crlDue string) error {
	data, _ := json.Marshal(map[string]string{"tenant": tenant})
	rec := &store.Record{Kind: kindDTSRootIndex, Tenant: store.PlatformTenant, ID: id,
		Fields: map[string]string{"tenant": tenant, crlDueField: crlDue}, Data: data}
	return storeErr(e.store.Create(ctx, rec, store.WriteOpts{}), "DTS root CA index")
}

func (e *Engine) dropRootIndex(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.store.Delete(ctx, kindDTSRootIndex, store.PlatformTenant, id, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrNotFound) {
		e.log.Warn("DTS root index entry left behind", "id", id, "err", err)
	}
}

// checkUploadedRoot accepts a self-signed CA certificate that may sign
// certificates and has not expired; otherwise it says why not.
func (e *Engine) checkUploadedRoot(pemText string) (*x509.Certificate, string) {
	c, err := encoding.ParseCertificate([]byte(pemText))
	switch {
	case err != nil:
		return nil, err.Error()
	case !c.BasicConstraintsValid || !c.IsCA:
		return nil, "must be a CA certificate (basicConstraints cA true)"
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, "must allow certificate signing (keyUsage keyCertSign)"
	case !e.now().Before(c.NotAfter):
		return nil, "the certificate has expired"
	case c.CheckSignatureFrom(c) != nil:
		return nil, "must be a self-signed root CA certificate"
	}
	return c, ""
}

func (e *Engine) createUnmanagedRoot(ctx context.Context, tenant string, in DTSRootCAInput) (*dtsRoot, error) {
	f := fieldErrs(in.BadFields)
	for name, v := range map[string]*string{"organisationName": in.OrganisationName, "commonName": in.CommonName,
		"country": in.Country, "notBefore": in.NotBefore, "notAfter": in.NotAfter} {
		if v != nil {
			f.add(name, *v, "must not be given with certificatePem: an uploaded certificate carries its own")
		}
	}
	var cert *x509.Certificate
	if in.CertificatePEM != nil {
		var reason string
		if cert, reason = e.checkUploadedRoot(*in.CertificatePEM); reason != "" {
			f.add("certificatePem", nil, reason)
		}
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	if err := e.reserveCheck(ctx, tenant, QuotaDTSRootCAs, dtsRootQuotaMsg); err != nil {
		return nil, err
	}
	subject := issuance.NameOf(cert.Subject)
	r := &dtsRoot{ID: uuid.NewString(), Active: true, Managed: false, CertDER: cert.Raw,
		Fingerprint: encoding.Fingerprint(cert.Raw), CommonName: cert.Subject.CommonName,
		Country: subject.Country, Organisation: subject.Organization,
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(), CreatedBy: CallerFrom(ctx).Principal}
	if err := e.putRootIndex(ctx, tenant, r.ID, crlDueNever); err != nil {
		return nil, err
	}
	rec, err := rootRecord(tenant, r)
	if err != nil {
		return nil, err
	}
	err = e.store.Create(ctx, rec, store.WriteOpts{
		Quota: &store.Quota{Resource: QuotaDTSRootCAs, Limit: e.QuotaLimit(QuotaDTSRootCAs)}})
	if err != nil {
		e.dropRootIndex(r.ID)
		if qe := dtsQuotaErr(err, dtsRootQuotaMsg); qe != nil {
			return nil, qe
		}
		if errors.Is(err, store.ErrExists) {
			return nil, &Error{Kind: KindConflict, Msg: "this certificate is already registered as a DTS root CA certificate",
				Fields: []FieldError{{Field: "certificatePem", Msg: "already registered", Location: "body"}}}
		}
		return nil, storeErr(err, "DTS root CA certificate")
	}
	return r, nil
}

// ListDTSRootCAs lists the caller's roots in creation order.
func (e *Engine) ListDTSRootCAs(ctx context.Context, p DTSListParams) ([]DTSRootCA, string, error) {
	var (
		out  []DTSRootCA
		next string
	)
	tenant, terr := dtsTenant(ctx)
	err := e.run(ctx, tenant, evDTSCAList, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		limit, err := p.check()
		if err != nil {
			return "", err
		}
		page, err := e.store.List(ctx, store.Query{Kind: KindDTSRootCA, Tenant: tenant, Limit: limit, Cursor: p.Cursor})
		if err != nil {
			return "", listErr(err, "DTS root CA certificate")
		}
		out = make([]DTSRootCA, 0, len(page.Records))
		for _, rec := range page.Records {
			var r dtsRoot
			if err := json.Unmarshal(rec.Data, &r); err != nil {
				return "", storeErr(err, "DTS root CA certificate")
			}
			out = append(out, *r.view())
		}
		next = page.NextCursor
		return "", nil
	})
	return out, next, err
}

// GetDTSRootCA returns one of the caller's roots.
func (e *Engine) GetDTSRootCA(ctx context.Context, id string) (*DTSRootCA, error) {
	var out *DTSRootCA
	tenant, terr := dtsTenant(ctx)
	err := e.run(ctx, tenant, evDTSCARetrieve, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		if err := checkDTSID("id", id, "path"); err != nil {
			return "", err
		}
		_, r, err := e.getDTSRoot(ctx, tenant, id)
		if err != nil {
			return "", err
		}
		out = r.view()
		return id, nil
	})
	return out, err
}

// UpdateDTSRootCA sets a root's active flag. Only an active root signs
// signer certificates, and only signers under an active root sign.
func (e *Engine) UpdateDTSRootCA(ctx context.Context, id string, active *bool, bad []FieldError) (*DTSRootCA, error) {
	var out *DTSRootCA
	tenant, terr := dtsTenant(ctx)
	err := e.run(ctx, tenant, evDTSCAUpdate, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		if err := checkDTSID("id", id, "path"); err != nil {
			return "", err
		}
		f := fieldErrs(bad)
		if active == nil && !hasField(bad, "active") {
			f.add("active", nil, "is required")
		}
		if err := f.err(); err != nil {
			return "", err
		}
		for attempt := 0; ; attempt++ {
			rec, r, err := e.getDTSRoot(ctx, tenant, id)
			if err != nil {
				return "", err
			}
			if r.Active == *active {
				out = r.view()
				return id, nil
			}
			r.Active = *active
			if rec.Data, err = json.Marshal(r); err != nil {
				return "", err
			}
			rec.Fields["active"] = strconv.FormatBool(r.Active)
			err = e.store.Update(ctx, rec, store.WriteOpts{})
			if errors.Is(err, store.ErrVersionConflict) && attempt < 8 {
				continue
			}
			if err != nil {
				return "", storeErr(err, "DTS root CA certificate")
			}
			out = r.view()
			return id, nil
		}
	})
	return out, err
}

func hasField(fs []FieldError, name string) bool {
	for _, f := range fs {
		if f.Field == name {
			return true
		}
	}
	return false
}

// DeleteDTSRootCA deletes a root; a managed root's HSM key is destroyed,
// so nothing can be issued under it any more. Its VICAL signers stay (the
// operator deletes them) but can no longer sign.
func (e *Engine) DeleteDTSRootCA(ctx context.Context, id string) error {
	tenant, terr := dtsTenant(ctx)
	return e.run(ctx, tenant, evDTSCADelete, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		if err := checkDTSID("id", id, "path"); err != nil {
			return "", err
		}
		rec, _, err := e.getDTSRoot(ctx, tenant, id)
		if err != nil {
			return "", err
		}
		opts := store.WriteOpts{Quota: &store.Quota{Resource: QuotaDTSRootCAs, Limit: e.QuotaLimit(QuotaDTSRootCAs)}}
		if err := e.DeleteWithKey(ctx, rec, opts); err != nil {
			if KindOf(err) == KindNotFound {
				return "", E(KindNotFound, "DTS root CA certificate %s not found", id)
			}
			return "", err
		}
		e.dropRootIndex(id)
		if err := e.store.Delete(context.WithoutCancel(ctx), kindDTSCRL, tenant, id, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrNotFound) {
			e.log.Warn("CRL record of a deleted DTS root left behind", "id", id, "err", err)
		}
		return id, nil
	})
}

// dtsRootTenant resolves a root id to its tenant through the platform index
// (for the unauthenticated CRL route).
func (e *Engine) dtsRootTenant(ctx context.Context, id string) (string, error) {
	rec, err := e.store.Get(ctx, kindDTSRootIndex, store.PlatformTenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", E(KindNotFound, "DTS root CA certificate %s not found", id)
		}
		return "", storeErr(err, "DTS root CA certificate")
	}
	t := rec.Fields["tenant"]
	if t == "" {
		return "", fmt.Errorf("dts root index %s without tenant", id)
	}
	return t, nil
}
