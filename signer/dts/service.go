// Package dts is the MATTR VII DTS family (API.md family 1, the
// "ecosystem" certificates): root CA certificates, managed (key in the
// HSM, self-signed, publishing a CRL) or uploaded, the intermediate CA
// certificates of roots of the 3-tier model (intermediate.go), and the
// VICAL signers under them, whose keys sign payloads.
package dts

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/ocsp"
	"github.com/hsmca/hsmca/store"
)

// Service holds the DTS use cases over the core.
type Service struct {
	core *signer.Core
	// issuerAltName goes into the certificates of managed roots (URI or
	// email), and from there into their signers'.
	issuerAltName string
	// ocsp keeps the OCSP responder's records of the family's roots.
	ocsp    *ocsp.Publisher
	ocspCfg ocsp.Config
	// rootCerts keeps parsed root certificates by their DER (every OCSP
	// request reads its root).
	rootCerts *signer.BytesCache[*x509.Certificate]
}

// Option configures a Service.
type Option func(*Service)

// IssuerAltName sets the IssuerAlternativeName of managed root
// certificates: an absolute URI or an email address (the daemon checks
// it with issuance.ValidIssuerAltName at start). Empty means none, and
// then managed roots are refused (ReasonNoIssuerAltName): ISO/IEC
// 18013-5 and MATTR's certificate requirements make the extension
// mandatory on roots and signers, and a root lives 20 years.
func IssuerAltName(v string) Option { return func(s *Service) { s.issuerAltName = v } }

// New returns the DTS family's service over core.
func New(core *signer.Core, opts ...Option) *Service {
	s := &Service{core: core, rootCerts: signer.NewBytesCache(x509.ParseCertificate)}
	for _, o := range opts {
		o(s)
	}
	s.ocsp = ocsp.NewPublisher(core, "dts", s, s.ocspCfg)
	return s
}

// Record kinds, quota resources and reasons of the family.
const (
	// RecordRoot is a DTS root CA certificate of a tenant.
	RecordRoot = "dts_root_ca"
	// RecordSigner is a VICAL signer of a tenant.
	RecordSigner = "dts_signer"
	// kindRootIndex maps a root's id to its tenant in the platform
	// namespace, for the unauthenticated revocation-list route; its
	// crl_due field schedules the root's CRL (signer.CRLDueField).
	kindRootIndex = "dts_root_index"
	// kindCRL holds a managed root's revocations and its current CRL,
	// apart from the root record so that CRL refreshes never race with
	// updates of the root.
	kindCRL = "dts_crl"

	// QuotaRoots and QuotaSigners are the per-tenant limits of the public
	// service, part of its contract: configuration cannot change them.
	QuotaRoots   = "dts_root_cas" // fixed at 3
	QuotaSigners = "dts_signers"  // fixed at 5

	// ReasonNoCRL refuses a revocation-list request for a root that has
	// none (an unmanaged root, or a first CRL not signed yet).
	ReasonNoCRL signer.Reason = "dts.no_crl"
	// ReasonNoIssuerAltName refuses a managed root while the daemon has
	// no IssuerAlternativeName to write into it (neither issuer_alt_name
	// nor public_base_url is set).
	ReasonNoIssuerAltName signer.Reason = "dts.no_issuer_alt_name"
)

// Family is what the core needs of the DTS family: the root index by
// crl_due (the CRL refresher reads the due ones), the fixed quotas, the
// active roots for the CA-expiry gauges (signers under an expired root
// stop being trusted either way, managed or not), and the refresher that
// re-signs the CRLs of managed roots, also in tenants nobody reads; and
// the same for intermediate CAs, whose quota is configurable.
func Family() signer.Family {
	return signer.Family{
		Name:    "dts",
		Indexes: append([]store.Index{{Kind: kindRootIndex, Field: signer.CRLDueField}}, intermediateIndexes...),
		Quotas: []signer.QuotaDefault{
			{Resource: QuotaRoots, Default: 3, Fixed: true},
			{Resource: QuotaSigners, Default: 5, Fixed: true},
			{Resource: QuotaIntermediates, Default: defaultIntermediatesQuota},
		},
		CAExpiry: []signer.CAExpirySource{{Label: "dts_root", RecordKind: RecordRoot, Active: activeRootExpiry},
			{Label: "dts_intermediate", RecordKind: RecordIntermediate, Active: activeIntermediateExpiry}},
		Janitors: []signer.Janitor{{Name: "refresh-crls", Run: func(ctx context.Context, c *signer.Core) (int, error) {
			return New(c).refreshDueCRLs(ctx)
		}}, {Name: "refresh-intermediate-crls", Run: func(ctx context.Context, c *signer.Core) (int, error) {
			return New(c).refreshDueIntermediateCRLs(ctx)
		}}},
	}
}

// ListParams page a list: Limit 0 means the default (100). BadFields are
// query parameters the transport could not read.
type ListParams struct {
	Limit     int
	Cursor    string
	BadFields []signer.FieldError
}

const (
	listDefault = 100
	listMax     = 1000
)

func (p ListParams) check() (int, error) {
	f := signer.FieldErrors(p.BadFields)
	limit := p.Limit
	switch {
	case limit == 0:
		limit = listDefault
	case limit < 1 || limit > listMax:
		f = append(f, signer.FieldError{Field: "limit", Value: p.Limit, Msg: "must be an integer from 1 to 1000", Location: "query"})
	}
	return limit, f.Err()
}

func listErr(err error, what string) error {
	if errors.Is(err, store.ErrInvalid) {
		return &signer.Error{Kind: signer.KindInvalid, Msg: "cursor: not a cursor of this list", Err: err,
			Fields: []signer.FieldError{{Field: "cursor", Msg: "not a cursor of this list", Location: "query"}}}
	}
	return signer.StoreErr(err, what)
}

// tenantOf is the caller's tenant; the routes admit only tenant tokens,
// so an empty tenant is a wiring error, refused rather than guessed.
func tenantOf(ctx context.Context) (string, error) {
	t := signer.CallerFrom(ctx).Tenant
	if t == "" {
		return "", signer.E(signer.KindForbidden, "DTS certificates belong to a tenant; use a tenant's API token")
	}
	return t, nil
}

// checkID validates a path id; ids are canonical UUIDs.
func checkID(param, id string, loc string) error {
	if len(id) != 36 {
		return idInvalid(param, id, loc)
	}
	if _, err := uuid.Parse(id); err != nil {
		return idInvalid(param, id, loc)
	}
	return nil
}

func idInvalid(param, id, loc string) error {
	return &signer.Error{Kind: signer.KindInvalid, Msg: param + ": must be a UUID",
		Fields: []signer.FieldError{{Field: param, Value: id, Msg: "must be a UUID", Location: loc}}}
}

func hasField(fs []signer.FieldError, name string) bool {
	for _, f := range fs {
		if f.Field == name {
			return true
		}
	}
	return false
}

// quotaFree is the core's fast quota pre-check with the family's own
// wording of the refusal.
func (s *Service) quotaFree(ctx context.Context, tenant, resource, msg string) error {
	_, err := s.core.QuotaFree(ctx, tenant, resource)
	if signer.KindOf(err) == signer.KindQuotaExceeded {
		return &signer.Error{Kind: signer.KindQuotaExceeded, Reason: signer.ReasonOf(err), Msg: msg}
	}
	return err
}

// quotaErr is the refusal of a commit the store's quota reservation
// refused, nil for any other error.
// supportsKeys refuses, before anything is written, a key the token
// cannot make: every DTS key is P-256 (keyAlgorithm). The answer names
// the missing mechanism; no field is at fault. what says which key and
// what the caller may do instead.
func (s *Service) supportsKeys(what string) error {
	if err := s.core.Supports(keyAlgorithm); err != nil {
		return signer.Unsupported(err, "", "", nil, what)
	}
	return nil
}

func quotaErr(err error, msg string) error {
	if errors.Is(err, store.ErrQuotaExceeded) {
		return &signer.Error{Kind: signer.KindQuotaExceeded, Msg: msg, Err: err}
	}
	return nil
}

// unsafeText reports invalid UTF-8 or a character that makes a name
// display as something it is not: controls, format characters (the
// bidirectional overrides and isolates, zero-width characters ...), line
// and paragraph separators, the replacement character. The same rule as
// the PCA subject attributes'.
func unsafeText(s string) bool {
	return !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) || r == utf8.RuneError
	}) >= 0
}
