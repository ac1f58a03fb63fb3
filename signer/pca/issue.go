package pca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"strings"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// Issuance of private certificates: for a key made here (whose private key
// the client exports later) and from a CSR. Each checks the request with
// the issuance rules, reads the issuer and the tenant's quota, then signs
// and stores through records.go.

const (
	// Leaf keys that the daemon generates must be exportable, so they are
	// software keys kept only sealed by this AES key of the HSM.
	leafWrapKeyID    = "hsmca-pca-leaf-key-wrap"
	leafWrapKeyLabel = "hsmca/pca/leaf-key-wrap"
	// csrDNField names the subject of a CSR in refusals.
	csrDNField = "csr.distinguished_name"
)

// leafKeyAAD binds a sealed key to its tenant and certificate, so a blob
// copied to another record does not open.
func leafKeyAAD(tenant, id string) []byte { return []byte("hsmca/pca-leaf-key/" + tenant + "/" + id) }

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

// IssueCertificate issues a certificate for a key the daemon generates.
func (s *Service) IssueCertificate(ctx context.Context, tenant string, in CertIssue) (string, error) {
	id := newCertID()
	op := s.core.Start(ctx, tenant, "PCA_CERTIFICATE_ISSUE")
	resource, err := s.issueCertificate(ctx, tenant, id, in)
	return id, op.Done(resource, err)
}

// issueCertificate returns what the event names: the certificate once
// it is being signed, nothing before.
func (s *Service) issueCertificate(ctx context.Context, tenant, id string, in CertIssue) (string, error) {
	if in.DN == nil {
		return "", refused(ReasonBadDN, "distinguished_name", nil, "is required")
	}
	if err := in.DN.Check("distinguished_name", false); err != nil {
		return "", checked(err)
	}
	algName := in.KeyAlgorithm
	if algName == "" {
		algName = string(hsm.EC256)
	}
	alg, err := parseKeyAlgorithm("key_algorithm", algName)
	if err != nil {
		return "", err
	}
	// The key is made in software, of any algorithm, but kept sealed by
	// the token (AES-GCM, or AES-CTR with an HMAC): a token that can do
	// neither cannot keep one.
	if err := s.core.SupportsFeature(hsm.FeatureWrap); err != nil {
		return "", signer.Unsupported(err, ReasonBadParameter, "", nil,
			"it cannot keep a generated private key: issue from a CSR (POST /v1/private-certificates/csr) instead")
	}
	hash, err := issuance.CheckHash("signature_algorithm", in.SignatureAlgorithm, false)
	if err != nil {
		return "", checked(err)
	}
	ku, err := issuance.ParseKeyUsages("key_usages", in.KeyUsages)
	if err != nil {
		return "", checked(err)
	}
	if ku, err = issuance.EntityKeyUsage("key_usages", ku, string(alg)); err != nil {
		return "", checked(err)
	}
	eku := ekuDefault
	if in.EKU != nil {
		eku = *in.EKU
	}
	tmpl := issuance.EntityTemplate(time.Time{}, time.Time{}, ku, eku.list()) // the period comes last
	tmpl.Subject = in.DN.PKIXName()
	if err := issuance.AddSANs("subject_alternative_names", in.SANs, tmpl); err != nil {
		return "", checked(err)
	}
	if err := issuance.CheckCommonName("distinguished_name.common_name", in.DN.CommonName); err != nil {
		return "", checked(err)
	}
	is, err := s.loadIssuer(ctx, tenant, in.IssuerID)
	if err != nil {
		return "", err
	}
	if in.SignatureAlgorithm == "" {
		hash = issuance.DefaultHash(is.ca.KeyAlgorithm)
	}
	names := issuance.NamesOf("subject_alternative_names", in.SANs, "distinguished_name", in.DN.CommonName, nil)
	if err := s.checkNameConstraints(ctx, tenant, is, names, issuance.SubjectOf(tmpl), "distinguished_name"); err != nil {
		return "", err
	}
	if tmpl.NotBefore, tmpl.NotAfter, err = in.Validity.window(s.now(), maxChildValidity); err != nil {
		return "", err
	}
	if err := issuance.WithinIssuer("validity", tmpl.NotBefore, tmpl.NotAfter, is.cert); err != nil {
		return "", checked(err)
	}
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
		GenMode: GenModeGenerate, DN: *in.DN, SANs: in.SANs, KeyUsages: issuance.KeyUsageNames(ku), EKU: eku},
		WrappedKey: wrapped}
	return id, s.putCert(ctx, nil, tenant, id, is, tmpl, key.Public(), hash, cr, nil)
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
//
// A CA that issued lately is known (knownIssuers): the issuance then
// reads no CA record, and the certificate is stored only while the CA
// record is still at the version known (store.Guard), checked in the
// same atomic step. A CA revoked, disabled or otherwise changed
// meanwhile, through any replica, fails that check: the certificate
// (signed, never stored or answered) is dropped and the request is served
// again on a fresh read of the CA.
func (s *Service) IssueFromCSR(ctx context.Context, tenant string, in CertFromCSR) (string, error) {
	id := newCertID()
	op := s.core.Start(ctx, tenant, "PCA_CERTIFICATE_ISSUE_CSR")
	for fresh := false; ; fresh = true {
		p, err := s.prepareFromCSR(ctx, tenant, in, fresh)
		if err == nil {
			err = s.certQuotaFreeIfFull(ctx, tenant)
		}
		if err != nil {
			return id, op.Done("", err)
		}
		// The certificate's record and the event of its issuance: one
		// commit where the store takes both.
		err = s.putCert(ctx, op, tenant, id, p.is, p.tmpl, p.pub, p.hash, p.cr, p.guard)
		if errors.Is(err, errIssuerChanged) && !fresh {
			s.knownIssuers.Forget(tenant, in.IssuerID)
			continue
		}
		return id, op.Done(id, err)
	}
}

// csrIssue is an issuance from a CSR checked and ready to sign.
type csrIssue struct {
	is    *issuer
	tmpl  *x509.Certificate
	pub   crypto.PublicKey
	hash  string
	cr    *certRecord
	guard *store.Guard // the issuer's record was not read afresh: it must be unchanged
}

// csrIssuer is the issuer of an issuance from a CSR: a known one (with
// the guard its certificate's create then carries) unless fresh, or the
// CA read afresh, which is then known for the next issuance.
func (s *Service) csrIssuer(ctx context.Context, tenant, id string, fresh bool) (*issuer, *store.Guard, error) {
	if is, ok := s.knownIssuers.Get(tenant, id); ok && !fresh {
		// The status may have moved with time (expiry) since.
		if _, err := CATransition(CAOpIssue, is.ca.effective(s.now())); err == nil {
			return is, &store.Guard{Kind: RecordCA, ID: id, Version: is.rec.Version}, nil
		}
	}
	is, err := s.loadIssuer(ctx, tenant, id)
	if err != nil {
		s.knownIssuers.Forget(tenant, id)
		return nil, nil, err
	}
	s.knownIssuers.Put(tenant, id, is)
	return is, nil, nil
}

// readCSR reads the CSR of a request and decides whether it can be
// certified: its signature proves possession of its key, and the key is
// one hsmca takes.
func readCSR(text string) (*x509.CertificateRequest, hsm.Algorithm, int, error) {
	if strings.TrimSpace(text) == "" {
		return nil, "", 0, refused(ReasonBadCSR, "csr", nil, "is required")
	}
	csr, err := encoding.ParseCSR(text)
	if err != nil {
		return nil, "", 0, unreadable("csr", ReasonBadCSR, err)
	}
	alg, bits, err := issuance.CheckCSR("csr", csr)
	if err != nil {
		return nil, "", 0, checked(err)
	}
	return csr, alg, bits, nil
}

// prepareFromCSR checks an issuance from a CSR and builds its template
// and record, everything short of the quota check and the signature.
func (s *Service) prepareFromCSR(ctx context.Context, tenant string, in CertFromCSR, fresh bool) (*csrIssue, error) {
	typ := in.Type
	if typ == "" {
		typ = CertTypeEntity
	}
	if typ != CertTypeEntity && typ != CertTypeIntermediate {
		return nil, refused(ReasonBadParameter, "type", in.Type, "must be ENTITY_CERT or INTERMEDIATE_CA")
	}
	csr, alg, _, err := readCSR(in.CSR)
	if err != nil {
		return nil, err
	}
	hash, err := issuance.CheckHash("signature_algorithm", in.SignatureAlgorithm, false)
	if err != nil {
		return nil, checked(err)
	}
	is, guard, err := s.csrIssuer(ctx, tenant, in.IssuerID, fresh)
	if err != nil {
		return nil, err
	}
	if in.SignatureAlgorithm == "" {
		hash = issuance.DefaultHash(is.ca.KeyAlgorithm)
	}
	nb, na, err := in.Validity.window(s.now(), maxChildValidity)
	if err != nil {
		return nil, err
	}
	if err := issuance.WithinIssuer("validity", nb, na, is.cert); err != nil {
		return nil, checked(err)
	}
	ku, err := issuance.ParseKeyUsages("key_usages", in.KeyUsages)
	if err != nil {
		return nil, checked(err)
	}
	subj, err := issuance.CheckSubject(csrDNField, csr.RawSubject)
	if err != nil {
		return nil, checked(err)
	}
	cr := &certRecord{certSummary: certSummary{Type: typ, KeyAlgorithm: string(alg), GenMode: "CSR", DN: subj.DN}}
	var tmpl *x509.Certificate
	if typ == CertTypeIntermediate {
		pathLen := 0
		if in.PathLength != nil {
			pathLen = *in.PathLength
		}
		if err := issuance.CheckPathLength("path_length", pathLen, is.ca.PathLength); err != nil {
			return nil, checked(err)
		}
		if subj.Empty {
			return nil, refused(ReasonBadDN, csrDNField, nil, "is empty; a CA certificate needs a subject")
		}
		tmpl = issuance.SubordinateCATemplate(cr.DN.PKIXName(), nb, na, pathLen, ku|x509.KeyUsageDigitalSignature)
		cr.PathLength = &pathLen
	} else {
		if ku, err = issuance.EntityKeyUsage("key_usages", ku, string(alg)); err != nil {
			return nil, checked(err)
		}
		eku := ekuDefault
		if in.EKU != nil {
			eku = *in.EKU
		}
		tmpl = issuance.EntityTemplate(nb, na, ku, eku.list())
		cr.EKU = eku
	}
	// The subject is the one CheckSubject built from the CSR's checked
	// attributes, never the CSR's own bytes.
	tmpl.RawSubject = subj.Raw
	sans, sanField := in.SANs, "subject_alternative_names"
	if len(sans) == 0 {
		sans, sanField = issuance.SANsOf(csr.DNSNames, csr.IPAddresses, csr.EmailAddresses, csr.URIs), "csr.subject_alternative_names"
	}
	if err := issuance.AddSANs(sanField, sans, tmpl); err != nil {
		return nil, checked(err)
	}
	if subj.Empty && len(sans) == 0 {
		return nil, refused(ReasonBadDN, csrDNField, nil,
			"is empty and no subject alternative name is given; a certificate needs a subject or a subject alternative name")
	}
	if err := issuance.CheckCommonName(csrDNField+".common_name", subj.DN.CommonName); err != nil {
		return nil, checked(err)
	}
	names := issuance.NamesOf(sanField, sans, csrDNField, subj.DN.CommonName, subj.Emails)
	if err := s.checkNameConstraints(ctx, tenant, is, names, subj.RDNs, csrDNField); err != nil {
		return nil, err
	}
	cr.SANs = sans
	cr.KeyUsages = issuance.KeyUsageNames(tmpl.KeyUsage)
	return &csrIssue{is: is, tmpl: tmpl, pub: csr.PublicKey, hash: hash, cr: cr, guard: guard}, nil
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
	op := s.core.Start(ctx, tenant, "PCA_CSR_PARSE")
	out, err := parseCSRInfo(csrPEM)
	return out, op.Done("", err)
}

func parseCSRInfo(csrPEM string) (*CSRInfo, error) {
	csr, alg, bits, err := readCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	pub, err := encoding.PublicKeyPEM(csr.PublicKey)
	if err != nil {
		return nil, err
	}
	subj, err := issuance.CheckSubject(csrDNField, csr.RawSubject)
	if err != nil {
		return nil, checked(err)
	}
	if err := issuance.CheckCommonName(csrDNField+".common_name", subj.DN.CommonName); err != nil {
		return nil, checked(err)
	}
	out := &CSRInfo{KeyAlgorithm: strings.TrimRight(string(alg), "0123456789"), KeyLength: bits,
		SignatureAlgorithm: issuance.HashName(csr.SignatureAlgorithm), PublicKeyPEM: pub, DN: subj.DN}
	if alg == hsm.ED25519 {
		out.KeyAlgorithm, out.SignatureAlgorithm = "ED25519", "ED25519"
	}
	return out, nil
}
