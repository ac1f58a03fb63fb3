package dts

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"strconv"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/signer/ocsp"
	"github.com/hsmca/hsmca/store"
)

// OCSP of managed DTS roots: hsmca's setting on the root (ocspEnabled in
// the create and update bodies and in the root object, which MATTR's API
// does not have), what the responder (signer/ocsp) asks of a root and of
// a serial number, and the hooks that keep its stored answers true.

// OCSP sets what the responder is told by the daemon (the signing mode of
// roots whose OCSP is switched on from then on).
func OCSP(cfg ocsp.Config) Option { return func(s *Service) { s.ocspCfg = cfg } }

// OCSPPublisher is the family's side of the OCSP responder.
func (s *Service) OCSPPublisher() *ocsp.Publisher { return s.ocsp }

// noOCSPUnmanaged refuses OCSP on an uploaded root: its key is not here.
const noOCSPUnmanaged = "an uploaded DTS root CA certificate has no key here to sign OCSP answers"

// rootIssuer is what the responder needs of a root.
func (s *Service) rootIssuer(tenant, keyID string, r *dtsRoot) (*ocsp.Issuer, error) {
	is := &ocsp.Issuer{Tenant: tenant, ID: r.ID, Enabled: r.OCSP, Answering: r.Managed, KeyID: keyID,
		KeyAlgorithm: r.KeyAlgorithm, Hash: issuance.SHA256}
	cert, err := s.rootCerts.Get(r.CertDER)
	if err != nil {
		return nil, signer.StoreErr(err, "DTS root CA certificate")
	}
	is.Cert = cert
	return is, nil
}

// OCSPIssuer is what the responder asks of a root (ocsp.Source). A
// managed root answers for the certificates it issued whether active or
// not, as it keeps publishing its CRL.
func (s *Service) OCSPIssuer(ctx context.Context, tenant, id string) (*ocsp.Issuer, error) {
	rec, r, err := s.getRoot(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	return s.rootIssuer(tenant, rec.Fields[signer.KeyField], r)
}

// OCSPStatus says what a root says of serial (ocsp.Source): revoked when
// its CRL lists it (a deleted signer or intermediate), good for the
// certificate of a signer the root issued (not one under an
// intermediate, which the intermediate issued) or of one of its
// intermediate CAs, unknown otherwise.
func (s *Service) OCSPStatus(ctx context.Context, tenant, id string, serial *big.Int) (ocsp.Status, error) {
	hexSerial := encoding.SerialHex(serial)
	_, st, err := s.loadCRL(ctx, tenant, id)
	if err != nil {
		return ocsp.Status{}, err
	}
	for _, r := range st.Revoked {
		if r.Serial == hexSerial {
			return ocsp.Status{State: issuance.OCSPRevoked, RevokedAt: r.Time, Reason: crlReasonCessation}, nil
		}
	}
	// A tenant has at most five signers.
	page, err := s.core.Store().List(ctx, store.Query{Kind: RecordSigner, Tenant: tenant,
		Filters: []store.Filter{{Field: "ca_id", Value: id}}})
	if err != nil {
		return ocsp.Status{}, signer.StoreErr(err, "VICAL signer")
	}
	for _, rec := range page.Records {
		var v dtsSigner
		if json.Unmarshal(rec.Data, &v) != nil || v.CertDER == nil || v.IntermediateID != "" {
			continue
		}
		if c, err := x509.ParseCertificate(v.CertDER); err == nil && c.SerialNumber.Cmp(serial) == 0 {
			return ocsp.Status{State: issuance.OCSPGood}, nil
		}
	}
	// The root's intermediates (a handful; the quota bounds them).
	page, err = s.core.Store().List(ctx, store.Query{Kind: RecordIntermediate, Tenant: tenant,
		Filters: []store.Filter{{Field: "ca_id", Value: id}}})
	if err != nil {
		return ocsp.Status{}, signer.StoreErr(err, "DTS intermediate CA certificate")
	}
	for _, rec := range page.Records {
		var m dtsIntermediate
		if json.Unmarshal(rec.Data, &m) != nil || m.CertDER == nil {
			continue
		}
		if c, err := x509.ParseCertificate(m.CertDER); err == nil && c.SerialNumber.Cmp(serial) == 0 {
			return ocsp.Status{State: issuance.OCSPGood}, nil
		}
	}
	return ocsp.Status{State: issuance.OCSPUnknown}, nil
}

// Events of the OCSP setting (hsmca's own, in the family's style).
const (
	evOCSPEnable  = "ECOSYSTEM_DTS_CA_CERTIFICATE_OCSP_ENABLE"
	evOCSPDisable = "ECOSYSTEM_DTS_CA_CERTIFICATE_OCSP_DISABLE"
)

func ocspEvent(on bool) string {
	if on {
		return evOCSPEnable
	}
	return evOCSPDisable
}

// switchRootOCSP switches a root's OCSP on or off under its event.
func (s *Service) switchRootOCSP(ctx context.Context, tenant, id string, on bool) (*dtsRoot, error) {
	op := s.core.Start(ctx, tenant, ocspEvent(on))
	r, err := s.setRootOCSP(ctx, tenant, id, on)
	return r, op.Done(id, err)
}

// enableNewRoot readies the responder of a managed root about to be
// stored with its OCSP on (keyID names its key, in the HSM already).
func (s *Service) enableNewRoot(ctx context.Context, tenant, keyID string, r *dtsRoot) error {
	op := s.core.Start(ctx, tenant, evOCSPEnable)
	r.OCSP = true
	is, err := s.rootIssuer(tenant, keyID, r)
	if err == nil {
		err = s.ocsp.Enable(ctx, is)
	}
	if err != nil {
		r.OCSP = false
		s.purgeOCSP(r.ID)
	}
	return op.Done(r.ID, err)
}

// purgeOCSP removes what the responder keeps of a root that was not
// stored after all.
func (s *Service) purgeOCSP(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.ocsp.Purge(ctx, id); err != nil {
		s.core.Log().Warn("OCSP records of a DTS root not stored left behind", "id", id, "err", err)
	}
}

// setRootOCSP switches a root's OCSP on or off. On readies the responder
// first (its delegated certificate, signed by the root key), so that a
// failure leaves it off.
func (s *Service) setRootOCSP(ctx context.Context, tenant, id string, on bool) (*dtsRoot, error) {
	for attempt := 0; ; attempt++ {
		rec, r, err := s.getRoot(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if on {
			if !r.Managed {
				return nil, signer.Invalid("ocspEnabled", on, noOCSPUnmanaged)
			}
			is, err := s.rootIssuer(tenant, rec.Fields[signer.KeyField], r)
			if err != nil {
				return nil, err
			}
			if err := s.ocsp.Enable(ctx, is); err != nil {
				return nil, err
			}
		}
		if r.OCSP == on {
			return r, nil
		}
		r.OCSP = on
		if rec.Data, err = json.Marshal(r); err != nil {
			return nil, err
		}
		rec.Fields["active"] = strconv.FormatBool(r.Active)
		err = s.core.Store().Update(ctx, rec, store.WriteOpts{})
		if errors.Is(err, store.ErrVersionConflict) && attempt < 8 {
			continue
		}
		if err != nil {
			return nil, signer.StoreErr(err, "DTS root CA certificate")
		}
		if !on {
			if err := s.ocsp.Disable(ctx, id); err != nil {
				s.core.Log().Warn("stored OCSP answers of a DTS root switched off not dropped", "id", id, "err", err)
			}
		}
		return r, nil
	}
}
