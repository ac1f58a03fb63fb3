package pca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hsmca/hsmca/store"
)

// SeedSink writes a batch of seeded records and their quota units in one
// go (a bulk loader of the store, used while no daemon runs).
type SeedSink func(ctx context.Context, recs []store.Record, quota store.Quota) error

// SeedOptions tune SeedCertificates.
type SeedOptions struct {
	Workers int // signing goroutines (default 4)
	Batch   int // records per SeedSink call (default 5000)
	// Progress, if set, is called after each batch with the total written.
	Progress func(written int)
	// StandIn, if set, signs the certificates instead of the CA's HSM key:
	// the records are as issuance writes them (issuer name and key
	// identifier of the CA, same sizes) but their signatures do not
	// verify with the CA. It makes seeding millions of records a matter
	// of minutes where the HSM and Go's check of every signature would
	// take far longer; a benchmark store needs the records, not valid
	// signatures.
	StandIn crypto.Signer
	// RevokeEvery, if positive, stores every RevokeEvery-th certificate
	// revoked (CESSATION_OF_OPERATION at seeding time) with its revocation
	// entry, as a revocation writes them, and signs the CA's CRL once at
	// the end, so that status lists have revoked ones to find.
	RevokeEvery int
}

// SeedCertificates fills a store with n private certificates of the CA
// caID, each issued from csr as POST /v1/private-certificates/csr would
// issue it (same checks, template, HSM signature and stored record), but
// written by sink in large batches and without event records: it prepares
// benchmark stores of realistic size, with the daemon stopped. Quota
// counters move with the records, so the store stays consistent.
func (s *Service) SeedCertificates(ctx context.Context, tenant string, in CertFromCSR, n int, o SeedOptions, sink SeedSink) error {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Batch <= 0 {
		o.Batch = 5000
	}
	p, err := s.prepareFromCSR(ctx, tenant, in, true)
	if err != nil {
		return err
	}
	if o.StandIn != nil {
		// CreateCertificate insists that the signing key matches the
		// parent's public key; the stand-in parent is the CA's
		// certificate with the stand-in's public key.
		parent := *p.is.cert
		parent.PublicKey = o.StandIn.Public()
		p.is = &issuer{rec: p.is.rec, ca: p.is.ca, cert: &parent}
	}
	quota := store.Quota{Resource: QuotaCertificates, Limit: s.core.QuotaLimit(QuotaCertificates)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		left     atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	left.Store(int64(n))
	recs := make(chan [2]*store.Record, o.Batch)
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := left.Add(-1)
				if i < 0 || ctx.Err() != nil {
					return
				}
				revoke := o.RevokeEvery > 0 && i%int64(o.RevokeEvery) == 0
				rec, rev, err := s.seedOne(ctx, tenant, p, o.StandIn, revoke)
				if err != nil {
					fail(err)
					return
				}
				select {
				case recs <- [2]*store.Record{rec, rev}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(recs) }()
	written, revoked := 0, 0
	batch := make([]store.Record, 0, o.Batch)
	var revs []store.Record
	flush := func() {
		if len(batch) == 0 || ctx.Err() != nil {
			return
		}
		if err := sink(ctx, batch, quota); err != nil {
			fail(fmt.Errorf("write seeded certificates: %w", err))
			return
		}
		if len(revs) > 0 {
			// Revocation entries are another kind: a batch of their own.
			if err := sink(ctx, revs, store.Quota{}); err != nil {
				fail(fmt.Errorf("write seeded revocations: %w", err))
				return
			}
			revoked += len(revs)
			revs = revs[:0]
		}
		written += len(batch)
		batch = batch[:0]
		if o.Progress != nil {
			o.Progress(written)
		}
	}
	for r := range recs {
		batch = append(batch, *r[0])
		if r[1] != nil {
			revs = append(revs, *r[1])
		}
		if len(batch) == o.Batch {
			flush()
		}
	}
	flush()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if revoked > 0 {
		return s.crlChanged(ctx, tenant, p.is.rec.ID)
	}
	return nil
}

// seedOne signs one certificate of a prepared issuance; a revoked one
// comes with its revocation entry.
func (s *Service) seedOne(ctx context.Context, tenant string, p *csrIssue, standIn crypto.Signer, revoke bool) (*store.Record, *store.Record, error) {
	tmpl := *p.tmpl
	cr := *p.cr
	var (
		der []byte
		err error
	)
	if standIn != nil {
		tmpl.SignatureAlgorithm = issuance.SignatureAlgorithm(p.is.ca.KeyAlgorithm, p.hash)
		der, err = issuance.SignCertificate(&tmpl, p.is.cert, p.pub, standIn, issuance.KeyIDSHA1)
	} else {
		der, err = s.sign(ctx, p.is, &tmpl, p.pub, p.hash, "pca_seed")
	}
	if err != nil {
		return nil, nil, err
	}
	now := s.now()
	rec, err := certStoreRecord(tenant, newCertID(), p.is, &cr, &tmpl, der, p.hash, now)
	if err != nil || !revoke {
		return rec, nil, err
	}
	cr.Status, cr.RevokeReason, cr.RevokeTime = CertRevoked, reasonName(reasonDeleted), now.UnixMilli()
	if rec.Data, err = json.Marshal(&cr); err != nil {
		return nil, nil, err
	}
	rec.Fields = certFields(&cr)
	rev, err := revocationRecord(tenant, cr.IssuerID, revocation{Serial: cr.Serial, Time: now.UnixMilli(),
		Reason: reasonDeleted, Subject: rec.ID, NotAfter: cr.NotAfter})
	if err != nil {
		return nil, nil, err
	}
	return rec, rev, nil
}

// IssuerKey returns the certificate and the HSM signer of an active CA,
// for measuring what the HSM does in-process next to what the API does.
func (s *Service) IssuerKey(ctx context.Context, tenant, caID string) (*x509.Certificate, crypto.Signer, error) {
	is, err := s.loadIssuer(ctx, tenant, caID)
	if err != nil {
		return nil, nil, err
	}
	key, err := s.core.Signer(ctx, is.rec.Fields[signer.KeyField])
	if err != nil {
		return nil, nil, err
	}
	return is.cert, key, nil
}

// SeedRevocations writes n revocation entries of the CA caID by sink, in
// batches of batch (default 5000), each as a revocation writes it (a
// fresh random serial, revoked now, reasons in turn from
// KEY_COMPROMISE, SUPERSEDED, CESSATION_OF_OPERATION and UNSPECIFIED),
// then re-signs the CA's CRL once, as a revocation does. The certificates
// themselves are not stored: it makes CRLs of realistic size (the
// benchmark, the scale tests) without issuing n certificates first.
func (s *Service) SeedRevocations(ctx context.Context, tenant, caID string, n, batch int, sink SeedSink) error {
	if batch <= 0 {
		batch = 5000
	}
	if _, _, err := s.getCA(ctx, tenant, caID); err != nil {
		return err
	}
	reasons := []int{1, 4, reasonDeleted, 0}
	now := s.now()
	recs := make([]store.Record, 0, min(n, batch))
	for i := 0; i < n; i++ {
		serial, err := issuance.NewSerial()
		if err != nil {
			return err
		}
		rec, err := revocationRecord(tenant, caID, revocation{Serial: encoding.SerialHex(serial), Time: now.UnixMilli(),
			Reason: reasons[i%len(reasons)], Subject: uuid.NewString(), NotAfter: now.Add(365 * 24 * time.Hour).UnixMilli()})
		if err != nil {
			return err
		}
		recs = append(recs, *rec)
		if len(recs) == batch || i == n-1 {
			if err := sink(ctx, recs, store.Quota{}); err != nil {
				return fmt.Errorf("write seeded revocations: %w", err)
			}
			recs = recs[:0]
		}
	}
	return s.crlChanged(ctx, tenant, caID)
}
