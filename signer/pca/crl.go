package pca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// Revocation and CRLs. A CRL is signed by the write paths that change it
// and by the family's refresher (crl_refresh.go); the public route only
// reads what is stored.

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
	return 0, refused(ReasonBadParameter, "reason", s, "must be one of "+strings.Join(names, ", "))
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

// revocationRecord is the store record of a revocation entry.
func revocationRecord(tenant, issuerID string, rv revocation) (*store.Record, error) {
	data, err := json.Marshal(rv)
	if err != nil {
		return nil, err
	}
	return &store.Record{Kind: RecordRevocation, Tenant: tenant, ID: issuerID + "." + rv.Serial,
		Fields: map[string]string{"issuer_id": issuerID}, Data: data}, nil
}

// addRevocation records that issuerID revoked serial. Recording it twice
// is not an error: a retried revocation keeps the first entry.
func (s *Service) addRevocation(ctx context.Context, tenant, issuerID, serial, subject string, at time.Time, reason int, notAfter int64) error {
	rec, err := revocationRecord(tenant, issuerID, revocation{Serial: serial, Time: at.UnixMilli(), Reason: reason,
		Subject: subject, NotAfter: notAfter})
	if err != nil {
		return err
	}
	if err := s.store.Create(ctx, rec, store.WriteOpts{}); err != nil && !errors.Is(err, store.ErrExists) {
		return signer.StoreErr(err, "revocation")
	}
	return nil
}

// crlRecord is the last CRL a CA signed. Its Number is the CA's CRL
// number: a CRL takes stored+1 and commits it together with the CRL, by a
// version-checked write of this record, so only signed CRLs use numbers.
// A CRL of up to inlineCRLMax bytes is kept here (DER); a larger one is
// named by its SHA-256 (Digest) and kept in a record of its own
// (RecordCRLData, see publishCRL), so that the schedule, the number and
// the check of a cached copy read a few hundred bytes, not megabytes.
type crlRecord struct {
	Number     int64  `json:"number"`
	DER        []byte `json:"der,omitempty"`
	Digest     string `json:"sha256,omitempty"`
	ThisUpdate int64  `json:"this_update"`
	NextUpdate int64  `json:"next_update"`
}

// inlineCRLMax is the largest CRL kept in its crlRecord: about 1,000
// entries. Larger ones are kept apart.
const inlineCRLMax = 64 << 10

// crlData is a large CRL, the record of kind RecordCRLData with the CA's
// id; its fields say its number (fixed width) and digest without
// decoding it. Its data is {"der":"<base64>"}, written and read without
// encoding/json's buffers (megabytes each way).
type crlData struct {
	DER []byte `json:"der"`
}

const crlDataPrefix, crlDataSuffix = `{"der":"`, `"}`

func marshalCRLData(der []byte) []byte {
	out := make([]byte, 0, len(crlDataPrefix)+base64.StdEncoding.EncodedLen(len(der))+len(crlDataSuffix))
	out = append(out, crlDataPrefix...)
	out = base64.StdEncoding.AppendEncode(out, der)
	return append(out, crlDataSuffix...)
}

func unmarshalCRLData(data []byte) ([]byte, error) {
	if b, ok := bytes.CutPrefix(data, []byte(crlDataPrefix)); ok {
		if b, ok = bytes.CutSuffix(b, []byte(crlDataSuffix)); ok && bytes.IndexByte(b, '\\') < 0 {
			out := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
			n, err := base64.StdEncoding.Decode(out, b)
			return out[:n], err
		}
	}
	var d crlData // another encoding of the same JSON
	err := json.Unmarshal(data, &d)
	return d.DER, err
}

const (
	crlDataNumberField = "number"
	crlDataDigestField = "sha256"
)

// revocationPage is how many revocation entries one read of a CRL's
// listing takes: each page is a short read (one bolt transaction, one
// Redis pipeline), so a listing of 100,000 entries never holds the store.
const revocationPage = 2000

// crlAttempts bounds the sign-and-commit rounds of one CRL refresh: each
// lost race costs a signature, and the winner's CRL is as new.
const crlAttempts = 16

// noCRLSignMsg says why a CA certificate cannot sign CRLs.
const noCRLSignMsg = "the CA certificate's key usage lacks cRLSign, so it cannot sign CRLs"

// refreshCRL signs a new CRL for the CA if it publishes one, under a
// PCA_CRL_GENERATE event. Callers are authenticated write paths and the
// background refresher (RefreshDueCRLs); a read never signs.
func (s *Service) refreshCRL(ctx context.Context, tenant, caID string) error {
	_, err := s.generateCRL(ctx, tenant, caID, false)
	return err
}

// generateCRL is refreshCRL, and says whether a CRL was stored;
// background (the refresher's rounds) gives up when another writer
// commits a CRL first, since that one is as new.
func (s *Service) generateCRL(ctx context.Context, tenant, caID string, background bool) (bool, error) {
	op := s.core.Start(ctx, tenant, "PCA_CRL_GENERATE")
	signed, err := s.signCRL(ctx, tenant, caID, background)
	return signed, op.Done(caID, err)
}

// crlChanged re-signs the CA's CRL after a change of what it lists (a
// revocation) or of how it is published. The CRL is first marked due in
// the index, so that if signing fails or the process dies before the CRL
// is stored, the background refresher signs it on its next round.
//
// The signature itself goes through the core's BuildCRL: revocations of
// one CA that arrive while its CRL is being built share the next build.
func (s *Service) crlChanged(ctx context.Context, tenant, caID string) error {
	s.core.MarkCRLStale(ctx, RecordIndex, caID)
	return s.core.BuildCRL(ctx, "pca", caID, func(ctx context.Context) error {
		return s.refreshCRL(ctx, tenant, caID)
	})
}

// signCRL signs the CA's next CRL and stores it. The CRL takes the stored
// number + 1 and is committed with a version-checked write of the CRL
// record; when another writer committed first, this CRL is discarded and
// the next one made from a fresh read (its number and entries), so
// numbers are never repeated nor skipped by a failed signature. Every
// revocation entry is written before its CRL is asked for, and a CRL is
// committed only if no other was since its listing was read: the stored
// CRL lists every revocation whose refresh has returned. In the
// background, losing that race ends the refresh instead.
func (s *Service) signCRL(ctx context.Context, tenant, caID string, background bool) (bool, error) {
	for attempt := 0; attempt < crlAttempts; attempt++ {
		listedAt := s.now()
		rec, c, err := s.getCA(ctx, tenant, caID)
		if signer.KindOf(err) == signer.KindNotFound {
			return false, nil // a purged issuer publishes nothing more
		}
		if err != nil {
			return false, err
		}
		if !c.CRL.Enabled || len(c.Cert) == 0 {
			return false, nil
		}
		if _, err := CATransition(CAOpSignCRL, c.effective(s.now())); err != nil {
			return false, nil // a CA on its way out publishes nothing more
		}
		cert, err := c.certificate()
		if err != nil {
			return false, signer.StoreErr(err, "CA certificate")
		}
		issuer, err := issuance.CRLIssuer(cert)
		if err != nil {
			// Only a CA imported before such certificates were refused:
			// what it revokes is recorded, it just cannot publish it.
			s.core.Log().Warn("CA certificate cannot sign CRLs; no CRL signed", "ca", caID)
			return false, nil
		}
		crlRec, old, err := s.loadCRL(ctx, tenant, caID)
		if err != nil {
			return false, err
		}
		// CA records of earlier versions held the last number taken.
		n := max(old.Number, c.CRLNumber) + 1
		revoked, err := s.revocations(ctx, tenant, caID)
		if err != nil {
			return false, err
		}
		key, err := s.core.TimedSigner(ctx, rec.Fields[signer.KeyField], c.KeyAlgorithm, "pca_crl")
		if err != nil {
			return false, err
		}
		now := s.now().UTC().Truncate(time.Second)
		next := now.Add(time.Duration(c.CRL.ValidDays) * pcaDay)
		der, err := issuance.SignCRL(issuer, key, issuance.CRL{Number: n, ThisUpdate: now, NextUpdate: next,
			Revoked: revoked, SignatureAlgorithm: issuance.CRLSignatureAlgorithm(c.KeyAlgorithm, c.SignatureAlgorithm)})
		if err != nil {
			return false, signer.HSMError(err, "CA key")
		}
		cr := &crlRecord{Number: n, ThisUpdate: now.UnixMilli(), NextUpdate: next.UnixMilli()}
		if len(der) <= inlineCRLMax {
			cr.DER = der
		} else {
			cr.Digest = crlDigest(der)
		}
		err = s.saveCRL(ctx, crlRec, tenant, caID, cr)
		if errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists) {
			if background {
				return false, nil // another replica or a write path refreshed it
			}
			signer.Backoff(attempt)
			continue
		}
		if err != nil {
			return false, signer.StoreErr(err, "CRL")
		}
		if cr.DER == nil {
			// Committed: the number is taken. Until the CRL itself is
			// stored, readers serve the one before; if storing fails the
			// CRL stays due and the refresher signs the next.
			if err := s.publishCRL(ctx, tenant, caID, n, cr.Digest, der); err != nil {
				return false, err
			}
		}
		// Re-signed when half its validity has passed.
		s.core.CRLStored(ctx, RecordIndex, caID, listedAt, now.Add(next.Sub(now)/2))
		return true, nil
	}
	return false, &signer.Error{Kind: signer.KindConflict, Reason: ReasonBusy, Msg: "the CRL is being replaced concurrently; retry"}
}

// revocations lists the CA's revocation entries in the order they were
// written, revocationPage at a time from the issuer_id index.
func (s *Service) revocations(ctx context.Context, tenant, caID string) ([]issuance.Revoked, error) {
	var out []issuance.Revoked
	cursor := ""
	for {
		page, err := s.store.List(ctx, store.Query{Kind: RecordRevocation, Tenant: tenant, Limit: revocationPage,
			Cursor: cursor, Filters: []store.Filter{{Field: "issuer_id", Value: caID}}})
		if err != nil {
			return nil, signer.StoreErr(err, "revocation")
		}
		if out == nil {
			out = make([]issuance.Revoked, 0, len(page.Records))
		}
		for _, r := range page.Records {
			var rv struct { // what a CRL entry needs of a revocation
				Serial string `json:"serial"`
				Time   int64  `json:"time"`
				Reason int    `json:"reason"`
			}
			if err := json.Unmarshal(r.Data, &rv); err != nil {
				return nil, signer.StoreErr(err, "revocation")
			}
			out = append(out, issuance.Revoked{SerialHex: rv.Serial, Time: time.UnixMilli(rv.Time), Reason: rv.Reason})
		}
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// loadCRL returns the CA's CRL record (nil when none yet) and its content
// (zero when none).
func (s *Service) loadCRL(ctx context.Context, tenant, caID string) (*store.Record, *crlRecord, error) {
	rec, err := s.store.Get(ctx, RecordCRL, tenant, caID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &crlRecord{}, nil
	}
	if err != nil {
		return nil, nil, signer.StoreErr(err, "CRL")
	}
	var cr crlRecord
	if err := json.Unmarshal(rec.Data, &cr); err != nil {
		return nil, nil, signer.StoreErr(err, "CRL")
	}
	return rec, &cr, nil
}

// crlDataVersion is what a service remembers of the CRL data record it
// last stored for a CA.
type crlDataVersion struct {
	version uint64
	number  int64
}

func crlDigest(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// publishCRL stores a large CRL whose number n was just committed, unless
// a CRL with a higher number is stored already (another writer committed
// and stored a later one meanwhile): the stored CRL only moves forward.
func (s *Service) publishCRL(ctx context.Context, tenant, caID string, n int64, digest string, der []byte) error {
	data := marshalCRLData(der)
	fields := map[string]string{crlDataNumberField: fmt.Sprintf("%019d", n), crlDataDigestField: digest}
	if v, ok := s.crlDataVersions.Load(caID); ok {
		last := v.(crlDataVersion)
		if last.number >= n {
			return nil // this service stored that one or a later one: the record is at least as new
		}
		// The record as this service last stored it: the update fails if
		// anyone wrote it since, and then it is read.
		rec := &store.Record{Kind: RecordCRLData, Tenant: tenant, ID: caID, Fields: fields, Data: data, Version: last.version}
		if err := s.store.Update(ctx, rec, store.WriteOpts{}); err == nil {
			s.crlDataVersions.Store(caID, crlDataVersion{version: rec.Version, number: n})
			return nil
		}
		s.crlDataVersions.Delete(caID)
	}
	for attempt := 0; attempt < crlAttempts; attempt++ {
		rec, err := s.store.Get(ctx, RecordCRLData, tenant, caID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			rec = &store.Record{Kind: RecordCRLData, Tenant: tenant, ID: caID, Fields: fields, Data: data}
			err = s.store.Create(ctx, rec, store.WriteOpts{})
		case err != nil:
			return signer.StoreErr(err, "CRL")
		case rec.Fields[crlDataNumberField] >= fields[crlDataNumberField]:
			return nil
		default:
			rec.Fields, rec.Data = fields, data
			err = s.store.Update(ctx, rec, store.WriteOpts{})
		}
		if errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists) {
			signer.Backoff(attempt)
			continue
		}
		if err != nil {
			return signer.StoreErr(err, "CRL")
		}
		s.crlDataVersions.Store(caID, crlDataVersion{version: rec.Version, number: n})
		return nil
	}
	return &signer.Error{Kind: signer.KindConflict, Reason: ReasonBusy, Msg: "the CRL is being replaced concurrently; retry"}
}

// storedCRL is the DER of the CRL cr describes: kept in cr, or in the
// CA's CRL data record, through the service's copy of the last one read
// when its digest is the one cr names. The data record may hold the
// CRL before cr's (cr's is being stored, or storing it failed): that
// complete, signed CRL is served until then.
func (s *Service) storedCRL(ctx context.Context, tenant, caID string, cr *crlRecord) ([]byte, error) {
	if cr.DER != nil {
		return cr.DER, nil
	}
	if der, ok := s.crlCopies.get(caID, cr.Digest); ok {
		return der, nil
	}
	rec, err := s.store.Get(ctx, RecordCRLData, tenant, caID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, signer.StoreErr(err, "CRL")
	}
	der, err := unmarshalCRLData(rec.Data)
	if err != nil {
		return nil, signer.StoreErr(err, "CRL")
	}
	s.crlCopies.put(caID, rec.Fields[crlDataDigestField], der)
	return der, nil
}

// crlCopies keeps the last large CRL read of each CA, by digest, so that
// serving one reads its small crlRecord and not megabytes each time; at
// most crlCopiesMax bytes in all (past it the copies start over).
type crlCopies struct {
	mu    sync.Mutex
	m     map[string]crlCopy
	bytes int
}

type crlCopy struct {
	digest string
	der    []byte
}

const crlCopiesMax = 64 << 20

func (c *crlCopies) get(caID, digest string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp, ok := c.m[caID]
	if !ok || digest == "" || cp.digest != digest {
		return nil, false
	}
	return cp.der, true
}

func (c *crlCopies) put(caID, digest string, der []byte) {
	if digest == "" || len(der) > crlCopiesMax {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[caID]; ok {
		c.bytes -= len(old.der)
	}
	if c.m == nil || c.bytes+len(der) > crlCopiesMax {
		c.m, c.bytes = map[string]crlCopy{}, 0
	}
	c.m[caID] = crlCopy{digest: digest, der: der}
	c.bytes += len(der)
}

// saveCRL creates the CRL record or replaces rec, version-checked.
func (s *Service) saveCRL(ctx context.Context, rec *store.Record, tenant, caID string, cr *crlRecord) error {
	data, err := json.Marshal(cr)
	if err != nil {
		return err
	}
	if rec == nil {
		return s.store.Create(ctx, &store.Record{Kind: RecordCRL, Tenant: tenant, ID: caID, Data: data}, store.WriteOpts{})
	}
	rec.Data = data
	return s.store.Update(ctx, rec, store.WriteOpts{})
}

// SetCRL enables (with validDays) or disables a CA's CRL: ConfigureCRL
// with no names.
func (s *Service) SetCRL(ctx context.Context, tenant, id string, enabled bool, validDays int) error {
	return s.ConfigureCRL(ctx, tenant, id, CRLConfiguration{Enabled: enabled, ValidDays: validDays})
}

// ConfigureCRL enables or disables a CA's CRL. Enabling sets valid_days,
// crl_name and obs_bucket_name as given (an empty name: the default), and
// signs a first CRL at once when the CA has a certificate, which must be
// able to sign CRLs. Disabling keeps the rest of the configuration.
func (s *Service) ConfigureCRL(ctx context.Context, tenant, id string, cfg CRLConfiguration) error {
	name := "PCA_CA_CRL_DISABLE"
	if cfg.Enabled {
		name = "PCA_CA_CRL_ENABLE"
	}
	op := s.core.Start(ctx, tenant, name)
	return op.Done(id, s.setCRL(ctx, tenant, id, cfg))
}

func (s *Service) setCRL(ctx context.Context, tenant, id string, cfg CRLConfiguration) error {
	enabled := cfg.Enabled
	if enabled && (cfg.ValidDays < minCRLDays || cfg.ValidDays > maxCRLDays) {
		return refused(ReasonBadParameter, "valid_days", cfg.ValidDays, "must be from 7 to 30")
	}
	if enabled {
		if err := checkCRLNames("", cfg.CRLName, cfg.OBSBucketName); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		rec, c, _, err := s.transit(ctx, tenant, id, CAOpCRL)
		if err != nil {
			return err
		}
		if enabled && len(c.Cert) > 0 {
			cert, err := c.certificate()
			if err != nil {
				return signer.StoreErr(err, "CA certificate")
			}
			if _, err := issuance.CRLIssuer(cert); err != nil {
				return &signer.Error{Kind: signer.KindInvalid, Reason: ReasonNoCRLSign,
					Msg: noCRLSignMsg + "; CRLs cannot be enabled for this CA"}
			}
		}
		c.CRL.Enabled = enabled
		if enabled {
			c.CRL.ValidDays, c.CRL.CRLName, c.CRL.OBSBucketName = cfg.ValidDays, cfg.CRLName, cfg.OBSBucketName
		}
		retry, err := s.saveTransit(ctx, rec, c, id, attempt)
		if err != nil {
			return err
		}
		if retry {
			continue
		}
		if !enabled || len(c.Cert) == 0 {
			return nil
		}
		return s.crlChanged(ctx, tenant, id)
	}
}

// PublicCRL serves a CA's current CRL (DER) to anyone: relying parties
// fetch it without a credential. It only reads: no signature, no event
// record, no store write, whatever the caller does. CRLs are signed by
// the write paths that change them and re-signed by the background
// refresher (RefreshDueCRLs) before their next update; one found past it
// is still served, for relying parties to judge, and reported once to the
// operator.
func (s *Service) PublicCRL(ctx context.Context, caID string) ([]byte, error) {
	tenant, c, err := s.publicCA(ctx, caID)
	if err != nil {
		return nil, err
	}
	if !c.CRL.Enabled {
		return nil, &signer.Error{Kind: signer.KindNotFound, Reason: ReasonCRLDisabled, Msg: "CA " + caID + " publishes no CRL"}
	}
	rec, cr, err := s.loadCRL(ctx, tenant, caID)
	if err != nil {
		return nil, err
	}
	var der []byte
	if rec != nil {
		if der, err = s.storedCRL(ctx, tenant, caID, cr); err != nil {
			return nil, err
		}
	}
	if len(der) == 0 {
		return nil, &signer.Error{Kind: signer.KindNotFound, Reason: ReasonCRLDisabled, Msg: "CA " + caID + " has no CRL yet"}
	}
	if s.now().UnixMilli() >= cr.NextUpdate {
		s.core.CRLOverdue("pca", caID, cr.NextUpdate)
	}
	return der, nil
}
