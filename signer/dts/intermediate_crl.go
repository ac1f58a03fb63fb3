package dts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// CRLs of managed intermediate CAs, kept like the managed roots' (crl.go):
// signed in the HSM when the intermediate is created and when a VICAL
// signer it issued is deleted, re-signed by the family's refresher
// (refresh-intermediate-crls) once crlRefresh has passed, stored in a
// kindCRL record under the intermediate's id, and only read by the public
// route. An intermediate's own revocation is on its root's CRL.

// IntermediateCRL returns the current DER CRL of a managed intermediate,
// by root and intermediate id alone (the route is public).
func (s *Service) IntermediateCRL(ctx context.Context, rootID, id string) ([]byte, error) {
	if checkIntermediatePath(rootID, id) != nil {
		return nil, intermediateNotFound(id)
	}
	tenant, err := s.intermediateTenant(ctx, rootID, id)
	if err != nil {
		return nil, err
	}
	_, m, err := s.getIntermediate(ctx, tenant, rootID, id)
	if err != nil {
		return nil, err
	}
	if !m.Managed {
		return nil, signer.E(signer.KindNotFound, "an uploaded DTS intermediate CA certificate has no certificate revocation list here").With(ReasonNoCRL)
	}
	_, st, err := s.loadCRL(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if st.DER == nil {
		return nil, signer.E(signer.KindNotFound, "the DTS intermediate CA certificate has no certificate revocation list yet").With(ReasonNoCRL)
	}
	if !s.core.Now().Before(st.NextUpdate) {
		s.core.CRLOverdue("dts", id, st.NextUpdate.UnixMilli())
	}
	return st.DER, nil
}

// intermediateTenant resolves an intermediate id to its tenant through
// the platform index; the index must name rootID as its root.
func (s *Service) intermediateTenant(ctx context.Context, rootID, id string) (string, error) {
	rec, err := s.core.Store().Get(ctx, kindIntermediateIndex, store.PlatformTenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", intermediateNotFound(id)
		}
		return "", signer.StoreErr(err, "DTS intermediate CA certificate")
	}
	if rec.Fields["ca_id"] != rootID {
		return "", intermediateNotFound(id)
	}
	t := rec.Fields["tenant"]
	if t == "" {
		return "", fmt.Errorf("dts intermediate index %s without tenant", id)
	}
	return t, nil
}

// signIntermediateCRL is signRootCRL for a managed intermediate.
func (s *Service) signIntermediateCRL(ctx context.Context, tenant, id string, background bool) (bool, error) {
	for attempt := 0; attempt < crlAttempts; attempt++ {
		listedAt := s.core.Now()
		rec, m, err := s.getIntermediate(ctx, tenant, "", id)
		if signer.KindOf(err) == signer.KindNotFound {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !m.Managed {
			return false, nil
		}
		crlRec, st, err := s.loadCRL(ctx, tenant, id)
		if err != nil {
			return false, err
		}
		now := s.core.Now().UTC().Truncate(time.Second)
		der, err := s.signCRLOf(ctx, rec.Fields[signer.KeyField], m.CertDER, m.KeyAlgorithm, "DTS intermediate CA", st, now)
		if err != nil {
			return false, err
		}
		st.Number++
		st.ThisUpdate, st.NextUpdate, st.DER, st.Stale = now, now.Add(crlValidity), der, false
		err = s.saveCRL(ctx, crlRec, tenant, id, st)
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
		s.core.CRLStored(ctx, kindIntermediateIndex, id, listedAt, now.Add(crlRefresh))
		return true, nil
	}
	return false, signer.E(signer.KindUnavailable, "the certificate revocation list is being updated; retry")
}

// refreshDueIntermediateCRLs signs every managed intermediate's CRL, in
// every tenant, whose refresh fell due; the family's janitor
// refresh-intermediate-crls runs it on every replica.
func (s *Service) refreshDueIntermediateCRLs(ctx context.Context) (int, error) {
	return s.core.RefreshDueCRLs(ctx, "dts", kindIntermediateIndex, func(ctx context.Context, idx *store.Record) (bool, error) {
		_, m, err := s.getIntermediate(ctx, idx.Fields["tenant"], "", idx.ID)
		switch {
		case signer.KindOf(err) == signer.KindNotFound:
			return false, nil
		case err != nil:
			return false, err
		case !m.Managed:
			s.core.SettleCRLDue(ctx, idx, signer.CRLDueNever)
			return false, nil
		}
		return s.signIntermediateCRL(ctx, idx.Fields["tenant"], idx.ID, true)
	})
}
