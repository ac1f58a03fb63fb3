package signer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"time"

	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// CRLs of managed DTS roots. Every managed root has one, from its
// creation on: it lists the certificates of VICAL signers the root issued
// and that were deleted since. It is signed in the HSM when the root is
// created and when a signer is deleted, and re-signed by the background
// refresher (RefreshDueCRLs) once dtsCRLRefresh has passed or a change
// marked it stale, each time with the next CRL number; it is kept in a
// record beside the root. The public route only reads that record. An
// unmanaged root has no key and so no CRL.

const (
	dtsCRLValidity = 7 * 24 * time.Hour
	dtsCRLRefresh  = 24 * time.Hour
	dtsCRLAttempts = 16
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

// DTSRootCRL returns the current DER CRL of a managed root, by root id
// alone (the route is public). It only reads: a CRL past its nextUpdate
// is served as it is (and reported once to the operator), a root whose
// first CRL is not signed yet has none.
func (e *Engine) DTSRootCRL(ctx context.Context, id string) ([]byte, error) {
	if checkDTSID("id", id, "path") != nil {
		return nil, E(KindNotFound, "DTS root CA certificate %s not found", id)
	}
	tenant, err := e.dtsRootTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	_, root, err := e.getDTSRoot(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if !root.Managed {
		return nil, E(KindNotFound, "an unmanaged DTS root CA certificate has no certificate revocation list here").With(ReasonDTSNoCRL)
	}
	_, st, err := e.loadCRL(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if st.DER == nil {
		return nil, E(KindNotFound, "the DTS root CA certificate has no certificate revocation list yet").With(ReasonDTSNoCRL)
	}
	if !e.now().Before(st.NextUpdate) {
		e.crlOverdue("dts", id, st.NextUpdate.UnixMilli())
	}
	return st.DER, nil
}

// signDTSRootCRL signs a managed root's next CRL and stores it: the CRL
// takes the stored number + 1 and is committed with a version-checked
// write of the CRL record, or discarded and made again from a fresh read
// when another writer (a revocation, another replica) committed first;
// background (the refresher's rounds) gives up on such a conflict. It
// says whether a CRL was stored.
func (e *Engine) signDTSRootCRL(ctx context.Context, tenant, id string, background bool) (bool, error) {
	for attempt := 0; attempt < dtsCRLAttempts; attempt++ {
		listedAt := e.now()
		rootRec, root, err := e.getDTSRoot(ctx, tenant, id)
		if KindOf(err) == KindNotFound {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !root.Managed {
			return false, nil
		}
		rec, st, err := e.loadCRL(ctx, tenant, id)
		if err != nil {
			return false, err
		}
		now := e.now().UTC().Truncate(time.Second)
		der, err := e.signDTSCRL(ctx, rootRec, root, st, now)
		if err != nil {
			return false, err
		}
		st.Number++
		st.ThisUpdate, st.NextUpdate, st.DER, st.Stale = now, now.Add(dtsCRLValidity), der, false
		err = e.saveCRL(ctx, rec, tenant, id, st)
		if errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists) {
			if background {
				return false, nil
			}
			backoff(attempt)
			continue
		}
		if err != nil {
			return false, storeErr(err, "certificate revocation list")
		}
		e.crlStored(ctx, kindDTSRootIndex, id, listedAt, now.Add(dtsCRLRefresh))
		return true, nil
	}
	return false, E(KindUnavailable, "the certificate revocation list is being updated; retry")
}

func (e *Engine) signDTSCRL(ctx context.Context, rootRec *store.Record, root *dtsRoot, st *dtsCRLState, now time.Time) ([]byte, error) {
	cert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, storeErr(err, "DTS root CA certificate")
	}
	s, err := e.TimedSigner(ctx, rootRec.Fields[KeyField], root.KeyAlgorithm, "dts_crl")
	if err != nil {
		return nil, err
	}
	revoked := make([]issuance.Revoked, 0, len(st.Revoked))
	for _, r := range st.Revoked {
		revoked = append(revoked, issuance.Revoked{SerialHex: r.Serial, Time: r.Time,
			Reason: crlReasonCessation}) // the signer was deleted
	}
	der, err := issuance.SignCRL(cert, s, issuance.CRL{Number: st.Number + 1, ThisUpdate: now,
		NextUpdate: now.Add(dtsCRLValidity), Revoked: revoked})
	if err != nil {
		return nil, HSMError(err, "DTS root CA key")
	}
	return der, nil
}

// loadCRL returns the CRL record (nil when none yet) and its state.
func (e *Engine) loadCRL(ctx context.Context, tenant, id string) (*store.Record, *dtsCRLState, error) {
	rec, err := e.store.Get(ctx, kindDTSCRL, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &dtsCRLState{}, nil
	}
	if err != nil {
		return nil, nil, storeErr(err, "certificate revocation list")
	}
	var st dtsCRLState
	if err := json.Unmarshal(rec.Data, &st); err != nil {
		return nil, nil, storeErr(err, "certificate revocation list")
	}
	return rec, &st, nil
}

func (e *Engine) saveCRL(ctx context.Context, rec *store.Record, tenant, id string, st *dtsCRLState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if rec == nil {
		return e.store.Create(ctx, &store.Record{Kind: kindDTSCRL, Tenant: tenant, ID: id, Data: data}, store.WriteOpts{})
	}
	rec.Data = data
	return e.store.Update(ctx, rec, store.WriteOpts{})
}

// revokeDTSSerial lists a certificate the root issued on the root's CRL
// and marks the CRL for re-signing (the caller signs it, or the refresher
// does on its next round).
func (e *Engine) revokeDTSSerial(ctx context.Context, tenant, rootID, hexSerial string) error {
	for attempt := 0; attempt < dtsCRLAttempts; attempt++ {
		rec, st, err := e.loadCRL(ctx, tenant, rootID)
		if err != nil {
			return err
		}
		for _, r := range st.Revoked {
			if r.Serial == hexSerial {
				return nil
			}
		}
		st.Revoked = append(st.Revoked, dtsRevoked{Serial: hexSerial, Time: e.now().UTC().Truncate(time.Second)})
		st.Stale = true
		err = e.saveCRL(ctx, rec, tenant, rootID, st)
		if errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists) {
			continue
		}
		if err != nil {
			return storeErr(err, "certificate revocation list")
		}
		// Marked after the entry is stored: a CRL whose content was read
		// before the mark does not clear it (see crlStored).
		e.markCRLStale(ctx, kindDTSRootIndex, rootID)
		return nil
	}
	return E(KindUnavailable, "the certificate revocation list is being updated; retry")
}
