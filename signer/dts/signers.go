package dts

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// VICAL signers: a key in the HSM with its CSR and, once issued, its
// certificate under a DTS root. Under a managed, active root the daemon
// issues the certificate at creation; under an unmanaged root the operator
// has the CSR signed elsewhere and uploads the certificate once.

const (
	// signerValidity is the lifetime of a certificate the daemon issues,
	// cut to the root's notAfter.
	signerValidity = 365 * 24 * time.Hour
	// SignatureAlgorithm names what POST /{id}/sign returns: an ECDSA
	// P-256 signature over SHA-256 of the payload, DER-encoded
	// (ECDSA-Sig-Value), as Go's x509 names the algorithm.
	SignatureAlgorithm = "ECDSA-SHA256"

	evSignerCreate   = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_CREATE"
	evSignerList     = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_RETRIEVE_LIST"
	evSignerRetrieve = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_RETRIEVE"
	evSignerUpdate   = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_UPDATE"
	evSignerDelete   = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_DELETE"
	evSignerSign     = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_SIGN"

	signerQuotaMsg = "a maximum of five VICAL signers can be created per tenant"
)

// CreateSigner makes a signer key and CSR under root caID; under a
// managed root the root issues its certificate at once.
func (s *Service) CreateSigner(ctx context.Context, caID *string, bad []signer.FieldError) (*VICALSigner, error) {
	return s.CreateSignerIn(ctx, SignerInput{CAID: caID, BadFields: bad})
}

// CreateSignerIn makes a signer key and CSR under a root or under an
// intermediate CA (intermediate_signers.go); a managed issuing CA issues
// its certificate at once.
func (s *Service) CreateSignerIn(ctx context.Context, in SignerInput) (*VICALSigner, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evSignerCreate)
	if err != nil {
		return nil, op.Done("", err)
	}
	v, err := s.createSigner(ctx, tenant, in)
	if err != nil {
		return nil, op.Done("", err)
	}
	return v.view(), op.Done(v.ID, nil)
}

func (s *Service) createSigner(ctx context.Context, tenant string, in SignerInput) (*dtsSigner, error) {
	iss, err := s.signerIssuerFor(ctx, tenant, in)
	if err != nil {
		return nil, err
	}
	if err := s.supportsKeys("a VICAL signer has a P-256 key in the HSM"); err != nil {
		return nil, err
	}
	if err := s.quotaFree(ctx, tenant, QuotaSigners, signerQuotaMsg); err != nil {
		return nil, err
	}
	v := &dtsSigner{ID: uuid.NewString(), CAID: iss.root.ID, IntermediateID: iss.intermediateID(),
		KeyAlgorithm: string(keyAlgorithm), CreatedBy: signer.CallerFrom(ctx).Principal}
	nk, err := s.core.GenerateKey(ctx, tenant, RecordSigner, v.ID, keyAlgorithm)
	if err != nil {
		return nil, err
	}
	if err := s.commitSigner(ctx, tenant, v, nk, iss); err != nil {
		s.core.AbandonUnlessSettled(nk, err)
		return nil, err
	}
	return v, nil
}

// usableRoot checks that a managed root may issue now.
func (s *Service) usableRoot(root *dtsRoot) (*x509.Certificate, error) {
	if !root.Active {
		return nil, signer.E(signer.KindWrongState, "DTS root CA certificate %s is not active; only an active root may sign", root.ID)
	}
	if !s.core.Now().Before(root.NotAfter) {
		return nil, signer.E(signer.KindWrongState, "DTS root CA certificate %s has expired", root.ID)
	}
	c, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, signer.StoreErr(err, "DTS root CA certificate")
	}
	return c, nil
}

func (s *Service) commitSigner(ctx context.Context, tenant string, v *dtsSigner, nk *signer.NewKey, iss *signerIssuer) error {
	subj := pkix.Name{CommonName: "VICAL Signer " + v.ID}
	country, org := iss.subjectDefaults()
	if country != "" {
		subj.Country = []string{country}
	}
	if org != "" {
		subj.Organization = []string{org}
	}
	csrDER, err := issuance.SignCSR(subj, 0, s.core.Timed(nk.Signer, "vical_signer_csr", v.KeyAlgorithm))
	if err != nil {
		return signer.HSMError(err, "VICAL signer key")
	}
	v.CSRDER = csrDER
	if iss.managed() {
		csr, err := x509.ParseCertificateRequest(csrDER)
		if err != nil {
			return err
		}
		caNotBefore, caNotAfter := iss.validity()
		now := s.core.Now().UTC().Truncate(time.Second)
		nb := now
		if caNotBefore.After(nb) {
			nb = caNotBefore
		}
		na := nb.Add(signerValidity)
		if na.After(caNotAfter) {
			na = caNotAfter
		}
		rs, err := s.core.TimedSigner(ctx, iss.keyID(), iss.keyAlgorithm(), "vical_signer_certificate")
		if err != nil {
			return err
		}
		tmpl := issuance.VICALSignerTemplate(csr.Subject, iss.cert, nb, na)
		issuance.AddIssuerURLs(tmpl, s.issuerURLs(iss))
		der, err := issuance.SignCertificate(tmpl, iss.cert, csr.PublicKey, rs, issuance.KeyIDSHA256)
		if err != nil {
			return signer.HSMError(err, "DTS CA key")
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		v.setCert(c)
		v.ChainDER = iss.chain()
		v.IssuedHere = true
	}
	rec, err := signerRecord(tenant, v, nk.ID)
	if err != nil {
		return err
	}
	// CommitKey settles the key when the write fails (KeySettled).
	err = s.core.CommitKey(ctx, rec, nk, store.WriteOpts{
		Quota: &store.Quota{Resource: QuotaSigners, Limit: s.core.QuotaLimit(QuotaSigners)}})
	if err != nil {
		if qe := quotaErr(err, signerQuotaMsg); qe != nil {
			return signer.KeySettled(qe)
		}
		return signer.KeySettled(signer.StoreErr(err, "VICAL signer"))
	}
	return nil
}

// ListSigners lists the caller's signers in creation order.
func (s *Service) ListSigners(ctx context.Context, p ListParams) ([]VICALSigner, string, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evSignerList)
	if err != nil {
		return nil, "", op.Done("", err)
	}
	out, next, err := s.listSigners(ctx, tenant, p)
	return out, next, op.Done("", err)
}

func (s *Service) listSigners(ctx context.Context, tenant string, p ListParams) ([]VICALSigner, string, error) {
	limit, err := p.check()
	if err != nil {
		return nil, "", err
	}
	page, err := s.core.Store().List(ctx, store.Query{Kind: RecordSigner, Tenant: tenant, Limit: limit, Cursor: p.Cursor})
	if err != nil {
		return nil, "", listErr(err, "VICAL signer")
	}
	out := make([]VICALSigner, 0, len(page.Records))
	for _, rec := range page.Records {
		var v dtsSigner
		if err := json.Unmarshal(rec.Data, &v); err != nil {
			return nil, "", signer.StoreErr(err, "VICAL signer")
		}
		out = append(out, *v.view())
	}
	return out, page.NextCursor, nil
}

// GetSigner returns one of the caller's signers.
func (s *Service) GetSigner(ctx context.Context, id string) (*VICALSigner, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evSignerRetrieve)
	if err == nil {
		err = checkID("id", id, "path")
	}
	if err != nil {
		return nil, op.Done("", err)
	}
	_, v, err := s.getSigner(ctx, tenant, id)
	if err != nil {
		return nil, op.Done("", err)
	}
	return v.view(), op.Done(id, nil)
}

// SignerUpdate is an update request; nil fields are left alone.
type SignerUpdate struct {
	Active         *bool
	CertificatePEM *string
	BadFields      []signer.FieldError
}

// UpdateSigner uploads the signer's certificate (once) and/or
// (de)activates it; only a signer with a certificate can be activated.
func (s *Service) UpdateSigner(ctx context.Context, id string, in SignerUpdate) (*VICALSigner, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evSignerUpdate)
	if err != nil {
		return nil, op.Done("", err)
	}
	v, err := s.updateSigner(ctx, tenant, id, in)
	if err != nil {
		return nil, op.Done("", err)
	}
	return v.view(), op.Done(id, nil)
}

func (s *Service) updateSigner(ctx context.Context, tenant, id string, in SignerUpdate) (*dtsSigner, error) {
	if err := checkID("id", id, "path"); err != nil {
		return nil, err
	}
	if err := signer.FieldErrors(in.BadFields).Err(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		rec, v, err := s.getSigner(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		changed, err := s.applySignerUpdate(ctx, tenant, v, in)
		if err != nil {
			return nil, err
		}
		if !changed {
			return v, nil
		}
		if rec.Data, err = json.Marshal(v); err != nil {
			return nil, err
		}
		rec.Fields["active"] = strconv.FormatBool(v.Active)
		err = s.core.Store().Update(ctx, rec, store.WriteOpts{})
		if errors.Is(err, store.ErrVersionConflict) && attempt < 8 {
			continue
		}
		if err != nil {
			return nil, signer.StoreErr(err, "VICAL signer")
		}
		return v, nil
	}
}

func (s *Service) applySignerUpdate(ctx context.Context, tenant string, v *dtsSigner, in SignerUpdate) (bool, error) {
	changed := false
	if in.CertificatePEM != nil {
		if v.CertDER != nil {
			return false, &signer.Error{Kind: signer.KindConflict, Msg: "certificatePem: the VICAL signer's certificate is set and cannot be changed",
				Fields: []signer.FieldError{{Field: "certificatePem", Msg: "immutable once set", Location: "body"}}}
		}
		c, err := s.checkSignerCert(ctx, tenant, v, *in.CertificatePEM)
		if err != nil {
			return false, err
		}
		v.setCert(c)
		changed = true
	}
	if in.Active != nil && *in.Active != v.Active {
		if *in.Active && v.CertDER == nil {
			return false, &signer.Error{Kind: signer.KindInvalid, Msg: "active: only a VICAL signer with a certificate can be activated",
				Fields: []signer.FieldError{{Field: "active", Value: true, Msg: "only a VICAL signer with a certificate can be activated", Location: "body"}}}
		}
		v.Active = *in.Active
		changed = true
	}
	return changed, nil
}

// checkSignerCert accepts an uploaded certificate that carries the CSR's
// public key, is issued and signed by the signer's issuing CA (its
// intermediate CA, or its root), is an end-entity certificate and has not
// expired; it records the chain above the certificate on v.
func (s *Service) checkSignerCert(ctx context.Context, tenant string, v *dtsSigner, pemText string) (*x509.Certificate, error) {
	bad := func(msg string) error { return signer.Invalid("certificatePem", nil, msg) }
	c, err := encoding.ParseCertificate([]byte(pemText))
	if err != nil {
		return nil, bad(err.Error())
	}
	csr, err := x509.ParseCertificateRequest(v.CSRDER)
	if err != nil {
		return nil, signer.StoreErr(err, "VICAL signer")
	}
	if !encoding.PublicKeysEqual(c.PublicKey, csr.PublicKey) {
		return nil, bad("the certificate's public key does not match the VICAL signer's CSR")
	}
	if c.BasicConstraintsValid && c.IsCA {
		return nil, bad("must be an end-entity certificate, not a CA certificate")
	}
	if !s.core.Now().Before(c.NotAfter) {
		return nil, bad("the certificate has expired")
	}
	rc, chain, what, err := s.issuingCAOf(ctx, tenant, v)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(c.RawIssuer, rc.RawSubject) || c.CheckSignatureFrom(rc) != nil {
		return nil, bad("the certificate does not chain to the VICAL signer's " + what)
	}
	v.ChainDER = chain
	return c, nil
}

// DeleteSigner deletes a signer and destroys its key. A certificate this
// daemon issued is revoked on its issuing CA's CRL (the root's, or the
// intermediate's) first.
func (s *Service) DeleteSigner(ctx context.Context, id string) error {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evSignerDelete)
	if err == nil {
		err = s.deleteSigner(ctx, tenant, id)
	}
	if err != nil {
		return op.Done("", err)
	}
	return op.Done(id, nil)
}

func (s *Service) deleteSigner(ctx context.Context, tenant, id string) error {
	if err := checkID("id", id, "path"); err != nil {
		return err
	}
	rec, v, err := s.getSigner(ctx, tenant, id)
	if err != nil {
		return err
	}
	crlKind, crlCA := "", ""
	if v.IssuedHere && v.CertDER != nil {
		kind, caID, err := s.revocationCAOf(ctx, tenant, v)
		if err != nil {
			return err
		}
		if caID != "" {
			c, err := x509.ParseCertificate(v.CertDER)
			if err != nil {
				return signer.StoreErr(err, "VICAL signer")
			}
			if err := s.revokeSerialOn(ctx, tenant, kind, caID, encoding.SerialHex(c.SerialNumber)); err != nil {
				return err
			}
			crlKind, crlCA = kind, caID
		}
	}
	opts := store.WriteOpts{Quota: &store.Quota{Resource: QuotaSigners, Limit: s.core.QuotaLimit(QuotaSigners)}}
	if err := s.core.DeleteWithKey(ctx, rec, opts); err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return signer.E(signer.KindNotFound, "VICAL signer %s not found", id)
		}
		return err
	}
	if crlCA != "" {
		// The CA's CRL lists it from now on. Should signing fail, the
		// CRL stays marked stale and the refresher signs it.
		if _, err := s.signCACRL(ctx, tenant, crlKind, crlCA); err != nil {
			s.core.Log().Warn("CRL of a DTS CA not re-signed after a signer deletion; the refresher retries",
				"id", crlCA, "err", err)
		}
		if c, err := x509.ParseCertificate(v.CertDER); err == nil && crlKind == kindRootIndex {
			// Intermediates answer no OCSP requests: only a root's signers.
			if err := s.ocsp.Revoked(ctx, tenant, crlCA, c.SerialNumber); err != nil {
				s.core.Log().Warn("OCSP answers of a DTS root not updated after a signer deletion", "id", crlCA, "err", err)
			}
		}
	}
	return nil
}

// Sign signs payload with an active signer whose root is active and whose
// certificate is valid now: an ECDSA signature over the payload's SHA-256
// (SignatureAlgorithm).
func (s *Service) Sign(ctx context.Context, id string, payload []byte, bad []signer.FieldError) ([]byte, error) {
	tenant, err := tenantOf(ctx)
	op := s.core.Start(ctx, tenant, evSignerSign)
	if err != nil {
		return nil, op.Done("", err)
	}
	sig, err := s.sign(ctx, tenant, id, payload, bad)
	if err != nil {
		return nil, op.Done("", err)
	}
	return sig, op.Done(id, nil)
}

func (s *Service) sign(ctx context.Context, tenant, id string, payload []byte, bad []signer.FieldError) ([]byte, error) {
	if err := checkID("id", id, "path"); err != nil {
		return nil, err
	}
	f := signer.FieldErrors(bad)
	if !hasField(bad, "payload") && len(payload) == 0 {
		f.Add("payload", nil, "is required: the base64 of a non-empty payload")
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	rec, v, err := s.getSigner(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if !v.Active || v.CertDER == nil {
		return nil, signer.E(signer.KindWrongState, "VICAL signer %s is not active", id)
	}
	now := s.core.Now()
	if v.NotBefore != nil && now.Before(*v.NotBefore) || v.NotAfter != nil && !now.Before(*v.NotAfter) {
		return nil, signer.E(signer.KindWrongState, "the certificate of VICAL signer %s is not valid now", id)
	}
	_, root, err := s.getRoot(ctx, tenant, v.CAID)
	if err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return nil, signer.E(signer.KindWrongState, "the DTS root CA certificate %s of VICAL signer %s no longer exists", v.CAID, id)
		}
		return nil, err
	}
	if !root.Active {
		return nil, signer.E(signer.KindWrongState, "the DTS root CA certificate %s of VICAL signer %s is not active", v.CAID, id)
	}
	if err := s.signerIntermediateUsable(ctx, tenant, v); err != nil {
		return nil, err
	}
	k, err := s.core.TimedSigner(ctx, rec.Fields[signer.KeyField], v.KeyAlgorithm, "vical_signer_sign")
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(payload)
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, signer.HSMError(err, "VICAL signer key")
	}
	return sig, nil
}
