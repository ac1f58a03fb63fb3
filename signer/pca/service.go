// Package pca is the Huawei CCM Private CA family: private certificate
// authorities (roots, subordinates signed here or outside), the
// certificates they issue (with a key made here, or from a CSR), their
// revocation, CRLs and scheduled deletion. Keys of CAs live in the HSM;
// the core (package signer) provides the run envelope, the key lifecycle,
// quotas and the store.
package pca

import (
	"context"
	"crypto/x509"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/ocsp"
	"github.com/hsmca/hsmca/store"
)

// Record kinds of the family.
const (
	RecordCA          = "pca_ca"
	RecordCertificate = "pca_certificate"
	RecordRevocation  = "pca_revocation"
	RecordCRL         = "pca_crl"
	// RecordCRLData holds a CA's CRL when it is too large to keep in its
	// RecordCRL record (see crlRecord).
	RecordCRLData = "pca_crl_data"
	// RecordIndex maps a CA id to its tenant (in the platform namespace)
	// for the one route that names a CA without a credential: its CRL.
	RecordIndex = "pca_ca_index"
)

// Per-tenant quota resources of the family (the store's quota counters
// and keys of the `quotas` configuration map).
const (
	QuotaCAs          = "pca_cas"          // certificate authorities, default 100
	QuotaCertificates = "pca_certificates" // private certificates, default 100000
)

// Service is the family's use cases over a core.
type Service struct {
	core  *signer.Core
	store store.Store // the core's, timed by the store metrics
	// issuers keeps decoded CA records by their stored bytes: every
	// issuance reads its CA record afresh but need not decode the same
	// bytes again each time.
	issuers *signer.BytesCache[caRecord]
	// knownIssuers keeps the CAs that issued from a CSR lately, so that
	// the next such issuance need not read its CA first: the
	// certificate's create is guarded by the CA record's version
	// (IssueFromCSR).
	knownIssuers signer.Known[*issuer]
	// issuerCerts keeps parsed CA certificates by their DER bytes, for
	// the same reason.
	issuerCerts *signer.BytesCache[*x509.Certificate]
	// ocsp keeps the OCSP responder's records of the family's CAs.
	ocsp    *ocsp.Publisher
	ocspCfg ocsp.Config
	// crlCopies keeps the large CRLs last served (PublicCRL).
	crlCopies *crlCopies
	// crlDataVersions: CA id -> crlDataVersion, the CRL data record this
	// service last stored (publishCRL updates it without reading it).
	crlDataVersions sync.Map
}

// New returns the family's service over core.
func New(core *signer.Core, opts ...Option) *Service {
	s := &Service{core: core, store: core.Store(),
		issuers: signer.JSONCache[caRecord](), issuerCerts: signer.NewBytesCache(parseCACert), crlCopies: &crlCopies{}}
	for _, o := range opts {
		o(s)
	}
	s.ocsp = ocsp.NewPublisher(core, "pca", s, s.ocspCfg)
	return s
}

func parseCACert(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("CA has no certificate")
	}
	return x509.ParseCertificate(der)
}

func (s *Service) now() time.Time { return s.core.Now() }

// Family is what the core needs of the family. Its indexes:
//
//   - certificates by status, common_name, not_after and expiry (the
//     stored status, "/", and not_after: the derived ISSUED and EXPIRED
//     states are ranges of it, and within one status it is not_after
//     order);
//   - revocations by issuer_id (a CRL reads its issuer's only);
//   - CAs by status (the purge sweep reads the deleted ones) and the CA
//     index by purge_at (the janitor reads the due ones). CA lists
//     otherwise read the tenant's CAs, which the CA quota bounds;
//   - the CA index by crl_due (the CRL refresher reads the due ones).
//
// ACTIVED CAs feed the CA-expiry gauges, roots and subordinates apart.
// Its janitors purge the CAs whose scheduled deletion fell due, also in
// tenants nobody reads, and re-sign the CRLs due for refresh.
func Family() signer.Family {
	return signer.Family{
		Name: "pca",
		Indexes: []store.Index{
			{Kind: RecordCertificate, Field: "status"},
			{Kind: RecordCertificate, Field: "common_name"},
			{Kind: RecordCertificate, Field: "not_after"},
			{Kind: RecordCertificate, Field: certExpiryField},
			{Kind: RecordRevocation, Field: "issuer_id"},
			{Kind: RecordCA, Field: "status"},
			{Kind: RecordIndex, Field: "purge_at"},
			{Kind: RecordIndex, Field: signer.CRLDueField},
		},
		Quotas: []signer.QuotaDefault{
			{Resource: QuotaCAs, Default: 100},
			{Resource: QuotaCertificates, Default: 100000},
		},
		CAExpiry: []signer.CAExpirySource{
			{Label: "pca_root", RecordKind: RecordCA, Active: activeCA(CATypeRoot)},
			{Label: "pca_subordinate", RecordKind: RecordCA, Active: activeCA(CATypeSubordinate)},
		},
		Janitors: []signer.Janitor{
			{Name: "purge-deleted-cas", Run: func(ctx context.Context, c *signer.Core) (int, error) {
				return New(c).SweepDeletedCAs(ctx)
			}},
			{Name: "refresh-crls", Run: func(ctx context.Context, c *signer.Core) (int, error) {
				return New(c).RefreshDueCRLs(ctx)
			}},
		},
	}
}

// activeCA reads the expiry of an ACTIVED CA of type typ. One past its
// end still counts, with a negative expiry: the alert must keep firing
// until someone replaces it.
func activeCA(typ string) func(rec *store.Record) (time.Time, bool) {
	return func(rec *store.Record) (time.Time, bool) {
		if rec.Fields["status"] != CAActived || rec.Fields["type"] != typ {
			return time.Time{}, false
		}
		ms, err := strconv.ParseInt(rec.Fields["not_after"], 10, 64)
		if err != nil || ms <= 0 {
			return time.Time{}, false
		}
		return time.UnixMilli(ms), true
	}
}
