package dts

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// The family's records: roots (RecordRoot) with their platform index
// entries (kindRootIndex), signers (RecordSigner), and the CRL state of
// managed roots (kindCRL, crl.go). Their JSON forms are stored: keep the
// tags.

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
	// UseIntermediateCA: the root issues intermediate CA certificates,
	// and VICAL signers only under them (intermediate.go).
	UseIntermediateCA bool `json:"useIntermediateCa,omitempty"`
	// OCSP: the root answers OCSP requests about what it issued.
	OCSP bool `json:"ocspEnabled,omitempty"`
}

// Root is a root as the API shows it.
type Root struct {
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
	// UseIntermediateCA is MATTR's useIntermediateCa.
	UseIntermediateCA bool
	OCSPEnabled       bool
}

func (r *dtsRoot) view() *Root {
	return &Root{ID: r.ID, Active: r.Active, Managed: r.Managed, UseIntermediateCA: r.UseIntermediateCA,
		CertificatePEM: encoding.EncodePEM("CERTIFICATE", r.CertDER), Fingerprint: r.Fingerprint,
		CommonName: r.CommonName, Country: r.Country, Organisation: r.Organisation,
		NotBefore: r.NotBefore, NotAfter: r.NotAfter, OCSPEnabled: r.OCSP}
}

// activeRootExpiry is the notAfter of an active root, for the CA-expiry
// gauges.
func activeRootExpiry(rec *store.Record) (time.Time, bool) {
	var r dtsRoot
	if rec.Fields["active"] != "true" || json.Unmarshal(rec.Data, &r) != nil {
		return time.Time{}, false
	}
	return r.NotAfter, true
}

func rootRecord(tenant string, r *dtsRoot) (*store.Record, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return &store.Record{Kind: RecordRoot, Tenant: tenant, ID: r.ID,
		Unique: []string{"fingerprint:" + r.Fingerprint},
		Fields: map[string]string{"active": strconv.FormatBool(r.Active)}, Data: data}, nil
}

func rootNotFound(id string) error {
	return signer.E(signer.KindNotFound, "DTS root CA certificate %s not found", id)
}

func (s *Service) getRoot(ctx context.Context, tenant, id string) (*store.Record, *dtsRoot, error) {
	return getStored[dtsRoot](ctx, s, RecordRoot, tenant, id, "DTS root CA certificate", rootNotFound)
}

// getStored reads the record kind/tenant/id and decodes its stored form;
// what names the record in errors, notFound makes the error of a missing
// one.
func getStored[T any](ctx context.Context, s *Service, kind, tenant, id, what string, notFound func(string) error) (*store.Record, *T, error) {
	rec, err := s.core.Store().Get(ctx, kind, tenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, notFound(id)
		}
		return nil, nil, signer.StoreErr(err, what)
	}
	var v T
	if err := json.Unmarshal(rec.Data, &v); err != nil {
		return nil, nil, signer.StoreErr(err, what)
	}
	return rec, &v, nil
}

// putRootIndex is written before the root: a crash in between leaves an
// index entry pointing at nothing, which reads as "not found". crlDue is
// when the root's CRL is to be signed (signer.CRLDueAt, or
// signer.CRLDueNever).
func (s *Service) putRootIndex(ctx context.Context, tenant, id, crlDue string) error {
	data, _ := json.Marshal(map[string]string{"tenant": tenant})
	rec := &store.Record{Kind: kindRootIndex, Tenant: store.PlatformTenant, ID: id,
		Fields: map[string]string{"tenant": tenant, signer.CRLDueField: crlDue}, Data: data}
	return signer.StoreErr(s.core.Store().Create(ctx, rec, store.WriteOpts{}), "DTS root CA index")
}

func (s *Service) dropRootIndex(id string) {
	s.dropIndex(kindRootIndex, id, "DTS root index entry left behind")
}

// dropIndex deletes the platform index entry kind/id, logging msg when
// it cannot.
func (s *Service) dropIndex(kind, id, msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.core.Store().Delete(ctx, kind, store.PlatformTenant, id, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.core.Log().Warn(msg, "id", id, "err", err)
	}
}

// rootTenant resolves a root id to its tenant through the platform index
// (for the unauthenticated CRL route).
func (s *Service) rootTenant(ctx context.Context, id string) (string, error) {
	return s.indexTenant(ctx, kindRootIndex, id, "DTS root CA certificate", rootNotFound, nil)
}

// indexTenant resolves id to its tenant through its platform index entry
// of kind; match, when not nil, must accept the entry, else id is not
// found. what names the record in errors.
func (s *Service) indexTenant(ctx context.Context, kind, id, what string, notFound func(string) error, match func(*store.Record) bool) (string, error) {
	rec, err := s.core.Store().Get(ctx, kind, store.PlatformTenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", notFound(id)
		}
		return "", signer.StoreErr(err, what)
	}
	if match != nil && !match(rec) {
		return "", notFound(id)
	}
	t := rec.Fields["tenant"]
	if t == "" {
		return "", fmt.Errorf("%s %s without tenant", kind, id)
	}
	return t, nil
}

// dtsSigner is the stored form of a VICAL signer.
type dtsSigner struct {
	ID          string     `json:"id"`
	CAID        string     `json:"caId"`
	Active      bool       `json:"active"`
	CSRDER      []byte     `json:"csrDer"`
	CertDER     []byte     `json:"certDer,omitempty"`
	Fingerprint string     `json:"fingerprint,omitempty"`
	CommonName  string     `json:"commonName,omitempty"`
	Country     string     `json:"country,omitempty"`
	NotBefore   *time.Time `json:"notBefore,omitempty"`
	NotAfter    *time.Time `json:"notAfter,omitempty"`
	// IssuedHere marks a certificate this daemon signed with a managed
	// root: deleting the signer then revokes it on the root's CRL.
	IssuedHere   bool   `json:"issuedHere,omitempty"`
	KeyAlgorithm string `json:"keyAlgorithm"`
	CreatedBy    string `json:"createdBy,omitempty"`
	// IntermediateID is the intermediate CA certificate the signer is
	// under (3-tier model), empty when it is directly under CAID;
	// ChainDER is the chain above its certificate once it has one (the
	// intermediate's certificate, then the root's).
	IntermediateID string   `json:"intermediateCaId,omitempty"`
	ChainDER       [][]byte `json:"chainDer,omitempty"`
}

// VICALSigner is a signer as the API shows it; the certificate fields are
// empty until it has a certificate.
type VICALSigner struct {
	ID             string
	CAID           string
	Active         bool
	CSRPEM         string
	CertificatePEM string
	Fingerprint    string
	CommonName     string
	Country        string
	NotBefore      *time.Time
	NotAfter       *time.Time
	// IntermediateID and ChainPEM: see dtsSigner.
	IntermediateID string
	ChainPEM       string
}

func (s *dtsSigner) view() *VICALSigner {
	v := &VICALSigner{ID: s.ID, CAID: s.CAID, Active: s.Active, CSRPEM: encoding.EncodePEM("CERTIFICATE REQUEST", s.CSRDER),
		IntermediateID: s.IntermediateID}
	if s.CertDER != nil {
		v.CertificatePEM = encoding.EncodePEM("CERTIFICATE", s.CertDER)
		v.ChainPEM = chainPEM(s.ChainDER)
		v.Fingerprint, v.CommonName, v.Country = s.Fingerprint, s.CommonName, s.Country
		v.NotBefore, v.NotAfter = s.NotBefore, s.NotAfter
	}
	return v
}

func (s *dtsSigner) setCert(c *x509.Certificate) {
	nb, na := c.NotBefore.UTC(), c.NotAfter.UTC()
	s.CertDER, s.Fingerprint = c.Raw, encoding.Fingerprint(c.Raw)
	s.CommonName, s.Country = c.Subject.CommonName, issuance.NameOf(c.Subject).Country
	s.NotBefore, s.NotAfter = &nb, &na
}

func signerRecord(tenant string, s *dtsSigner, keyID string) (*store.Record, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return &store.Record{Kind: RecordSigner, Tenant: tenant, ID: s.ID, Data: data,
		Fields: map[string]string{signer.KeyField: keyID, signer.KeyAlgorithmField: s.KeyAlgorithm, "ca_id": s.CAID,
			"active": strconv.FormatBool(s.Active)}}, nil
}

func (s *Service) getSigner(ctx context.Context, tenant, id string) (*store.Record, *dtsSigner, error) {
	return getStored[dtsSigner](ctx, s, RecordSigner, tenant, id, "VICAL signer", func(id string) error {
		return signer.E(signer.KindNotFound, "VICAL signer %s not found", id)
	})
}
