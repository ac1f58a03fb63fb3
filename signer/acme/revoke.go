package acme

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// revocationReasons are the RFC 5280 codes a subscriber may give, by the
// PCA family's names.
var revocationReasons = map[int]string{0: "UNSPECIFIED", 1: "KEY_COMPROMISE", 3: "AFFILIATION_CHANGED",
	4: "SUPERSEDED", 5: "CESSATION_OF_OPERATION", 9: "PRIVILEGE_WITHDRAWN"}

// Revoke revokes a certificate, signed by the account that ordered it or
// by the certificate's own key (ACME_CERTIFICATE_REVOKE).
func (s *Service) Revoke(ctx context.Context, r Request) (*Answer, error) {
	d, err := s.directoryOf(ctx, r.Dir)
	if err != nil {
		return nil, err
	}
	req, err := s.verify(ctx, d, r, false, true)
	if err != nil {
		return nil, err
	}
	if req.acctRec != nil {
		ctx = withAccount(ctx, req.acctRec.ID)
	}
	op := s.start(ctx, d, "ACME_CERTIFICATE_REVOKE")
	id, err := s.revoke(ctx, d, req)
	return &Answer{}, op.Done(id, err)
}

func (s *Service) revoke(ctx context.Context, d *directory, req *signed) (string, error) {
	var p struct {
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
	if err := req.decode(&p); err != nil {
		return "", err
	}
	reason := 0
	if p.Reason != nil {
		reason = *p.Reason
	}
	name, ok := revocationReasons[reason]
	if !ok {
		return "", problem(ReasonBadRevocationReason, "reason must be 0, 1, 3, 4, 5 or 9")
	}
	der, err := base64.RawURLEncoding.DecodeString(p.Certificate)
	if err != nil {
		return "", problem(ReasonMalformed, "certificate must be base64url DER")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", problem(ReasonMalformed, "the certificate cannot be read")
	}
	rec, err := s.store.GetByUnique(ctx, RecordCert, d.Tenant, serialKey(cert.SerialNumber.Text(16)))
	if errors.Is(err, store.ErrNotFound) {
		return "", problem(ReasonUnauthorized, "this directory issued no such certificate")
	}
	if err != nil {
		return "", signer.StoreErr(err, "certificate")
	}
	_, c, err := getJSON[issued](ctx, s.store, RecordCert, d.Tenant, rec.ID, "certificate")
	if err != nil {
		return "", err
	}
	if c.Dir != d.ID || !bytes.Equal(c.DER, der) {
		return "", problem(ReasonUnauthorized, "this directory issued no such certificate")
	}
	switch {
	case req.acctRec != nil:
		if c.Account != req.acctRec.ID {
			return rec.ID, problem(ReasonUnauthorized, "the certificate was ordered by another account")
		}
	case !encoding.PublicKeysEqual(cert.PublicKey, req.jwk.Key):
		return rec.ID, problem(ReasonUnauthorized, "the JWS is signed neither by the ordering account nor by the certificate's key")
	}
	status, _, err := s.issuer.CertificateStatus(ctx, d.Tenant, c.PCAID)
	if err != nil {
		return rec.ID, err
	}
	if status == "REVOKED" {
		return rec.ID, problem(ReasonAlreadyRevoked, "the certificate is already revoked")
	}
	if err := s.issuer.RevokeCertificate(ctx, d.Tenant, c.PCAID, name); err != nil {
		if signer.KindOf(err) == signer.KindWrongState {
			return rec.ID, problem(ReasonAlreadyRevoked, signer.AsError(err).Msg)
		}
		return rec.ID, err
	}
	return rec.ID, nil
}

// The renewal information of RFC 9773: a certificate is named by its
// authority key identifier and serial number.

// certByARIID finds a certificate of the directory by its ARI id.
func (s *Service) certByARIID(ctx context.Context, d *directory, ariID string) (*store.Record, *issued, *x509.Certificate, error) {
	bad := problem(ReasonMalformed, "the certificate id must be base64url(authority key id).base64url(serial)")
	aki, ser, ok := strings.Cut(ariID, ".")
	if !ok {
		return nil, nil, nil, bad
	}
	akiB, err1 := base64.RawURLEncoding.DecodeString(aki)
	serB, err2 := base64.RawURLEncoding.DecodeString(ser)
	if err1 != nil || err2 != nil || len(serB) == 0 {
		return nil, nil, nil, bad
	}
	serial := new(big.Int).SetBytes(serB)
	rec, err := s.store.GetByUnique(ctx, RecordCert, d.Tenant, serialKey(serial.Text(16)))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil, &signer.Error{Kind: signer.KindNotFound, Reason: ReasonMalformed, Msg: "no such certificate"}
	}
	if err != nil {
		return nil, nil, nil, signer.StoreErr(err, "certificate")
	}
	_, c, err := getJSON[issued](ctx, s.store, RecordCert, d.Tenant, rec.ID, "certificate")
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return nil, nil, nil, err
	}
	if c.Dir != d.ID || !bytes.Equal(cert.AuthorityKeyId, akiB) {
		return nil, nil, nil, &signer.Error{Kind: signer.KindNotFound, Reason: ReasonMalformed, Msg: "no such certificate"}
	}
	return rec, c, cert, nil
}

// checkReplaces checks an order's replaces: a certificate of the account
// not replaced yet.
func (s *Service) checkReplaces(ctx context.Context, d *directory, acct, ariID string) error {
	_, c, _, err := s.certByARIID(ctx, d, ariID)
	if err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return problem(ReasonMalformed, "replaces names no certificate of this directory")
		}
		return err
	}
	if c.Account != acct {
		return problem(ReasonUnauthorized, "replaces names a certificate of another account")
	}
	if c.Replaced != "" {
		return problem(ReasonAlreadyReplaced, "the certificate was already replaced")
	}
	return nil
}

// markReplaced notes that an order replaced a certificate (best effort:
// the issuance stands either way).
func (s *Service) markReplaced(ctx context.Context, d *directory, ariID, orderID string) {
	rec, _, _, err := s.certByARIID(ctx, d, ariID)
	if err != nil {
		return
	}
	_, _ = update(ctx, s.store, RecordCert, d.Tenant, rec.ID, "certificate", func(_ *store.Record, c *issued) (bool, error) {
		c.Replaced = orderID
		return true, nil
	})
}

// RenewalInfo is the renewalInfo resource (RFC 9773 §4.2).
type RenewalInfo struct {
	SuggestedWindow struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"suggestedWindow"`
	ExplanationURL string `json:"explanationURL,omitempty"`
}

// renewalRetry is how long clients should wait before asking again.
const renewalRetry = 6 * time.Hour

// RenewalInfoOf answers renewalInfo for a certificate id: from two thirds
// of its lifetime to five sixths, or now for a revoked certificate.
func (s *Service) RenewalInfoOf(ctx context.Context, r Request) (*Answer, error) {
	d, err := s.directoryOf(ctx, r.Dir)
	if err != nil {
		return nil, err
	}
	_, c, cert, err := s.certByARIID(ctx, d, r.ID)
	if err != nil {
		return nil, err
	}
	var ri RenewalInfo
	life := cert.NotAfter.Sub(cert.NotBefore)
	ri.SuggestedWindow.Start = cert.NotBefore.Add(life * 2 / 3).UTC()
	ri.SuggestedWindow.End = cert.NotBefore.Add(life * 5 / 6).UTC()
	if status, _, err := s.issuer.CertificateStatus(ctx, d.Tenant, c.PCAID); err == nil && status == "REVOKED" {
		now := s.now().UTC().Truncate(time.Second)
		ri.SuggestedWindow.Start, ri.SuggestedWindow.End = now.Add(-time.Hour), now
	}
	return &Answer{Body: ri, RetryAfter: renewalRetry}, nil
}
