package signer

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"time"

	"github.com/hsmca/hsmca/store"
)

// Revocation reasons by the family's names, with their RFC 5280 codes.
var revocationReasons = []struct {
	name string
	code int
}{
	{"UNSPECIFIED", 0},
	{"KEY_COMPROMISE", 1},
	{"CERTIFICATE_AUTHORITY_COMPROMISE", 2},
	{"AFFILIATION_CHANGED", 3},
	{"SUPERSEDED", 4},
	{"CESSATION_OF_OPERATION", 5},
	{"CERTIFICATE_HOLD", 6},
	{"PRIVILEGE_WITHDRAWN", 9},
	{"ATTRIBUTE_AUTHORITY_COMPROMISE", 10},
}

// parseReason maps a reason name (empty: UNSPECIFIED) to its CRL code.
func parseReason(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	names := make([]string, 0, len(revocationReasons))
	for _, r := range revocationReasons {
		if r.name == s {
			return r.code, nil
		}
		names = append(names, r.name)
	}
	return 0, pcaInvalid(CodeBadParameter, "reason", s, "must be one of "+strings.Join(names, ", "))
}

func reasonName(code int) string {
	for _, r := range revocationReasons {
		if r.code == code {
			return r.name
		}
	}
	return "UNSPECIFIED"
}

// revocation is one entry of an issuer's CRL. Entries are records of
// their own, so deleting a revoked certificate never takes it off the CRL.
type revocation struct {
	Serial   string `json:"serial"` // hex
	Time     int64  `json:"time"`   // epoch ms
	Reason   int    `json:"reason"`
	Subject  string `json:"subject"` // certificate or CA id
	NotAfter int64  `json:"not_after"`
}

// addRevocation records that issuerID revoked serial. Recording it twice
// is not an error: a retried revocation keeps the first entry.
func (e *Engine) addRevocation(ctx context.Context, tenant, issuerID, serial, subject string, at time.Time, reason int, notAfter int64) error {
	data, _ := json.Marshal(revocation{Serial: serial, Time: at.UnixMilli(), Reason: reason, Subject: subject, NotAfter: notAfter})
	rec := &store.Record{Kind: kindPCARevocation, Tenant: tenant, ID: issuerID + "." + serial,
		Fields: map[string]string{"issuer_id": issuerID}, Data: data}
	if err := e.store.Create(ctx, rec, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrExists) {
		return storeErr(err, "revocation")
	}
	return nil
}

// crlRecord is the last CRL a CA signed.
type crlRecord struct {
	Number     int64  `json:"number"`
	DER        []byte `json:"der"`
	ThisUpdate int64  `json:"this_update"`
	NextUpdate int64  `json:"next_update"`
}

// refreshCRL signs a new CRL for the CA if it publishes one. The number is
// taken with a version-checked update of the CA record before signing, so
// numbers never repeat; since every revocation entry is written before
// its CRL's number is taken, the CRL with the highest number lists every
// revocation whose CRL was asked for before it, and only a higher number
// replaces the stored one.
func (e *Engine) refreshCRL(ctx context.Context, tenant, caID string) error {
	return e.run(ctx, tenant, "PCA_CRL_GENERATE", func() (string, error) {
		var (
			rec *store.Record
			c   *caRecord
			n   int64
		)
		for attempt := 0; ; attempt++ {
			var err error
			rec, c, err = e.getCA(ctx, tenant, caID)
			if KindOf(err) == KindNotFound {
				return caID, nil // a purged issuer publishes nothing more
			}
			if err != nil {
				return caID, err
			}
			if !c.CRL.Enabled {
				return caID, nil
			}
			if _, err := CATransition(CAOpSignCRL, c.effective(e.now())); err != nil {
				return caID, nil // a CA on its way out publishes nothing more
			}
			c.CRLNumber++
			n = c.CRLNumber
			err = e.putCA(ctx, rec, c)
			if err == nil {
				break
			}
			if errors.Is(err, store.ErrNotFound) {
				return caID, nil // purged since it was read
			}
			if !errors.Is(err, store.ErrVersionConflict) || attempt >= 50 {
				return caID, storeErr(err, "CA")
			}
			backoff(attempt)
		}
		page, err := e.store.List(ctx, store.Query{Kind: kindPCARevocation, Tenant: tenant,
			Filters: []store.Filter{{Field: "issuer_id", Value: caID}}})
		if err != nil {
			return caID, storeErr(err, "revocation")
		}
		entries := make([]x509.RevocationListEntry, 0, len(page.Records))
		for _, r := range page.Records {
			var rv revocation
			if err := json.Unmarshal(r.Data, &rv); err != nil {
				return caID, storeErr(err, "revocation")
			}
			serial, ok := new(big.Int).SetString(rv.Serial, 16)
			if !ok {
				continue
			}
			entries = append(entries, x509.RevocationListEntry{SerialNumber: serial,
				RevocationTime: time.UnixMilli(rv.Time).UTC(), ReasonCode: rv.Reason})
		}
		cert, err := c.certificate()
		if err != nil {
			return caID, storeErr(err, "CA certificate")
		}
		s, err := e.observed(ctx, rec.Fields[KeyField], c.KeyAlgorithm, "pca_crl")
		if err != nil {
			return caID, err
		}
		now := e.now().UTC().Truncate(time.Second)
		next := now.Add(time.Duration(c.CRL.ValidDays) * pcaDay)
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(n), ThisUpdate: now, NextUpdate: next,
			RevokedCertificateEntries: entries,
			SignatureAlgorithm:        x509SigAlg(c.KeyAlgorithm, c.SignatureAlgorithm),
		}, cert, s)
		if err != nil {
			return caID, HSMError(err, "CA key")
		}
		return caID, e.storeCRL(ctx, tenant, caID, &crlRecord{Number: n, DER: der,
			ThisUpdate: now.UnixMilli(), NextUpdate: next.UnixMilli()})
	})
}

// storeCRL keeps cr unless a CRL with a higher number is already stored.
func (e *Engine) storeCRL(ctx context.Context, tenant, caID string, cr *crlRecord) error {
	data, err := json.Marshal(cr)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 50; attempt++ {
		rec, err := e.store.Get(ctx, kindPCACRL, tenant, caID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			err = e.store.Create(ctx, &store.Record{Kind: kindPCACRL, Tenant: tenant, ID: caID, Data: data}, store.WriteOpts{})
			if errors.Is(err, store.ErrExists) {
				continue
			}
			return storeErr(err, "CRL")
		case err != nil:
			return storeErr(err, "CRL")
		}
		var old crlRecord
		if json.Unmarshal(rec.Data, &old) == nil && old.Number >= cr.Number {
			return nil
		}
		rec.Data = data
		err = e.store.Update(ctx, rec, store.WriteOpts{})
		if errors.Is(err, store.ErrVersionConflict) {
			backoff(attempt)
			continue
		}
		return storeErr(err, "CRL")
	}
	return &Error{Kind: KindConflict, Code: CodeBusy, Msg: "the CRL is being replaced concurrently; retry"}
}

// SetCRL enables (with validDays) or disables a CA's CRL. Enabling signs a
// first CRL at once when the CA has a certificate.
func (e *Engine) SetCRL(ctx context.Context, tenant, id string, enabled bool, validDays int) error {
	name := "PCA_CA_CRL_DISABLE"
	if enabled {
		name = "PCA_CA_CRL_ENABLE"
	}
	return e.run(ctx, tenant, name, func() (string, error) {
		if enabled && (validDays < minCRLDays || validDays > maxCRLDays) {
			return id, pcaInvalid(CodeBadParameter, "valid_days", validDays, "must be from 7 to 30")
		}
		_, c, err := e.transitCA(ctx, tenant, id, CAOpCRL, func(_ *store.Record, c *caRecord, _, _ string) error {
			c.CRL.Enabled = enabled
			if enabled {
				c.CRL.ValidDays = validDays
			}
			return nil
		})
		if err != nil || !enabled || len(c.Cert) == 0 {
			return id, err
		}
		return id, e.refreshCRL(ctx, tenant, id)
	})
}

// PublicCRL serves a CA's current CRL (DER) to anyone: relying parties
// fetch it without a credential. A CRL past its next update is replaced
// on the spot. Fetches write no event record, so that unauthenticated
// callers cannot grow a tenant's audit chain.
func (e *Engine) PublicCRL(ctx context.Context, caID string) ([]byte, error) {
	idx, err := e.store.Get(ctx, kindPCAIndex, store.PlatformTenant, caID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return nil, pcaNotFound("CA", caID)
		}
		return nil, storeErr(err, "CA")
	}
	tenant := idx.Fields["tenant"]
	_, c, err := e.getCA(ctx, tenant, caID)
	if err != nil {
		return nil, err
	}
	if c.Status == CAPending || c.Status == CADeleted {
		return nil, pcaNotFound("CA", caID)
	}
	if !c.CRL.Enabled {
		return nil, &Error{Kind: KindNotFound, Code: CodeCRLDisabled, Msg: "CA " + caID + " publishes no CRL"}
	}
	for attempt := 0; attempt < 2; attempt++ {
		rec, err := e.store.Get(ctx, kindPCACRL, tenant, caID)
		if err == nil {
			var cr crlRecord
			if err := json.Unmarshal(rec.Data, &cr); err != nil {
				return nil, storeErr(err, "CRL")
			}
			if e.now().UnixMilli() < cr.NextUpdate || attempt > 0 {
				return cr.DER, nil
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, storeErr(err, "CRL")
		} else if attempt > 0 {
			break
		}
		if err := e.refreshCRL(ctx, tenant, caID); err != nil {
			return nil, err
		}
	}
	return nil, &Error{Kind: KindNotFound, Code: CodeCRLDisabled, Msg: "CA " + caID + " has no CRL yet"}
}
