package pca

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/signer/ocsp"
	"github.com/hsmca/hsmca/store"
)

// OCSP of the family's CAs (CCM UpdateOcspSwitch): the switch, what the
// responder (signer/ocsp) asks of a CA and of a serial number, and the
// hooks that keep its stored answers true (revocations, purges).

// Option configures a Service.
type Option func(*Service)

// OCSP sets what the responder is told by the daemon (the signing mode of
// CAs whose OCSP is switched on from then on).
func OCSP(cfg ocsp.Config) Option { return func(s *Service) { s.ocspCfg = cfg } }

// OCSPPublisher is the family's side of the OCSP responder.
func (s *Service) OCSPPublisher() *ocsp.Publisher { return s.ocsp }

// SetOCSP switches a CA's OCSP on or off (CCM UpdateOcspSwitch), under
// PCA_CA_OCSP_ENABLE or PCA_CA_OCSP_DISABLE. Switching on needs an
// ACTIVED or DISABLED CA, as the public service asks, and readies the
// responder first (its delegated certificate, signed by the CA key):
// when that fails the switch stays off. Switching off drops the CA's
// stored answers; requests about its certificates are then answered
// unauthorized. Switching to the state a CA is in changes nothing (on
// again renews a responder certificate that is due).
func (s *Service) SetOCSP(ctx context.Context, tenant, id string, on bool) error {
	name := "PCA_CA_OCSP_DISABLE"
	if on {
		name = "PCA_CA_OCSP_ENABLE"
	}
	op := s.core.Start(ctx, tenant, name)
	return op.Done(id, s.setOCSP(ctx, tenant, id, on))
}

func (s *Service) setOCSP(ctx context.Context, tenant, id string, on bool) error {
	opName := CAOpOCSPOff
	if on {
		opName = CAOpOCSPOn
	}
	for attempt := 0; ; attempt++ {
		rec, c, _, err := s.transit(ctx, tenant, id, opName)
		if err != nil {
			return err
		}
		if on {
			is, err := s.ocspIssuer(rec, c)
			if err != nil {
				return err
			}
			is.Enabled = true
			if err := s.ocsp.Enable(ctx, is); err != nil {
				return err
			}
		}
		if c.OCSP == on {
			return nil
		}
		c.OCSP = on
		retry, err := s.saveTransit(ctx, rec, c, id, attempt)
		if err != nil {
			return err
		}
		if retry {
			continue
		}
		if !on {
			if err := s.ocsp.Disable(ctx, id); err != nil {
				s.core.Log().Warn("stored OCSP answers of a CA switched off not dropped", "ca", id, "err", err)
			}
		}
		return nil
	}
}

// ocspIssuer is what the responder needs of a CA record.
func (s *Service) ocspIssuer(rec *store.Record, c *caRecord) (*ocsp.Issuer, error) {
	is := &ocsp.Issuer{Tenant: rec.Tenant, ID: rec.ID, Enabled: c.OCSP, KeyID: rec.Fields[signer.KeyField],
		KeyAlgorithm: c.KeyAlgorithm, Hash: c.SignatureAlgorithm}
	if len(c.Cert) > 0 {
		cert, err := s.issuerCerts.Get(c.Cert)
		if err != nil {
			return nil, signer.StoreErr(err, "CA certificate")
		}
		is.Cert = cert
	}
	_, err := CATransition(CAOpSignCRL, c.effective(s.now()))
	is.Answering = err == nil && is.Cert != nil
	return is, nil
}

// OCSPIssuer is what the responder asks of a CA (ocsp.Source).
func (s *Service) OCSPIssuer(ctx context.Context, tenant, id string) (*ocsp.Issuer, error) {
	rec, c, err := getRecordVia(ctx, s, RecordCA, "CA", tenant, id, s.issuers.Get)
	if err != nil {
		return nil, err
	}
	return s.ocspIssuer(rec, c)
}

// OCSPStatus says what a CA says of serial (ocsp.Source): revoked when it
// is on the CA's revocation list (even once its record is deleted), good
// for a certificate or subordinate CA it issued, unknown otherwise.
func (s *Service) OCSPStatus(ctx context.Context, tenant, caID string, serial *big.Int) (ocsp.Status, error) {
	hexSerial := encoding.SerialHex(serial)
	r, err := s.store.Get(ctx, RecordRevocation, tenant, caID+"."+hexSerial)
	switch {
	case err == nil:
		var rv revocation
		if err := json.Unmarshal(r.Data, &rv); err != nil {
			return ocsp.Status{}, signer.StoreErr(err, "revocation")
		}
		return ocsp.Status{State: issuance.OCSPRevoked, RevokedAt: time.UnixMilli(rv.Time), Reason: rv.Reason}, nil
	case !errors.Is(err, store.ErrNotFound):
		return ocsp.Status{}, signer.StoreErr(err, "revocation")
	}
	for _, kind := range []string{RecordCertificate, RecordCA} {
		_, err := s.store.GetByUnique(ctx, kind, tenant, serialKey(caID, hexSerial))
		if err == nil {
			return ocsp.Status{State: issuance.OCSPGood}, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return ocsp.Status{}, signer.StoreErr(err, "certificate")
		}
	}
	return ocsp.Status{State: issuance.OCSPUnknown}, nil
}

// ocspRevoked tells the responder that issuerID revoked serialHex (the
// revocation entry is written): its stored answers are re-signed at once.
func (s *Service) ocspRevoked(ctx context.Context, tenant, issuerID, serialHex string) error {
	serial, ok := new(big.Int).SetString(serialHex, 16)
	if !ok {
		return nil
	}
	return s.ocsp.Revoked(ctx, tenant, issuerID, serial)
}
