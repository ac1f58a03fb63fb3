package pca

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// The family's stored records: their JSON forms (part of stored data: keep
// the tags), indexed fields and unique keys, and the reads and writes
// that issuance goes through (the issuer, the signature, the certificate
// record).

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
	// OCSP: the CA answers OCSP requests (UpdateOcspSwitch).
	OCSP bool `json:"ocsp,omitempty"`
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

// setCert records a freshly signed certificate in c.
func setCert(c *caRecord, der []byte, cert *x509.Certificate) {
	c.Cert = der
	c.Serial = encoding.SerialHex(cert.SerialNumber)
	c.NotBefore = cert.NotBefore.UnixMilli()
	c.NotAfter = cert.NotAfter.UnixMilli()
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

// certRecord is the stored form of a private certificate: what lists
// show (certSummary) and the certificate and key material they do not.
type certRecord struct {
	certSummary
	Cert []byte `json:"cert"`
	// WrappedKey is the PKCS#8 private key sealed by the HSM's AES key,
	// bound to tenant and certificate id; absent for CSR issuance.
	WrappedKey []byte `json:"wrapped_key,omitempty"`
}

// certSummary is the part of a stored certificate a list shows. A list
// decodes only this: decoding the certificate's DER (base64 in the JSON)
// was most of a list's CPU time.
type certSummary struct {
	Status             string            `json:"status"` // ISSUED or REVOKED; EXPIRED is derived
	Type               string            `json:"type"`
	IssuerID           string            `json:"issuer_id"`
	IssuerName         string            `json:"issuer_name"`
	KeyAlgorithm       string            `json:"key_algorithm"`
	SignatureAlgorithm string            `json:"signature_algorithm"`
	GenMode            string            `json:"gen_mode"` // GENERATE or CSR
	Serial             string            `json:"serial_number"`
	CreateTime         int64             `json:"create_time"`
	NotBefore          int64             `json:"not_before"`
	NotAfter           int64             `json:"not_after"`
	DN                 DistinguishedName `json:"distinguished_name"`
	SANs               []SAN             `json:"subject_alternative_names,omitempty"`
	KeyUsages          []string          `json:"key_usages,omitempty"`
	EKU                ExtendedKeyUsage  `json:"extended_key_usage"`
	PathLength         *int              `json:"path_length,omitempty"`
	RevokeReason       string            `json:"revoke_reason,omitempty"`
	RevokeTime         int64             `json:"revoke_time,omitempty"`
}

func (c *certSummary) effective(now time.Time) string {
	if c.Status == CertIssued && now.UnixMilli() >= c.NotAfter {
		return CertExpired
	}
	return c.Status
}

// certExpiryField is the stored status, "/" and not_after: the derived
// ISSUED/EXPIRED distinction is a range of it (see certStatusRange).
const certExpiryField = "expiry"

func certFields(c *certRecord) map[string]string {
	return map[string]string{
		"status": c.Status, "issuer_id": c.IssuerID, "common_name": c.DN.CommonName,
		"create_time": msField(c.CreateTime), "not_after": msField(c.NotAfter),
		certExpiryField: c.Status + "/" + msField(c.NotAfter),
	}
}

// certStatusRange is the range of the expiry field that holds the
// certificates shown with status at now: a certificate stored ISSUED is
// EXPIRED once now reaches its not_after.
func certStatusRange(status string, now time.Time) []store.Filter {
	lo, hi := status+"/", status+"0" // '0' follows '/'
	switch status {
	case CertIssued:
		lo = CertIssued + "/" + msField(now.UnixMilli()+1)
	case CertExpired:
		lo, hi = CertIssued+"/", CertIssued+"/"+msField(now.UnixMilli()+1)
	}
	return []store.Filter{{Field: certExpiryField, Value: lo, Match: store.AtLeast},
		{Field: certExpiryField, Value: hi, Match: store.Less}}
}

// certStoreRecord completes cr with the certificate der that
// issuance.SignCertificate made from tmpl and returns the store record of
// a new private certificate: the one place that decides its stored form,
// shared by issuance and by the seeding of benchmark stores. The serial
// number, validity and subject are read from tmpl as x509.CreateCertificate
// encoded them (times in whole seconds, the subject as given), which spares
// parsing der again.
func certStoreRecord(tenant, id string, is *issuer, cr *certRecord, tmpl *x509.Certificate, der []byte, hash string, now time.Time) (*store.Record, error) {
	cr.Status, cr.Cert, cr.Serial = CertIssued, der, encoding.SerialHex(tmpl.SerialNumber)
	cr.IssuerID, cr.IssuerName, cr.SignatureAlgorithm = is.rec.ID, is.ca.DN.CommonName, hash
	cr.CreateTime = now.UnixMilli()
	cr.NotBefore = tmpl.NotBefore.Truncate(time.Second).UnixMilli()
	cr.NotAfter = tmpl.NotAfter.Truncate(time.Second).UnixMilli()
	if cr.DN.CommonName == "" {
		subject := tmpl.Subject
		if len(tmpl.RawSubject) > 0 {
			var rdn pkix.RDNSequence
			if rest, err := asn1.Unmarshal(tmpl.RawSubject, &rdn); err != nil || len(rest) > 0 {
				return nil, fmt.Errorf("certificate subject: %v", err)
			}
			subject = pkix.Name{}
			subject.FillFromRDNSequence(&rdn)
		}
		cr.DN = issuance.NameOf(subject)
	}
	data, err := json.Marshal(cr)
	if err != nil {
		return nil, err
	}
	return &store.Record{Kind: RecordCertificate, Tenant: tenant, ID: id,
		Unique: []string{serialKey(is.rec.ID, cr.Serial)}, Fields: certFields(cr), Data: data}, nil
}

// getRecord reads and decodes one record of the family by its UUID; a
// malformed, unknown or foreign id answers the family's not-found alike.
func getRecord[T any](ctx context.Context, s *Service, kind, what, tenant, id string) (*store.Record, *T, error) {
	return getRecordVia(ctx, s, kind, what, tenant, id, func(b []byte) (T, error) {
		var v T
		err := json.Unmarshal(b, &v)
		return v, err
	})
}

// newCertID is a new certificate's ID: a UUID of version 7, whose first
// 48 bits are the time in milliseconds, so that the certificates issued
// one after the other sit side by side in the stores' ID-ordered trees
// (bolt writes a group of new certificates into a few adjacent pages rather
// than one random page each; docs/BENCHMARKS.md, eighth round). The rest
// is random, and IDs stay opaque to clients: a UUID like any other.
func newCertID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// getRecordVia is getRecord with the decoding step given (a BytesCache's
// for read-only uses on hot paths).
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

func (s *Service) getCA(ctx context.Context, tenant, id string) (*store.Record, *caRecord, error) {
	return getRecord[caRecord](ctx, s, RecordCA, "CA", tenant, id)
}

func (s *Service) getCert(ctx context.Context, tenant, id string) (*store.Record, *certRecord, error) {
	return getRecord[certRecord](ctx, s, RecordCertificate, "certificate", tenant, id)
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
	// BytesCache), which spares every issuance a JSON decode of its CA.
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

// sign signs tmpl (serial number, key identifier and the issuer's URLs
// added) with the issuer's HSM key, timed under op. Every certificate a
// CA of the family signs goes through here; roots sign themselves
// elsewhere and name no issuer URLs.
func (s *Service) sign(ctx context.Context, is *issuer, tmpl *x509.Certificate, pub crypto.PublicKey, hash, op string) ([]byte, error) {
	key, err := s.core.TimedSigner(ctx, is.rec.Fields[signer.KeyField], is.ca.KeyAlgorithm, op)
	if err != nil {
		return nil, err
	}
	issuance.AddIssuerURLs(tmpl, s.issuerURLs(is))
	tmpl.SignatureAlgorithm = issuance.SignatureAlgorithm(is.ca.KeyAlgorithm, hash)
	der, err := issuance.SignCertificate(tmpl, is.cert, pub, key, issuance.KeyIDSHA1)
	if err != nil {
		return nil, signer.HSMError(err, "CA key")
	}
	return der, nil
}

// certQuotaFree fails fast when the tenant's certificate quota is used
// up; the store reserves the unit atomically at commit. A failure to read
// the use is no refusal: the commit decides.
func (s *Service) certQuotaFree(ctx context.Context, tenant string) error {
	return certQuotaCheck(s.core.QuotaFree(ctx, tenant, QuotaCertificates))
}

// certQuotaFreeIfFull is certQuotaFree for an issuance whose only work
// before the commit is one signature: the use is read only while the
// quota was recently found full (signer.Core.QuotaFreeIfFull).
func (s *Service) certQuotaFreeIfFull(ctx context.Context, tenant string) error {
	return certQuotaCheck(s.core.QuotaFreeIfFull(ctx, tenant, QuotaCertificates))
}

func certQuotaCheck(limit int64, err error) error {
	if signer.KindOf(err) == signer.KindQuotaExceeded {
		return certQuotaErr(limit, nil)
	}
	return nil
}

// errIssuerChanged: the issuer's record changed between its read and the
// certificate's create (putCert's guard); nothing was stored.
var errIssuerChanged = errors.New("the issuing CA changed during the issuance")

func certQuotaErr(limit int64, cause error) error {
	return &signer.Error{Kind: signer.KindQuotaExceeded, Reason: ReasonCertQuota,
		Msg: fmt.Sprintf("the tenant has reached its quota of %d certificates", limit), Err: cause}
}

// putCert signs tmpl and stores the certificate with its quota unit and
// its serial number, unique under the issuer. A serial collision (2^-159
// per pair) is met by signing again with a fresh serial.
//
// guard, when set, must hold for the certificate to be stored: when it
// does not (the issuer's record changed since it was read), nothing is
// stored and errIssuerChanged is returned.
func (s *Service) putCert(ctx context.Context, op *signer.Op, tenant, id string, is *issuer, tmpl *x509.Certificate, pub crypto.PublicKey, hash string, cr *certRecord, guard *store.Guard) error {
	limit := s.core.QuotaLimit(QuotaCertificates)
	for attempt := 0; ; attempt++ {
		der, err := s.sign(ctx, is, tmpl, pub, hash, "pca_certificate")
		if err != nil {
			return err
		}
		rec, err := certStoreRecord(tenant, id, is, cr, tmpl, der, hash, s.now())
		if err != nil {
			return err
		}
		opts := store.WriteOpts{Quota: &store.Quota{Resource: QuotaCertificates, Limit: limit}, Guard: guard}
		if op != nil {
			// The last step of op: its SUCCESS record may go with it.
			opts = op.WithEvent(id, rec, opts)
		}
		err = s.store.Create(ctx, rec, opts)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrQuotaExceeded):
			s.core.NoteQuotaFull(tenant, QuotaCertificates)
			return certQuotaErr(limit, err)
		case guard != nil && errors.Is(err, store.ErrVersionConflict):
			return errIssuerChanged
		case errors.Is(err, store.ErrExists) && attempt < 3:
			continue
		}
		return signer.StoreErr(err, "certificate")
	}
}
