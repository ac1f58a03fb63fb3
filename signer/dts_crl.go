package signer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"time"

	"github.com/hsmca/hsmca/store"
)

// CRLs of managed DTS roots. Every managed root has one, from its
// creation on: it lists the certificates of VICAL signers the root issued
// and that were deleted since. It is made on demand, signed in the HSM,
// and kept in a record beside the root; a request re-signs it when it is
// older than dtsCRLRefresh or a revocation happened since, with the next
// CRL number. An unmanaged root has no key and so no CRL.

const (
	dtsCRLValidity = 7 * 24 * time.Hour
	dtsCRLRefresh  = 24 * time.Hour
	dtsCRLAttempts = 16
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
// alone (the route is public).
func (e *Engine) DTSRootCRL(ctx context.Context, id string) ([]byte, error) {
	if checkDTSID("id", id, "path") != nil {
		return nil, E(KindNotFound, "DTS root CA certificate %s not found", id)
	}
	tenant, err := e.dtsRootTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	rootRec, root, err := e.getDTSRoot(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if !root.Managed {
		return nil, &Error{Kind: KindNotFound, Code: CodeNoCRL,
			Msg: "an unmanaged DTS root CA certificate has no certificate revocation list here"}
	}
	for attempt := 0; attempt < dtsCRLAttempts; attempt++ {
		rec, st, err := e.loadCRL(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		now := e.now().UTC().Truncate(time.Second)
		if st.DER != nil && !st.Stale && now.Sub(st.ThisUpdate) < dtsCRLRefresh && now.Before(st.NextUpdate) {
			return st.DER, nil
		}
		der, err := e.signDTSCRL(ctx, rootRec, root, st, now)
		if err != nil {
			return nil, err
		}
		st.Number++
		st.ThisUpdate, st.NextUpdate, st.DER, st.Stale = now, now.Add(dtsCRLValidity), der, false
		err = e.saveCRL(ctx, rec, tenant, id, st)
		if errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists) {
			continue // another request refreshed it first; serve theirs
		}
		if err != nil {
			return nil, storeErr(err, "certificate revocation list")
		}
		return der, nil
	}
	return nil, E(KindUnavailable, "the certificate revocation list is being updated; retry")
}

func (e *Engine) signDTSCRL(ctx context.Context, rootRec *store.Record, root *dtsRoot, st *dtsCRLState, now time.Time) ([]byte, error) {
	cert, err := x509.ParseCertificate(root.CertDER)
	if err != nil {
		return nil, storeErr(err, "DTS root CA certificate")
	}
	s, err := e.Signer(ctx, rootRec.Fields[KeyField])
	if err != nil {
		return nil, err
	}
	entries := make([]x509.RevocationListEntry, 0, len(st.Revoked))
	for _, r := range st.Revoked {
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			continue
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: r.Time,
			ReasonCode: 5}) // cessationOfOperation: the signer was deleted
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(st.Number + 1), ThisUpdate: now,
		NextUpdate: now.Add(dtsCRLValidity), RevokedCertificateEntries: entries}
	der, err := x509.CreateRevocationList(nil, tmpl, cert, e.timed(s, "dts_crl", root.KeyAlgorithm))
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
// and marks the CRL for re-signing.
func (e *Engine) revokeDTSSerial(ctx context.Context, tenant, rootID string, serial *big.Int) error {
	for attempt := 0; attempt < dtsCRLAttempts; attempt++ {
		rec, st, err := e.loadCRL(ctx, tenant, rootID)
		if err != nil {
			return err
		}
		hexSerial := serial.Text(16)
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
		return storeErr(err, "certificate revocation list")
	}
	return E(KindUnavailable, "the certificate revocation list is being updated; retry")
}
