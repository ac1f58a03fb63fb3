package pca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
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

// How a CA gets its certificate: created as a root or a subordinate signed
// at once, activated (signed later by one of the tenant's CAs), or
// imported (signed outside hsmca).

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

// CreateCA creates a root (signed at once), a subordinate signed at once
// by one of the tenant's CAs (issuer_id, signature_algorithm and validity
// all given), or a PENDING subordinate waiting for activation or an
// externally signed certificate.
func (s *Service) CreateCA(ctx context.Context, tenant string, in CACreate) (string, error) {
	op := s.core.Start(ctx, tenant, "PCA_CA_CREATE")
	id, err := s.createCA(ctx, tenant, in)
	return id, op.Done(id, err)
}

func caQuotaErr(limit int64, cause error) error {
	return &signer.Error{Kind: signer.KindQuotaExceeded, Reason: ReasonCAQuota,
		Msg: fmt.Sprintf("the tenant has reached its quota of %d CAs", limit), Err: cause}
}

func (s *Service) createCA(ctx context.Context, tenant string, in CACreate) (string, error) {
	now := s.now()
	if in.Type != CATypeRoot && in.Type != CATypeSubordinate {
		return "", refused(ReasonBadParameter, "type", in.Type, "must be ROOT or SUBORDINATE")
	}
	if in.DN == nil {
		return "", refused(ReasonBadDN, "distinguished_name", nil, "is required")
	}
	if err := in.DN.Check("distinguished_name", true); err != nil {
		return "", checked(err)
	}
	// The key is the HSM's: an algorithm the token lacks is refused here,
	// before anything is read or written.
	alg, err := s.parseCAKeyAlgorithm("key_algorithm", in.KeyAlgorithm)
	if err != nil {
		return "", err
	}
	root := in.Type == CATypeRoot
	signNow := root || (in.IssuerID != "" && in.SignatureAlgorithm != "" && in.Validity != nil)
	hash, err := issuance.CheckHash("signature_algorithm", in.SignatureAlgorithm, root)
	if err != nil {
		return "", checked(err)
	}
	ku, err := issuance.ParseKeyUsages("key_usages", in.KeyUsages)
	if err != nil {
		return "", checked(err)
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
		c.PathLength = issuance.UnlimitedPathLength
		if nb, na, err = in.Validity.window(now, maxRootValidity); err != nil {
			return "", err
		}
	default:
		c.PathLength = 0
		if in.PathLength != nil {
			c.PathLength = *in.PathLength
		}
		if err := checkPathLengthRange(c.PathLength); err != nil {
			return "", err
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
			if err := issuance.CheckPathLength("path_length", c.PathLength, is.ca.PathLength); err != nil {
				return "", checked(err)
			}
			if nb, na, err = in.Validity.window(now, maxChildValidity); err != nil {
				return "", err
			}
			if err := issuance.WithinIssuer("validity", nb, na, is.cert); err != nil {
				return "", checked(err)
			}
			if err := s.checkCANames(ctx, tenant, is, *in.DN); err != nil {
				return "", err
			}
		}
	}
	c.KeyUsages = issuance.KeyUsageNames(ku | x509.KeyUsageCertSign | x509.KeyUsageCRLSign)

	// Fail fast before the slow key generation; the store enforces the
	// quota atomically at commit (a failure to read the use is left to it).
	limit, err := s.core.QuotaFree(ctx, tenant, QuotaCAs)
	if signer.KindOf(err) == signer.KindQuotaExceeded {
		return "", caQuotaErr(limit, nil)
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
	if err := s.buildCA(ctx, c, nk, is, nb, na, ku, signNow); err != nil {
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
	// CommitKey settles the key when the write fails: destroyed if the
	// store refused it, else left to the reconciler, which keeps it should
	// the write have committed after all; the CA's index stays then too.
	err = s.core.CommitKey(ctx, rec, nk, store.WriteOpts{
		Quota: &store.Quota{Resource: QuotaCAs, Limit: limit}})
	if err != nil {
		committed = !signer.RefusedWrite(err)
		if errors.Is(err, store.ErrQuotaExceeded) {
			return id, caQuotaErr(limit, err)
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

// parseCAKeyAlgorithm accepts the algorithm of a CA key, which the HSM
// generates: one of the token's. A known algorithm the token lacks is
// refused naming the missing mechanism, an unknown one listing the
// token's.
func (s *Service) parseCAKeyAlgorithm(field, v string) (hsm.Algorithm, error) {
	offered := s.core.Algorithms(caKeyAlgorithms)
	alg, err := parseKeyAlgorithm(field, v)
	if err != nil {
		_, err = parseAlgorithmOf(offered, field, v)
		return "", err
	}
	if err := s.core.Supports(alg); err != nil {
		hint := "the HSM token offers none of " + orList(caKeyAlgorithms)
		if len(offered) > 0 {
			hint = "it offers " + orList(offered)
		}
		return "", signer.Unsupported(err, ReasonBadKeyAlg, field, v, hint)
	}
	return alg, nil
}

// buildCA makes the certificate (root, or subordinate signed now) or the
// CSR (PENDING subordinate) of a new CA whose key is nk.
func (s *Service) buildCA(ctx context.Context, c *caRecord, nk *signer.NewKey, is *issuer, nb, na time.Time, ku x509.KeyUsage, signNow bool) error {
	pub := nk.Signer.Public()
	sigAlg := issuance.SignatureAlgorithm(c.KeyAlgorithm, c.SignatureAlgorithm)
	if !signNow {
		der, err := issuance.SignCSR(c.DN.PKIXName(), sigAlg, s.core.Timed(nk.Signer, "pca_csr", c.KeyAlgorithm))
		if err != nil {
			return signer.HSMError(err, "CA key")
		}
		c.CSR = der
		return nil
	}
	tmpl := issuance.CATemplate(c.DN.PKIXName(), nb, na, c.PathLength, ku)
	if is != nil {
		tmpl = issuance.SubordinateCATemplate(c.DN.PKIXName(), nb, na, c.PathLength, ku)
	}
	var (
		der []byte
		err error
	)
	if is == nil {
		tmpl.SignatureAlgorithm = sigAlg
		der, err = issuance.SignCertificate(tmpl, nil, pub, s.core.Timed(nk.Signer, "pca_ca_certificate", c.KeyAlgorithm), issuance.KeyIDSHA1)
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
	c.Status = CAActived
	return nil
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
	op := s.core.Start(ctx, tenant, "PCA_CA_ACTIVATE")
	err := s.activateCA(ctx, tenant, id, in)
	if err == nil {
		s.firstCRL(ctx, tenant, id)
	}
	return op.Done(id, err)
}

func (s *Service) activateCA(ctx context.Context, tenant, id string, in CAActivate) error {
	hash, err := issuance.CheckHash("signature_algorithm", in.SignatureAlgorithm, true)
	if err != nil {
		return checked(err)
	}
	pathLen := 0
	if in.PathLength != nil {
		pathLen = *in.PathLength
	}
	if err := checkPathLengthRange(pathLen); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		rec, c, to, err := s.transit(ctx, tenant, id, CAOpActivate)
		if err != nil {
			return err
		}
		if in.IssuerID == id {
			return refused(ReasonBadCAID, "issuer_id", in.IssuerID, "a CA cannot sign itself")
		}
		is, err := s.loadIssuer(ctx, tenant, in.IssuerID)
		if err != nil {
			return err
		}
		if err := issuance.CheckPathLength("path_length", pathLen, is.ca.PathLength); err != nil {
			return checked(err)
		}
		nb, na, err := in.Validity.window(s.now(), maxChildValidity)
		if err != nil {
			return err
		}
		if err := issuance.WithinIssuer("validity", nb, na, is.cert); err != nil {
			return checked(err)
		}
		if err := s.checkCANames(ctx, tenant, is, c.DN); err != nil {
			return err
		}
		csr, err := x509.ParseCertificateRequest(c.CSR)
		if err != nil {
			return signer.StoreErr(err, "CA CSR")
		}
		ku, _ := issuance.ParseKeyUsages("key_usages", c.KeyUsages)
		c.PathLength = pathLen
		der, err := s.sign(ctx, is, issuance.SubordinateCATemplate(c.DN.PKIXName(), nb, na, pathLen, ku), csr.PublicKey, hash, "pca_ca_certificate")
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
		if retry, err := s.saveTransit(ctx, rec, c, id, attempt); !retry {
			return err
		}
	}
}

// firstCRL publishes the first CRL of a CA that just got its certificate.
func (s *Service) firstCRL(ctx context.Context, tenant, id string) {
	if _, c, err := s.getCA(ctx, tenant, id); err == nil && c.CRL.Enabled {
		if err := s.crlChanged(ctx, tenant, id); err != nil {
			s.core.Log().Warn("first CRL of a CA not generated", "ca", id, "err", err)
		}
	}
}

// ImportCACertificate installs a certificate signed outside hsmca for a
// PENDING CA: it must certify the CA's own key as a CA, be valid now, and
// chain through certificate_chain when one is given.
func (s *Service) ImportCACertificate(ctx context.Context, tenant, id, certPEM, chainPEM string) error {
	op := s.core.Start(ctx, tenant, "PCA_CA_IMPORT")
	err := s.importCA(ctx, tenant, id, certPEM, chainPEM)
	if err == nil {
		s.firstCRL(ctx, tenant, id)
	}
	return op.Done(id, err)
}

func (s *Service) importCA(ctx context.Context, tenant, id, certPEM, chainPEM string) error {
	certs, err := readCertificates("certificate", certPEM)
	if err != nil {
		return err
	}
	if len(certs) != 1 {
		return refused(ReasonBadCert, "certificate", nil, "want exactly one certificate; put the issuers in certificate_chain")
	}
	cert := certs[0]
	var chain []*x509.Certificate
	if strings.TrimSpace(chainPEM) != "" {
		if chain, err = readCertificates("certificate_chain", chainPEM); err != nil {
			return err
		}
	}
	parentID, parent, err := s.tenantIssuer(ctx, tenant, id, cert)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		rec, c, to, err := s.transit(ctx, tenant, id, CAOpImport)
		if err != nil {
			return err
		}
		csr, err := x509.ParseCertificateRequest(c.CSR)
		if err != nil {
			return signer.StoreErr(err, "CA CSR")
		}
		if err := checkImported(cert, chain, csr.PublicKey, s.now()); err != nil {
			return err
		}
		if _, err := issuance.CRLIssuer(cert); err != nil && c.CRL.Enabled {
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
		if parent != nil {
			c.IssuerID, c.IssuerName = parentID, parent.DN.CommonName
		}
		c.DN = issuance.NameOf(cert.Subject)
		c.SignatureAlgorithm = issuance.HashName(cert.SignatureAlgorithm)
		c.PathLength = issuance.UnlimitedPathLength
		if cert.MaxPathLen > 0 || cert.MaxPathLenZero {
			c.PathLength = min(cert.MaxPathLen, issuance.UnlimitedPathLength)
		}
		c.KeyUsages = issuance.KeyUsageNames(cert.KeyUsage)
		c.Status = to
		if retry, err := s.saveTransit(ctx, rec, c, id, attempt); !retry {
			return err
		}
	}
}

// tenantIssuer finds the tenant's CA that signed cert, if any: one (other
// than the importing CA self) whose certificate's subject is cert's
// issuer and whose key verifies cert's signature. That is how a
// certificate issued by one of the tenant's CAs from the pending CA's CSR
// (POST /v1/private-certificates/csr, type INTERMEDIATE_CA) comes back:
// the imported CA then names that CA as its issuer. Candidates are the
// tenant's CAs of the issuer's common name, which the CA quota bounds.
func (s *Service) tenantIssuer(ctx context.Context, tenant, self string, cert *x509.Certificate) (string, *caRecord, error) {
	page, err := s.store.List(ctx, store.Query{Kind: RecordCA, Tenant: tenant,
		Filters: []store.Filter{{Field: "common_name", Value: cert.Issuer.CommonName}}})
	if err != nil {
		return "", nil, signer.StoreErr(err, "CA")
	}
	for i := range page.Records {
		r := &page.Records[i]
		if r.ID == self {
			continue
		}
		var c caRecord
		if err := json.Unmarshal(r.Data, &c); err != nil {
			return "", nil, signer.StoreErr(err, "CA")
		}
		if len(c.Cert) == 0 {
			continue
		}
		pc, err := s.issuerCerts.Get(c.Cert)
		if err != nil {
			return "", nil, signer.StoreErr(err, "CA certificate")
		}
		if bytes.Equal(pc.RawSubject, cert.RawIssuer) && cert.CheckSignatureFrom(pc) == nil {
			return r.ID, &c, nil
		}
	}
	return "", nil, nil
}

// readCertificates reads the PEM certificates of a request field; blocks
// of other types are skipped (exported bundles often carry a key).
func readCertificates(field, text string) ([]*x509.Certificate, error) {
	certs, err := encoding.ParseCertificates([]byte(text), encoding.SkipOthers)
	if err != nil {
		return nil, unreadable(field, ReasonBadCert, err)
	}
	return certs, nil
}

func checkImported(cert *x509.Certificate, chain []*x509.Certificate, pub crypto.PublicKey, now time.Time) error {
	bad := func(msg string) error { return refused(ReasonBadCert, "certificate", nil, msg) }
	if !encoding.PublicKeysEqual(pub, cert.PublicKey) {
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
