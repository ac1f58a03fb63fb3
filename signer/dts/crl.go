package dts

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// CRLs of managed DTS roots. Every managed root has one, from its
// creation on: it lists the certificates of VICAL signers the root issued
// and that were deleted since. It is signed in the HSM when the root is
// created and when a signer is deleted, and re-signed by the family's
// background refresher (refreshDueCRLs, its janitor) once crlRefresh has
// passed or a change marked it stale, each time with the next CRL
// number; it is kept in a record beside the root. The public route only
// reads that record. An unmanaged root has no key and so no CRL. The
// refresh times live in the root index entries (signer.CRLDueField).

const (
	crlValidity = 7 * 24 * time.Hour
	crlRefresh  = 24 * time.Hour
	crlAttempts = 16
	// crlReasonCessation is RFC 5280's cessationOfOperation, the reason
	// of every entry: a deleted signer.
	crlReasonCessation = 5
)

type dtsRevoked struct {
	Serial string    `json:"serial"` // hex
	Time   time.Time `json:"time"`
}

type dtsCRLState struct {
	Number     int64        `json:"number"`
	ThisUpdate time.Time    `json:"thisUpdate"`
	NextUpdate time.Time    `json:"nextUpdate"`
	DER        []byte       `json:"der,omitempty"`
	Revoked    []dtsRevoked `json:"revoked,omitempty"`
	Stale      bool         `json:"stale,omitempty"`
}

// RootCRL returns the current DER CRL of a managed root, by root id alone
// (the route is public). It only reads: a CRL past its nextUpdate is
// served as it is (and reported once to the operator), a root whose first
// CRL is not signed yet has none.
func (s *Service) RootCRL(ctx context.Context, id string) ([]byte, error) {
	if checkID("id", id, "path") != nil {
		return nil, rootNotFound(id)
	}
	tenant, err := s.rootTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	_, root, err := s.getRoot(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if !root.Managed {
		return nil, signer.E(signer.KindNotFound, "an unmanaged DTS root CA certificate has no certificate revocation list here").With(ReasonNoCRL)
	}
	return s.storedCRL(ctx, tenant, id, "DTS root CA certificate")
}

// storedCRL returns the stored DER CRL of the managed CA id (a root or an
// intermediate, which what names): it only reads, and reports a CRL past
// its nextUpdate to the operator.
func (s *Service) storedCRL(ctx context.Context, tenant, id, what string) ([]byte, error) {
	_, st, err := s.loadCRL(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if st.DER == nil {
		return nil, signer.E(signer.KindNotFound, "the %s has no certificate revocation list yet", what).With(ReasonNoCRL)
	}
	if !s.core.Now().Before(st.NextUpdate) {
		s.core.CRLOverdue("dts", id, st.NextUpdate.UnixMilli())
	}
	return st.DER, nil
}

// signRootCRL signs a managed root's next CRL and stores it: the CRL
// takes the stored number + 1 and is committed with a version-checked
// write of the CRL record, or discarded and made again from a fresh read
// when another writer (a revocation, another replica) committed first;
// background (the refresher's rounds) gives up on such a conflict. It
// says whether a CRL was stored.
func (s *Service) signRootCRL(ctx context.Context, tenant, id string, background bool) (bool, error) {
	return s.signStoredCRL(ctx, tenant, id, background, kindRootIndex, func() (*crlSigner, error) {
		rec, root, err := s.getRoot(ctx, tenant, id)
		if err != nil || !root.Managed {
			return nil, err
		}
		return &crlSigner{keyID: rec.Fields[signer.KeyField], certDER: root.CertDER, keyAlg: root.KeyAlgorithm, what: "DTS root CA"}, nil
	})
}

// crlSigner is the managed CA whose CRL signStoredCRL signs: its HSM key,
// certificate and key algorithm; what names it in errors.
type crlSigner struct {
	keyID   string
	certDER []byte
	keyAlg  string
	what    string
}

// signStoredCRL is signRootCRL for the CA id, a root or an intermediate
// whose platform index entries are of kind indexKind; ca reads it afresh
// on every attempt, and says nil when it is not managed (it has no CRL).
// A CA not found has no CRL to sign either.
func (s *Service) signStoredCRL(ctx context.Context, tenant, id string, background bool, indexKind string,
	ca func() (*crlSigner, error)) (bool, error) {
	for attempt := 0; attempt < crlAttempts; attempt++ {
		listedAt := s.core.Now()
		c, err := ca()
		if signer.KindOf(err) == signer.KindNotFound {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if c == nil {
			return false, nil
		}
		rec, st, err := s.loadCRL(ctx, tenant, id)
		if err != nil {
			return false, err
		}
		now := s.core.Now().UTC().Truncate(time.Second)
		der, err := s.signCRLOf(ctx, c.keyID, c.certDER, c.keyAlg, c.what, st, now)
		if err != nil {
			return false, err
		}
		st.Number++
		st.ThisUpdate, st.NextUpdate, st.DER, st.Stale = now, now.Add(crlValidity), der, false
		err = s.saveCRL(ctx, rec, tenant, id, st)
		if errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists) {
			if background {
				return false, nil
			}
			signer.Backoff(attempt)
			continue
		}
		if err != nil {
			return false, signer.StoreErr(err, "certificate revocation list")
		}
		s.core.CRLStored(ctx, indexKind, id, listedAt, now.Add(crlRefresh))
		return true, nil
	}
	return false, signer.E(signer.KindUnavailable, "the certificate revocation list is being updated; retry")
}

// signCRLOf signs the next CRL of state st with the CA whose certificate
// is certDER and whose HSM key is keyID; what names the CA in errors.
func (s *Service) signCRLOf(ctx context.Context, keyID string, certDER []byte, keyAlg, what string, st *dtsCRLState, now time.Time) ([]byte, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, signer.StoreErr(err, what+" certificate")
	}
	k, err := s.core.TimedSigner(ctx, keyID, keyAlg, "dts_crl")
	if err != nil {
		return nil, err
	}
	revoked := make([]issuance.Revoked, 0, len(st.Revoked))
	for _, r := range st.Revoked {
		revoked = append(revoked, issuance.Revoked{SerialHex: r.Serial, Time: r.Time,
			Reason: crlReasonCessation}) // the signer was deleted
	}
	der, err := issuance.SignCRL(cert, k, issuance.CRL{Number: st.Number + 1, ThisUpdate: now,
		NextUpdate: now.Add(crlValidity), Revoked: revoked})
	if err != nil {
		return nil, signer.HSMError(err, what+" key")
	}
	return der, nil
}

// loadCRL returns the CRL record (nil when none yet) and its state.
func (s *Service) loadCRL(ctx context.Context, tenant, id string) (*store.Record, *dtsCRLState, error) {
	rec, err := s.core.Store().Get(ctx, kindCRL, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &dtsCRLState{}, nil
	}
	if err != nil {
		return nil, nil, signer.StoreErr(err, "certificate revocation list")
	}
	var st dtsCRLState
	if err := json.Unmarshal(rec.Data, &st); err != nil {
		return nil, nil, signer.StoreErr(err, "certificate revocation list")
	}
	return rec, &st, nil
}

func (s *Service) saveCRL(ctx context.Context, rec *store.Record, tenant, id string, st *dtsCRLState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if rec == nil {
		return s.core.Store().Create(ctx, &store.Record{Kind: kindCRL, Tenant: tenant, ID: id, Data: data}, store.WriteOpts{})
	}
	rec.Data = data
	return s.core.Store().Update(ctx, rec, store.WriteOpts{})
}

// revokeSerial lists a certificate the root issued (by its hex serial) on
// the root's CRL and marks the CRL for re-signing (the caller signs it,
// or the refresher does on its next round).
func (s *Service) revokeSerial(ctx context.Context, tenant, rootID, hexSerial string) error {
	return s.revokeSerialOn(ctx, tenant, kindRootIndex, rootID, hexSerial)
}

// revokeSerialOn is revokeSerial for the CA caID whose platform index
// entries are of kind indexKind (a root or an intermediate CA).
func (s *Service) revokeSerialOn(ctx context.Context, tenant, indexKind, caID, hexSerial string) error {
	for attempt := 0; attempt < crlAttempts; attempt++ {
		rec, st, err := s.loadCRL(ctx, tenant, caID)
		if err != nil {
			return err
		}
		for _, r := range st.Revoked {
			if r.Serial == hexSerial {
				return nil
			}
		}
		st.Revoked = append(st.Revoked, dtsRevoked{Serial: hexSerial, Time: s.core.Now().UTC().Truncate(time.Second)})
		st.Stale = true
		err = s.saveCRL(ctx, rec, tenant, caID, st)
		if errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists) {
			continue
		}
		if err != nil {
			return signer.StoreErr(err, "certificate revocation list")
		}
		// Marked after the entry is stored: a CRL whose content was read
		// before the mark does not clear it (see signer.CRLStored).
		s.core.MarkCRLStale(ctx, indexKind, caID)
		return nil
	}
	return signer.E(signer.KindUnavailable, "the certificate revocation list is being updated; retry")
}

// refreshDueCRLs signs every managed root's CRL, in every tenant, whose
// refresh fell due (crlRefresh passed, or a change marked it), and
// returns how many it signed. The family's janitor runs it on every
// replica; concurrent rounds never give two CRLs one number.
func (s *Service) refreshDueCRLs(ctx context.Context) (int, error) {
	return s.core.RefreshDueCRLs(ctx, "dts", kindRootIndex, s.refreshDue)
}

// refreshDue re-signs the CRL of a due root index entry.
func (s *Service) refreshDue(ctx context.Context, idx *store.Record) (bool, error) {
	_, root, err := s.getRoot(ctx, idx.Fields["tenant"], idx.ID)
	switch {
	case signer.KindOf(err) == signer.KindNotFound:
		return false, nil
	case err != nil:
		return false, err
	case !root.Managed:
		s.core.SettleCRLDue(ctx, idx, signer.CRLDueNever)
		return false, nil
	}
	return s.signRootCRL(ctx, idx.Fields["tenant"], idx.ID, true)
}
