package signer

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
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// VICAL signers: a key in the HSM with its CSR and, once issued, its
// certificate under a DTS root. Under a managed, active root the daemon
// issues the certificate at creation; under an unmanaged root the operator
// has the CSR signed elsewhere and uploads the certificate once.

const (
	KindDTSSigner = "dts_signer"

	// dtsSignerValidity is the lifetime of a certificate the daemon issues,
	// cut to the root's notAfter.
	dtsSignerValidity = 365 * 24 * time.Hour
	// DTSSignatureAlgorithm names what POST /{id}/sign returns: an ECDSA
	// P-256 signature over SHA-256 of the payload, DER-encoded
	// (ECDSA-Sig-Value), as Go's x509 names the algorithm.
	DTSSignatureAlgorithm = "ECDSA-SHA256"

	evSignerCreate   = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_CREATE"
	evSignerList     = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_RETRIEVE_LIST"
	evSignerRetrieve = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_RETRIEVE"
	evSignerUpdate   = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_UPDATE"
	evSignerDelete   = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_DELETE"
	evSignerSign     = "ECOSYSTEM_VICAL_SIGNER_CERTIFICATE_SIGN"

	dtsSignerQuotaMsg = "a maximum of five VICAL signers can be created per tenant"
)

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
}

func (s *dtsSigner) view() *VICALSigner {
	v := &VICALSigner{ID: s.ID, CAID: s.CAID, Active: s.Active, CSRPEM: encoding.EncodePEM("CERTIFICATE REQUEST", s.CSRDER)}
	if s.CertDER != nil {
		v.CertificatePEM = encoding.EncodePEM("CERTIFICATE", s.CertDER)
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
	return &store.Record{Kind: KindDTSSigner, Tenant: tenant, ID: s.ID, Data: data,
		Fields: map[string]string{KeyField: keyID, KeyAlgorithmField: s.KeyAlgorithm, "ca_id": s.CAID,
			"active": strconv.FormatBool(s.Active)}}, nil
}

func (e *Engine) getDTSSigner(ctx context.Context, tenant, id string) (*store.Record, *dtsSigner, error) {
	rec, err := e.store.Get(ctx, KindDTSSigner, tenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, E(KindNotFound, "VICAL signer %s not found", id)
		}
		return nil, nil, storeErr(err, "VICAL signer")
	}
	var s dtsSigner
	if err := json.Unmarshal(rec.Data, &s); err != nil {
		return nil, nil, storeErr(err, "VICAL signer")
	}
	return rec, &s, nil
}

// CreateVICALSigner makes a signer key and CSR under root caID; under a
// managed root the root issues its certificate at once.
func (e *Engine) CreateVICALSigner(ctx context.Context, caID *string, bad []FieldError) (*VICALSigner, error) {
	var out *VICALSigner
	tenant, terr := dtsTenant(ctx)
	err := e.run(ctx, tenant, evSignerCreate, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		f := fieldErrs(bad)
		switch {
		case hasField(bad, "caId"):
		case caID == nil:
			f.add("caId", nil, "is required")
		case checkDTSID("caId", *caID, "body") != nil:
			f.add("caId", *caID, "must be a UUID")
		}
		if err := f.err(); err != nil {
			return "", err
		}
		rootRec, root, err := e.getDTSRoot(ctx, tenant, *caID)
		if err != nil {
			if KindOf(err) == KindNotFound {
				return "", &Error{Kind: KindNotFound, Msg: "DTS root CA certificate " + *caID + " not found",
					Fields: []FieldError{{Field: "caId", Value: *caID, Msg: "no such DTS root CA certificate", Location: "body"}}}
			}
			return "", err
		}
		var rootCert *x509.Certificate
		if root.Managed {
			if rootCert, err = e.usableRoot(root); err != nil {
				return "", err
			}
		}
		if err := e.reserveCheck(ctx, tenant, QuotaDTSSigners, dtsSignerQuotaMsg); err != nil {
			return "", err
		}
		s := &dtsSigner{ID: uuid.NewString(), CAID: root.ID, KeyAlgorithm: string(dtsKeyAlgorithm),
			CreatedBy: CallerFrom(ctx).Principal}
		nk, err := e.GenerateKey(ctx, tenant, KindDTSSigner, s.ID, dtsKeyAlgorithm)
		if err != nil {
			return "", err
		}
		if err := e.commitSigner(ctx, tenant, s, nk, root, rootRec, rootCert); err != nil {
			e.AbandonKey(nk)
			return "", err
		}
		out = s.view()
		return s.ID, nil
	})
	return out, err
}

// usableRoot checks that a managed root may issue now.
func (e *Engine) usableRoot(root *dtsRoot) (*x509.Certificate, error) {
	if !root.Active {
		return nil, E(KindWrongState, "DTS root CA certificate %s is not active; only an active root may sign", root.ID)
	}
	if !e.now().Before(root.NotAfter) {
		return nil, E(KindWrongState, "DTS root CA certificate %s has expired", root.ID)
	}
	c, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, storeErr(err, "DTS root CA certificate")
	}
	return c, nil
}

func (e *Engine) commitSigner(ctx context.Context, tenant string, s *dtsSigner, nk *NewKey, root *dtsRoot, rootRec *store.Record, rootCert *x509.Certificate) error {
	subj := pkix.Name{CommonName: "VICAL Signer " + s.ID}
	if root.Country != "" {
		subj.Country = []string{root.Country}
	}
	if root.Organisation != "" {
		subj.Organization = []string{root.Organisation}
	}
	csrDER, err := issuance.SignCSR(subj, 0, e.Timed(nk.Signer, "vical_signer_csr", s.KeyAlgorithm))
	if err != nil {
		return HSMError(err, "VICAL signer key")
	}
	s.CSRDER = csrDER
	if root.Managed {
		csr, err := x509.ParseCertificateRequest(csrDER)
		if err != nil {
			return err
		}
		now := e.now().UTC().Truncate(time.Second)
		nb := now
		if root.NotBefore.After(nb) {
			nb = root.NotBefore
		}
		na := nb.Add(dtsSignerValidity)
		if na.After(root.NotAfter) {
			na = root.NotAfter
		}
		rs, err := e.TimedSigner(ctx, rootRec.Fields[KeyField], root.KeyAlgorithm, "vical_signer_certificate")
		if err != nil {
			return err
		}
		tmpl := issuance.VICALSignerTemplate(csr.Subject, rootCert, nb, na)
		der, err := issuance.SignCertificate(tmpl, rootCert, csr.PublicKey, rs, issuance.KeyIDSHA256)
		if err != nil {
			return HSMError(err, "DTS root CA key")
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		s.setCert(c)
		s.IssuedHere = true
	}
	rec, err := signerRecord(tenant, s, nk.ID)
	if err != nil {
		return err
	}
	err = e.store.Create(ctx, rec, store.WriteOpts{Intent: nk.Intent,
		Quota: &store.Quota{Resource: QuotaDTSSigners, Limit: e.QuotaLimit(QuotaDTSSigners)}})
	if err != nil {
		if qe := dtsQuotaErr(err, dtsSignerQuotaMsg); qe != nil {
			return qe
		}
		return storeErr(err, "VICAL signer")
	}
	return nil
}

// ListVICALSigners lists the caller's signers in creation order.
func (e *Engine) ListVICALSigners(ctx context.Context, p DTSListParams) ([]VICALSigner, string, error) {
	var (
		out  []VICALSigner
		next string
	)
	tenant, terr := dtsTenant(ctx)
	err := e.run(ctx, tenant, evSignerList, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		limit, err := p.check()
		if err != nil {
			return "", err
		}
		page, err := e.store.List(ctx, store.Query{Kind: KindDTSSigner, Tenant: tenant, Limit: limit, Cursor: p.Cursor})
		if err != nil {
			return "", listErr(err, "VICAL signer")
		}
		out = make([]VICALSigner, 0, len(page.Records))
		for _, rec := range page.Records {
			var s dtsSigner
			if err := json.Unmarshal(rec.Data, &s); err != nil {
				return "", storeErr(err, "VICAL signer")
			}
			out = append(out, *s.view())
		}
		next = page.NextCursor
		return "", nil
	})
	return out, next, err
}

// GetVICALSigner returns one of the caller's signers.
func (e *Engine) GetVICALSigner(ctx context.Context, id string) (*VICALSigner, error) {
	var out *VICALSigner
	tenant, terr := dtsTenant(ctx)
	err := e.run(ctx, tenant, evSignerRetrieve, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		if err := checkDTSID("id", id, "path"); err != nil {
			return "", err
		}
		_, s, err := e.getDTSSigner(ctx, tenant, id)
		if err != nil {
			return "", err
		}
		out = s.view()
		return id, nil
	})
	return out, err
}

// VICALSignerUpdate is an update request; nil fields are left alone.
type VICALSignerUpdate struct {
	Active         *bool
	CertificatePEM *string
	BadFields      []FieldError
}

// UpdateVICALSigner uploads the signer's certificate (once) and/or
// (de)activates it; only a signer with a certificate can be activated.
func (e *Engine) UpdateVICALSigner(ctx context.Context, id string, in VICALSignerUpdate) (*VICALSigner, error) {
	var out *VICALSigner
	tenant, terr := dtsTenant(ctx)
	err := e.run(ctx, tenant, evSignerUpdate, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		if err := checkDTSID("id", id, "path"); err != nil {
			return "", err
		}
		if err := fieldErrs(in.BadFields).err(); err != nil {
			return "", err
		}
		for attempt := 0; ; attempt++ {
			rec, s, err := e.getDTSSigner(ctx, tenant, id)
			if err != nil {
				return "", err
			}
			changed, err := e.applySignerUpdate(ctx, tenant, s, in)
			if err != nil {
				return "", err
			}
			if !changed {
				out = s.view()
				return id, nil
			}
			if rec.Data, err = json.Marshal(s); err != nil {
				return "", err
			}
			rec.Fields["active"] = strconv.FormatBool(s.Active)
			err = e.store.Update(ctx, rec, store.WriteOpts{})
			if errors.Is(err, store.ErrVersionConflict) && attempt < 8 {
				continue
			}
			if err != nil {
				return "", storeErr(err, "VICAL signer")
			}
			out = s.view()
			return id, nil
		}
	})
	return out, err
}

func (e *Engine) applySignerUpdate(ctx context.Context, tenant string, s *dtsSigner, in VICALSignerUpdate) (bool, error) {
	changed := false
	if in.CertificatePEM != nil {
		if s.CertDER != nil {
			return false, &Error{Kind: KindConflict, Msg: "certificatePem: the VICAL signer's certificate is set and cannot be changed",
				Fields: []FieldError{{Field: "certificatePem", Msg: "immutable once set", Location: "body"}}}
		}
		c, err := e.checkSignerCert(ctx, tenant, s, *in.CertificatePEM)
		if err != nil {
			return false, err
		}
		s.setCert(c)
		changed = true
	}
	if in.Active != nil && *in.Active != s.Active {
		if *in.Active && s.CertDER == nil {
			return false, &Error{Kind: KindInvalid, Msg: "active: only a VICAL signer with a certificate can be activated",
				Fields: []FieldError{{Field: "active", Value: true, Msg: "only a VICAL signer with a certificate can be activated", Location: "body"}}}
		}
		s.Active = *in.Active
		changed = true
	}
	return changed, nil
}

// checkSignerCert accepts an uploaded certificate that carries the CSR's
// public key, is issued and signed by the signer's root, is an end-entity
// certificate and has not expired.
func (e *Engine) checkSignerCert(ctx context.Context, tenant string, s *dtsSigner, pemText string) (*x509.Certificate, error) {
	bad := func(msg string) error { return Invalid("certificatePem", nil, msg) }
	c, err := encoding.ParseCertificate([]byte(pemText))
	if err != nil {
		return nil, bad(err.Error())
	}
	csr, err := x509.ParseCertificateRequest(s.CSRDER)
	if err != nil {
		return nil, storeErr(err, "VICAL signer")
	}
	if !encoding.PublicKeysEqual(c.PublicKey, csr.PublicKey) {
		return nil, bad("the certificate's public key does not match the VICAL signer's CSR")
	}
	if c.BasicConstraintsValid && c.IsCA {
		return nil, bad("must be an end-entity certificate, not a CA certificate")
	}
	if !e.now().Before(c.NotAfter) {
		return nil, bad("the certificate has expired")
	}
	_, root, err := e.getDTSRoot(ctx, tenant, s.CAID)
	if err != nil {
		if KindOf(err) == KindNotFound {
			return nil, E(KindWrongState, "the VICAL signer's DTS root CA certificate %s no longer exists", s.CAID)
		}
		return nil, err
	}
	rc, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, storeErr(err, "DTS root CA certificate")
	}
	if !bytes.Equal(c.RawIssuer, rc.RawSubject) || c.CheckSignatureFrom(rc) != nil {
		return nil, bad("the certificate does not chain to the VICAL signer's DTS root CA certificate")
	}
	return c, nil
}

// DeleteVICALSigner deletes a signer and destroys its key. A certificate
// this daemon issued is revoked on the root's CRL first.
func (e *Engine) DeleteVICALSigner(ctx context.Context, id string) error {
	tenant, terr := dtsTenant(ctx)
	return e.run(ctx, tenant, evSignerDelete, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		if err := checkDTSID("id", id, "path"); err != nil {
			return "", err
		}
		rec, s, err := e.getDTSSigner(ctx, tenant, id)
		if err != nil {
			return "", err
		}
		revoked := false
		if s.IssuedHere && s.CertDER != nil {
			if _, _, rerr := e.getDTSRoot(ctx, tenant, s.CAID); rerr == nil {
				c, err := x509.ParseCertificate(s.CertDER)
				if err != nil {
					return "", storeErr(err, "VICAL signer")
				}
				if err := e.revokeDTSSerial(ctx, tenant, s.CAID, encoding.SerialHex(c.SerialNumber)); err != nil {
					return "", err
				}
				revoked = true
			} else if KindOf(rerr) != KindNotFound {
				return "", rerr
			}
		}
		opts := store.WriteOpts{Quota: &store.Quota{Resource: QuotaDTSSigners, Limit: e.QuotaLimit(QuotaDTSSigners)}}
		if err := e.DeleteWithKey(ctx, rec, opts); err != nil {
			if KindOf(err) == KindNotFound {
				return "", E(KindNotFound, "VICAL signer %s not found", id)
			}
			return "", err
		}
		if revoked {
			// The root's CRL lists it from now on. Should signing fail,
			// the CRL stays marked stale and the refresher signs it.
			if _, err := e.signDTSRootCRL(ctx, tenant, s.CAID, false); err != nil {
				e.log.Warn("CRL of a DTS root not re-signed after a signer deletion; the refresher retries",
					"id", s.CAID, "err", err)
			}
		}
		return id, nil
	})
}

// SignWithVICALSigner signs payload with an active signer whose root is
// active and whose certificate is valid now.
func (e *Engine) SignWithVICALSigner(ctx context.Context, id string, payload []byte, bad []FieldError) ([]byte, error) {
	var sig []byte
	tenant, terr := dtsTenant(ctx)
	err := e.run(ctx, tenant, evSignerSign, func() (string, error) {
		if terr != nil {
			return "", terr
		}
		if err := checkDTSID("id", id, "path"); err != nil {
			return "", err
		}
		f := fieldErrs(bad)
		if !hasField(bad, "payload") && len(payload) == 0 {
			f.add("payload", nil, "is required: the base64 of a non-empty payload")
		}
		if err := f.err(); err != nil {
			return "", err
		}
		rec, s, err := e.getDTSSigner(ctx, tenant, id)
		if err != nil {
			return "", err
		}
		if !s.Active || s.CertDER == nil {
			return "", E(KindWrongState, "VICAL signer %s is not active", id)
		}
		now := e.now()
		if s.NotBefore != nil && now.Before(*s.NotBefore) || s.NotAfter != nil && !now.Before(*s.NotAfter) {
			return "", E(KindWrongState, "the certificate of VICAL signer %s is not valid now", id)
		}
		_, root, err := e.getDTSRoot(ctx, tenant, s.CAID)
		if err != nil {
			if KindOf(err) == KindNotFound {
				return "", E(KindWrongState, "the DTS root CA certificate %s of VICAL signer %s no longer exists", s.CAID, id)
			}
			return "", err
		}
		if !root.Active {
			return "", E(KindWrongState, "the DTS root CA certificate %s of VICAL signer %s is not active", s.CAID, id)
		}
		k, err := e.TimedSigner(ctx, rec.Fields[KeyField], s.KeyAlgorithm, "vical_signer_sign")
		if err != nil {
			return "", err
		}
		digest := sha256.Sum256(payload)
		sig, err = k.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return "", HSMError(err, "VICAL signer key")
		}
		return id, nil
	})
	return sig, err
}
