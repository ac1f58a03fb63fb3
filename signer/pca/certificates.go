package pca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/store"
)

// Certificate types of issuance from a CSR.
const (
	CertTypeEntity       = "ENTITY_CERT"
	CertTypeIntermediate = "INTERMEDIATE_CA"
)

const (
	maxSANs = 20
	// Leaf keys that the daemon generates must be exportable, so they are
	// software keys kept only sealed by this AES key of the HSM.
	leafWrapKeyID    = "hsmca-pca-leaf-key-wrap"
	leafWrapKeyLabel = "hsmca/pca/leaf-key-wrap"
)

// SAN is one subject alternative name as the family sends it.
type SAN struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// ExtendedKeyUsage is the family's set of extended key usages.
type ExtendedKeyUsage struct {
	ServerAuth      bool `json:"server_auth"`
	ClientAuth      bool `json:"client_auth"`
	CodeSigning     bool `json:"code_signing"`
	EmailProtection bool `json:"email_protection"`
	TimeStamping    bool `json:"time_stamping"`
}

func (u ExtendedKeyUsage) list() []x509.ExtKeyUsage {
	var out []x509.ExtKeyUsage
	for _, p := range []struct {
		on  bool
		eku x509.ExtKeyUsage
	}{
		{u.ServerAuth, x509.ExtKeyUsageServerAuth}, {u.ClientAuth, x509.ExtKeyUsageClientAuth},
		{u.CodeSigning, x509.ExtKeyUsageCodeSigning}, {u.EmailProtection, x509.ExtKeyUsageEmailProtection},
		{u.TimeStamping, x509.ExtKeyUsageTimeStamping},
	} {
		if p.on {
			out = append(out, p.eku)
		}
	}
	return out
}

func ekuOf(list []x509.ExtKeyUsage) ExtendedKeyUsage {
	var u ExtendedKeyUsage
	for _, k := range list {
		switch k {
		case x509.ExtKeyUsageServerAuth:
			u.ServerAuth = true
		case x509.ExtKeyUsageClientAuth:
			u.ClientAuth = true
		case x509.ExtKeyUsageCodeSigning:
			u.CodeSigning = true
		case x509.ExtKeyUsageEmailProtection:
			u.EmailProtection = true
		case x509.ExtKeyUsageTimeStamping:
			u.TimeStamping = true
		}
	}
	return u
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

func (s *Service) getCert(ctx context.Context, tenant, id string) (*store.Record, *certRecord, error) {
	return getRecord[certRecord](ctx, s, RecordCertificate, "certificate", tenant, id)
}

func sansOf(c *x509.Certificate) []SAN {
	var out []SAN
	for _, v := range c.DNSNames {
		out = append(out, SAN{"DNS", v})
	}
	for _, v := range c.IPAddresses {
		out = append(out, SAN{"IP", v.String()})
	}
	for _, v := range c.EmailAddresses {
		out = append(out, SAN{"EMAIL", v})
	}
	for _, v := range c.URIs {
		out = append(out, SAN{"URI", v.String()})
	}
	return out
}

// publicKeyAlgorithm names a key in the family's vocabulary (EC256,
// RSA2048, ...), refusing keys hsmca will not certify: RSA below 2048 or
// above 8192 bits and curves other than P-256, P-384 and P-521.
func publicKeyAlgorithm(pub crypto.PublicKey) (string, int, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < 2048 || bits > 8192 {
			return "", 0, fmt.Errorf("RSA keys must have 2048 to 8192 bits, not %d", bits)
		}
		return fmt.Sprintf("RSA%d", bits), bits, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "EC256", 256, nil
		case elliptic.P384():
			return "EC384", 384, nil
		case elliptic.P521():
			return "EC521", 521, nil
		}
		return "", 0, errors.New("unsupported elliptic curve")
	case ed25519.PublicKey:
		return "ED25519", 256, nil
	}
	return "", 0, errors.New("unsupported public key type")
}

// parseCSR reads a PEM (or base64 DER) CSR, checks its signature and its
// key.
func parseCSR(s string) (*x509.CertificateRequest, string, int, error) {
	bad := func(msg string) error { return refused(ReasonBadCSR, "csr", nil, msg) }
	s = strings.ReplaceAll(strings.TrimSpace(s), `\n`, "\n")
	if s == "" {
		return nil, "", 0, bad("is required")
	}
	var der []byte
	if b, _ := pem.Decode([]byte(s)); b != nil {
		if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
			return nil, "", 0, bad("the PEM block is a " + b.Type + ", not a CERTIFICATE REQUEST")
		}
		der = b.Bytes
	} else if d, err := base64.StdEncoding.DecodeString(s); err == nil {
		der = d
	} else {
		return nil, "", 0, bad("is neither PEM nor base64 DER")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, "", 0, bad("cannot be parsed: " + err.Error())
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", 0, bad("its signature does not verify")
	}
	alg, bits, err := publicKeyAlgorithm(csr.PublicKey)
	if err != nil {
		return nil, "", 0, refused(ReasonBadKeyAlg, "csr", nil, err.Error())
	}
	return csr, alg, bits, nil
}

// CSRInfo is what parsing a CSR reports.
type CSRInfo struct {
	KeyAlgorithm       string
	KeyLength          int
	SignatureAlgorithm string
	PublicKeyPEM       string
	DN                 DistinguishedName
}

// ParseCSR reads a CSR for the caller, with the same checks of the CSR and
// its subject as issuance.
func (s *Service) ParseCSR(ctx context.Context, tenant, csrPEM string) (*CSRInfo, error) {
	var out *CSRInfo
	err := s.run(ctx, tenant, "PCA_CSR_PARSE", func() (string, error) {
		csr, alg, bits, err := parseCSR(csrPEM)
		if err != nil {
			return "", err
		}
		spki, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
		if err != nil {
			return "", err
		}
		family := strings.TrimRight(alg, "0123456789")
		subj, err := checkCSRSubject(csr.RawSubject)
		if err != nil {
			return "", err
		}
		if err := checkCommonName(csrDNField+".common_name", subj.dn.CommonName); err != nil {
			return "", err
		}
		out = &CSRInfo{KeyAlgorithm: family, KeyLength: bits, SignatureAlgorithm: hashOf(csr.SignatureAlgorithm),
			PublicKeyPEM: encoding.EncodePEM("PUBLIC KEY", spki), DN: subj.dn}
		if family == "ED" || alg == "ED25519" {
			out.KeyAlgorithm, out.SignatureAlgorithm = "ED25519", "ED25519"
		}
		return "", nil
	})
	return out, err
}

// CertIssue is the body of an issuance with a daemon-generated key.
type CertIssue struct {
	IssuerID           string
	KeyAlgorithm       string
	SignatureAlgorithm string
	DN                 *DistinguishedName
	Validity           *Validity
	SANs               []SAN
	KeyUsages          []string
	EKU                *ExtendedKeyUsage
}

// leafKey generates a leaf key in software; an RSA key takes its turn in
// the core's heavy-work pool first.
func (s *Service) leafKey(ctx context.Context, tenant string, alg hsm.Algorithm) (crypto.Signer, error) {
	if !strings.HasPrefix(string(alg), "RSA") {
		return issuance.GenerateLeafKey(alg)
	}
	release, err := s.core.Heavy(ctx, tenant, signer.HeavySoftwareRSAKey)
	if err != nil {
		return nil, err
	}
	defer release()
	return issuance.GenerateLeafKey(alg)
}

// leafKeyAAD binds a sealed key to its tenant and certificate, so a blob
// copied to another record does not open.
func leafKeyAAD(tenant, id string) []byte { return []byte("hsmca/pca-leaf-key/" + tenant + "/" + id) }

// IssueCertificate issues a certificate for a key the daemon generates.
func (s *Service) IssueCertificate(ctx context.Context, tenant string, in CertIssue) (string, error) {
	id := uuid.NewString()
	err := s.run(ctx, tenant, "PCA_CERTIFICATE_ISSUE", func() (string, error) {
		if in.DN == nil {
			return "", refused(ReasonBadDN, "distinguished_name", nil, "is required")
		}
		if err := in.DN.check(false); err != nil {
			return "", err
		}
		algName := in.KeyAlgorithm
		if algName == "" {
			algName = string(hsm.EC256)
		}
		alg, err := parseKeyAlgorithm("key_algorithm", algName)
		if err != nil {
			return "", err
		}
		hash, err := checkSigAlg("signature_algorithm", in.SignatureAlgorithm, false)
		if err != nil {
			return "", err
		}
		ku, err := parseKeyUsages(in.KeyUsages)
		if err != nil {
			return "", err
		}
		if len(in.KeyUsages) == 0 {
			ku = x509.KeyUsageDigitalSignature
			if strings.HasPrefix(string(alg), "RSA") {
				ku |= x509.KeyUsageKeyEncipherment
			}
		}
		if ku&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
			return "", refused(ReasonBadParameter, "key_usages", keyUsageList(ku), "keyCertSign and cRLSign are for CA certificates")
		}
		eku := ExtendedKeyUsage{ServerAuth: true, ClientAuth: true}
		if in.EKU != nil {
			eku = *in.EKU
		}
		tmpl := &x509.Certificate{Subject: in.DN.pkixName(), BasicConstraintsValid: true,
			KeyUsage: ku, ExtKeyUsage: eku.list()}
		if err := checkSANs("subject_alternative_names", in.SANs, tmpl); err != nil {
			return "", err
		}
		if err := checkCommonName("distinguished_name.common_name", in.DN.CommonName); err != nil {
			return "", err
		}
		is, err := s.loadIssuer(ctx, tenant, in.IssuerID)
		if err != nil {
			return "", err
		}
		names := namesOf("subject_alternative_names", in.SANs, "distinguished_name", in.DN.CommonName, nil)
		if err := s.checkNameConstraints(ctx, tenant, is, names, subjectOf(tmpl), "distinguished_name"); err != nil {
			return "", err
		}
		nb, na, err := in.Validity.window(s.now(), maxChildValidity)
		if err != nil {
			return "", err
		}
		if err := withinIssuer(nb, na, is.cert); err != nil {
			return "", err
		}
		tmpl.NotBefore, tmpl.NotAfter = nb, na
		if err := s.certQuotaFree(ctx, tenant); err != nil {
			return "", err
		}
		key, err := s.leafKey(ctx, tenant, alg)
		if err != nil {
			return "", err
		}
		pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return "", err
		}
		wrapped, err := s.core.Seal(ctx, leafWrapKeyID, leafWrapKeyLabel, pkcs8, leafKeyAAD(tenant, id))
		clear(pkcs8)
		if err != nil {
			return "", err
		}
		cr := &certRecord{certSummary: certSummary{Type: CertTypeEntity, KeyAlgorithm: string(alg),
			GenMode: GenModeGenerate, DN: *in.DN, SANs: in.SANs, KeyUsages: keyUsageList(ku), EKU: eku},
			WrappedKey: wrapped}
		return id, s.commitCert(ctx, tenant, id, is, tmpl, key.Public(), hash, cr)
	})
	return id, err
}

func (s *Service) certQuotaFree(ctx context.Context, tenant string) error {
	limit := s.core.QuotaLimit(QuotaCertificates)
	if used, err := s.store.QuotaUsage(ctx, tenant, QuotaCertificates); err == nil && limit >= 0 && used >= limit {
		return &signer.Error{Kind: signer.KindQuotaExceeded, Reason: ReasonCertQuota,
			Msg: fmt.Sprintf("the tenant has reached its quota of %d certificates", limit)}
	}
	return nil
}

// commitCert signs tmpl and stores the certificate with its quota unit
// and its serial number, unique under the issuer. A serial collision
// (2^-159 per pair) is met by signing again with a fresh serial.
func (s *Service) commitCert(ctx context.Context, tenant, id string, is *issuer, tmpl *x509.Certificate, pub crypto.PublicKey, hash string, cr *certRecord) error {
	limit := s.core.QuotaLimit(QuotaCertificates)
	for attempt := 0; ; attempt++ {
		der, err := s.sign(ctx, is, tmpl, pub, hash, "pca_certificate")
		if err != nil {
			return err
		}
		rec, err := certStoreRecord(tenant, id, is, cr, der, hash, s.now())
		if err != nil {
			return err
		}
		err = s.store.Create(ctx, rec, store.WriteOpts{Quota: &store.Quota{Resource: QuotaCertificates, Limit: limit}})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrQuotaExceeded):
			return &signer.Error{Kind: signer.KindQuotaExceeded, Reason: ReasonCertQuota,
				Msg: fmt.Sprintf("the tenant has reached its quota of %d certificates", limit), Err: err}
		case errors.Is(err, store.ErrExists) && attempt < 3:
			continue
		}
		return signer.StoreErr(err, "certificate")
	}
}

// certStoreRecord completes cr with the signed certificate der and
// returns the store record of a new private certificate: the one place
// that decides its stored form, shared by issuance and by the seeding of
// benchmark stores.
func certStoreRecord(tenant, id string, is *issuer, cr *certRecord, der []byte, hash string, now time.Time) (*store.Record, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	cr.Status, cr.Cert, cr.Serial = CertIssued, der, cert.SerialNumber.Text(16)
	cr.IssuerID, cr.IssuerName, cr.SignatureAlgorithm = is.rec.ID, is.ca.DN.CommonName, hash
	cr.CreateTime = now.UnixMilli()
	cr.NotBefore, cr.NotAfter = cert.NotBefore.UnixMilli(), cert.NotAfter.UnixMilli()
	if cr.DN.CommonName == "" {
		cr.DN = dnFromPKIX(cert.Subject)
	}
	data, err := json.Marshal(cr)
	if err != nil {
		return nil, err
	}
	return &store.Record{Kind: RecordCertificate, Tenant: tenant, ID: id,
		Unique: []string{serialKey(is.rec.ID, cr.Serial)}, Fields: certFields(cr), Data: data}, nil
}

// CertFromCSR is the body of an issuance from a CSR.
type CertFromCSR struct {
	IssuerID           string
	CSR                string
	Validity           *Validity
	Type               string
	PathLength         *int
	SignatureAlgorithm string
	SANs               []SAN
	KeyUsages          []string
	EKU                *ExtendedKeyUsage
}

// IssueFromCSR certifies the key of a CSR whose signature verifies: an
// end entity, or (INTERMEDIATE_CA) a subordinate CA held outside hsmca,
// within the issuer's path length.
func (s *Service) IssueFromCSR(ctx context.Context, tenant string, in CertFromCSR) (string, error) {
	id := uuid.NewString()
	err := s.run(ctx, tenant, "PCA_CERTIFICATE_ISSUE_CSR", func() (string, error) {
		p, err := s.prepareFromCSR(ctx, tenant, in)
		if err != nil {
			return "", err
		}
		if err := s.certQuotaFree(ctx, tenant); err != nil {
			return "", err
		}
		return id, s.commitCert(ctx, tenant, id, p.is, p.tmpl, p.pub, p.hash, p.cr)
	})
	return id, err
}

// csrIssue is an issuance from a CSR checked and ready to sign.
type csrIssue struct {
	is   *issuer
	tmpl *x509.Certificate
	pub  crypto.PublicKey
	hash string
	cr   *certRecord
}

// prepareFromCSR checks an issuance from a CSR and builds its template
// and record, everything short of the quota check and the signature.
func (s *Service) prepareFromCSR(ctx context.Context, tenant string, in CertFromCSR) (*csrIssue, error) {
	typ := in.Type
	if typ == "" {
		typ = CertTypeEntity
	}
	if typ != CertTypeEntity && typ != CertTypeIntermediate {
		return nil, refused(ReasonBadParameter, "type", in.Type, "must be ENTITY_CERT or INTERMEDIATE_CA")
	}
	csr, alg, _, err := parseCSR(in.CSR)
	if err != nil {
		return nil, err
	}
	hash, err := checkSigAlg("signature_algorithm", in.SignatureAlgorithm, false)
	if err != nil {
		return nil, err
	}
	is, err := s.loadIssuer(ctx, tenant, in.IssuerID)
	if err != nil {
		return nil, err
	}
	nb, na, err := in.Validity.window(s.now(), maxChildValidity)
	if err != nil {
		return nil, err
	}
	if err := withinIssuer(nb, na, is.cert); err != nil {
		return nil, err
	}
	ku, err := parseKeyUsages(in.KeyUsages)
	if err != nil {
		return nil, err
	}
	subj, err := checkCSRSubject(csr.RawSubject)
	if err != nil {
		return nil, err
	}
	cr := &certRecord{certSummary: certSummary{Type: typ, KeyAlgorithm: alg, GenMode: "CSR", DN: subj.dn}}
	var tmpl *x509.Certificate
	if typ == CertTypeIntermediate {
		pathLen := 0
		if in.PathLength != nil {
			pathLen = *in.PathLength
		}
		if err := checkPathLength("path_length", pathLen, is.ca.PathLength); err != nil {
			return nil, err
		}
		if subj.empty {
			return nil, refused(ReasonBadDN, csrDNField, nil, "is empty; a CA certificate needs a subject")
		}
		tmpl = caTemplate(cr.DN, nb, na, pathLen, ku|x509.KeyUsageDigitalSignature)
		cr.PathLength = &pathLen
	} else {
		if len(in.KeyUsages) == 0 {
			ku = x509.KeyUsageDigitalSignature
			if strings.HasPrefix(alg, "RSA") {
				ku |= x509.KeyUsageKeyEncipherment
			}
		}
		if ku&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
			return nil, refused(ReasonBadParameter, "key_usages", in.KeyUsages, "keyCertSign and cRLSign are for CA certificates; use type INTERMEDIATE_CA")
		}
		eku := ExtendedKeyUsage{ServerAuth: true, ClientAuth: true}
		if in.EKU != nil {
			eku = *in.EKU
		}
		tmpl = &x509.Certificate{BasicConstraintsValid: true, KeyUsage: ku, ExtKeyUsage: eku.list(),
			NotBefore: nb, NotAfter: na}
		cr.EKU = eku
	}
	// The subject is the one checkCSRSubject built from the CSR's checked
	// attributes, never the CSR's own bytes.
	tmpl.RawSubject = subj.raw
	sans, sanField := in.SANs, "subject_alternative_names"
	if len(sans) == 0 {
		sans, sanField = sansOf(&x509.Certificate{DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses,
			EmailAddresses: csr.EmailAddresses, URIs: csr.URIs}), "csr.subject_alternative_names"
	}
	if err := checkSANs(sanField, sans, tmpl); err != nil {
		return nil, err
	}
	if subj.empty && len(sans) == 0 {
		return nil, refused(ReasonBadDN, csrDNField, nil,
			"is empty and no subject alternative name is given; a certificate needs a subject or a subject alternative name")
	}
	if err := checkCommonName(csrDNField+".common_name", subj.dn.CommonName); err != nil {
		return nil, err
	}
	names := namesOf(sanField, sans, csrDNField, subj.dn.CommonName, subj.emails)
	if err := s.checkNameConstraints(ctx, tenant, is, names, subjectOf(tmpl), csrDNField); err != nil {
		return nil, err
	}
	cr.SANs = sans
	cr.KeyUsages = keyUsageList(tmpl.KeyUsage)
	return &csrIssue{is: is, tmpl: tmpl, pub: csr.PublicKey, hash: hash, cr: cr}, nil
}

// GetCertificate shows one private certificate.
func (s *Service) GetCertificate(ctx context.Context, tenant, id string) (*Certificate, error) {
	var out *Certificate
	err := s.run(ctx, tenant, "PCA_CERTIFICATE_RETRIEVE", func() (string, error) {
		// The answer shows no certificate bytes: decode only what it shows.
		_, c, err := getRecord[certSummary](ctx, s, RecordCertificate, "certificate", tenant, id)
		if err != nil {
			return id, err
		}
		out = toCertAt(id, c, s.now())
		return id, nil
	})
	return out, err
}

// CertQuery selects private certificates to list.
type CertQuery struct {
	Name, Status     string
	SortKey, SortDir string
	Limit, Offset    int
}

// ListCertificates lists the tenant's private certificates. The store
// sorts and pages from its indexes (see StoreIndexes): the derived
// ISSUED and EXPIRED states are ranges of the expiry field, and creation
// time is creation order.
func (s *Service) ListCertificates(ctx context.Context, tenant string, q CertQuery) ([]*Certificate, int, error) {
	var (
		out   []*Certificate
		total int
	)
	err := s.run(ctx, tenant, "PCA_CERTIFICATE_RETRIEVE_LIST", func() (string, error) {
		sq := store.Query{Kind: RecordCertificate, Tenant: tenant, Offset: q.Offset, Limit: q.Limit, OffsetPaging: true}
		switch q.SortKey {
		case "", "create_time":
			// Creation time is creation order (the store's sequence, which
			// also breaks create_time ties), which the indexes keep within
			// one value. Only issuances committed within the same moment
			// can differ in order, by the time their store writes took.
			sq.SortBy = ""
		case "common_name", "not_after":
			sq.SortBy = q.SortKey
		default:
			return "", refused(ReasonBadParameter, "sort_key", q.SortKey, "must be create_time, common_name or not_after")
		}
		switch q.SortDir {
		case "", "DESC":
			sq.Desc = true
		case "ASC":
		default:
			return "", refused(ReasonBadParameter, "sort_dir", q.SortDir, "must be ASC or DESC")
		}
		switch q.Status {
		case "", CertRevoked, CertIssued, CertExpired:
		default:
			return "", refused(ReasonBadParameter, "status", q.Status, "must be ISSUED, EXPIRED or REVOKED")
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
			// Most stored ISSUED certificates are usually valid: walking
			// them in creation order fills a page after a few reads.
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
			return "", signer.StoreErr(err, "certificate")
		}
		total = page.Total
		if countValid {
			if total, err = s.countValidCerts(ctx, tenant, now); err != nil {
				return "", signer.StoreErr(err, "certificate")
			}
		}
		out = make([]*Certificate, 0, len(page.Records))
		if q.Limit == 0 {
			return "", nil
		}
		for i := range page.Records {
			var c certSummary
			if err := json.Unmarshal(page.Records[i].Data, &c); err != nil {
				return "", signer.StoreErr(err, "certificate")
			}
			out = append(out, toCertAt(page.Records[i].ID, &c, now))
		}
		return "", nil
	})
	return out, total, err
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
	var out *Exported
	err := s.run(ctx, tenant, "PCA_CERTIFICATE_EXPORT", func() (string, error) {
		switch strings.ToUpper(in.Type) {
		case "", "OTHER", "NGINX", "APACHE":
		case "IIS", "TOMCAT":
			return id, &signer.Error{Kind: signer.KindInvalid, Reason: ReasonExportRefused, Msg: in.Type + " export (PFX/JKS) is not offered; use OTHER, NGINX or APACHE (PEM)"}
		default:
			return id, refused(ReasonBadParameter, "type", in.Type, "must be OTHER, NGINX, APACHE, IIS or TOMCAT")
		}
		switch strings.ToLower(in.Compressed) {
		case "", "false":
		case "true":
			return id, &signer.Error{Kind: signer.KindInvalid, Reason: ReasonExportRefused, Msg: "compressed (zip) export is not offered"}
		default:
			return id, refused(ReasonBadParameter, "is_compressed", in.Compressed, "must be \"true\" or \"false\"")
		}
		if in.Password != "" && (utf8.RuneCountInString(in.Password) < 6 || len(in.Password) > 64 || issuance.HasControl(in.Password)) {
			return id, refused(ReasonBadParameter, "password", nil, "must be 6 to 64 printable characters")
		}
		_, c, err := s.getCert(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		if _, err := CertTransition(CertOpExport, c.effective(s.now())); err != nil {
			return id, err
		}
		out = &Exported{Certificate: encoding.EncodePEM("CERTIFICATE", c.Cert)}
		if _, ic, err := s.getCA(ctx, tenant, c.IssuerID); err == nil {
			above, err := s.chainAbove(ctx, tenant, ic)
			if err != nil {
				return id, err
			}
			out.Chain = encoding.EncodePEM("CERTIFICATE", ic.Cert) + above
		}
		if strings.EqualFold(in.Type, "NGINX") {
			out.Certificate += out.Chain
		}
		if len(c.WrappedKey) == 0 {
			return id, nil
		}
		pkcs8, err := s.core.Unseal(ctx, leafWrapKeyID, c.WrappedKey, leafKeyAAD(tenant, id))
		if err != nil {
			return id, err
		}
		defer clear(pkcs8)
		if in.Password == "" {
			out.PrivateKey = encoding.EncodePEM("PRIVATE KEY", pkcs8)
			return id, nil
		}
		release, err := s.core.Heavy(ctx, tenant, signer.HeavyExportPassword)
		if err != nil {
			return id, err
		}
		enc, err := encoding.EncryptPKCS8(pkcs8, in.Password)
		release()
		if err != nil {
			return id, err
		}
		out.PrivateKey = string(enc)
		return id, nil
	})
	return out, err
}

// RevokeCertificate revokes a private certificate and regenerates its
// issuer's CRL.
func (s *Service) RevokeCertificate(ctx context.Context, tenant, id, reason string) error {
	return s.run(ctx, tenant, "PCA_CERTIFICATE_REVOKE", func() (string, error) {
		code, err := parseReason(reason)
		if err != nil {
			return id, err
		}
		_, c, err := s.getCert(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		if _, err := CertTransition(CertOpRevoke, c.effective(s.now())); err != nil {
			return id, err
		}
		now := s.now()
		if err := s.addRevocation(ctx, tenant, c.IssuerID, c.Serial, id, now, code, c.NotAfter); err != nil {
			return id, err
		}
		for attempt := 0; ; attempt++ {
			rec, c, err := s.getCert(ctx, tenant, id)
			if err != nil {
				return id, err
			}
			to, err := CertTransition(CertOpRevoke, c.effective(s.now()))
			if err != nil {
				return id, err
			}
			c.Status, c.RevokeReason, c.RevokeTime = to, reasonName(code), now.UnixMilli()
			if rec.Data, err = json.Marshal(c); err != nil {
				return id, err
			}
			rec.Fields = certFields(c)
			err = s.store.Update(ctx, rec, store.WriteOpts{})
			if err == nil {
				break
			}
			if !errors.Is(err, store.ErrVersionConflict) || attempt >= 20 {
				return id, signer.StoreErr(err, "certificate")
			}
			signer.Backoff(attempt)
		}
		return id, s.crlChanged(ctx, tenant, c.IssuerID)
	})
}

// DeleteCertificate deletes a private certificate record and gives back
// its quota unit. A certificate still ISSUED (unexpired and never
// revoked) is revoked first, with reason CESSATION_OF_OPERATION, and its
// issuer's CRL re-signed: deleting the record must not leave a valid
// certificate that nobody can revoke any more. A revoked certificate
// stays on its issuer's CRL; an expired one is simply deleted.
func (s *Service) DeleteCertificate(ctx context.Context, tenant, id string) error {
	return s.run(ctx, tenant, "PCA_CERTIFICATE_DELETE", func() (string, error) {
		_, c, err := s.getCert(ctx, tenant, id)
		if err != nil {
			return id, err
		}
		now := s.now()
		status := c.effective(now)
		if _, err := CertTransition(CertOpDelete, status); err != nil {
			return id, err
		}
		revoke := status == CertIssued
		if revoke {
			// The entry goes first: from then on every CRL of the issuer
			// lists the certificate, whatever happens next.
			if err := s.addRevocation(ctx, tenant, c.IssuerID, c.Serial, id, now, reasonDeleted, c.NotAfter); err != nil {
				return id, err
			}
		}
		err = s.store.Delete(ctx, RecordCertificate, tenant, id, store.WriteOpts{
			Quota: &store.Quota{Resource: QuotaCertificates, Limit: s.core.QuotaLimit(QuotaCertificates)}})
		if errors.Is(err, store.ErrNotFound) {
			return id, notFound("certificate", id)
		}
		if err != nil {
			return id, signer.StoreErr(err, "certificate")
		}
		if revoke {
			// The deletion has happened; a CRL that could not be signed
			// now stays marked and the background refresher signs it.
			if err := s.crlChanged(ctx, tenant, c.IssuerID); err != nil {
				s.core.Log().Warn("CRL not re-signed after a certificate deletion; the refresher retries",
					"issuer", c.IssuerID, "err", err)
			}
		}
		return id, nil
	})
}

// reasonDeleted is the revocation reason of a certificate deleted while
// still valid (RFC 5280 cessationOfOperation).
const reasonDeleted = 5

// parseCerts reads a PEM bundle of certificates.
func parseCerts(field, s string) ([]*x509.Certificate, error) {
	rest := []byte(strings.ReplaceAll(s, `\n`, "\n"))
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, refused(ReasonBadCert, field, nil, "a certificate cannot be parsed: "+err.Error())
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, refused(ReasonBadCert, field, nil, "no PEM certificate found")
	}
	return out, nil
}

func parseOneCert(field, s string) (*x509.Certificate, error) {
	certs, err := parseCerts(field, s)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, refused(ReasonBadCert, field, nil, "want exactly one certificate; put the issuers in certificate_chain")
	}
	return certs[0], nil
}
