package ocsp

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// refreshBatch is how many due answers a round reads at once; a round
// goes on batch after batch until none is due (or refreshMax were
// handled: the rest, with half their validity left, wait for the next
// round, an hour later).
const (
	refreshBatch = 1000
	refreshMax   = 200000
)

// Refresh is one round of the responder's janitor, run on every replica:
// it rotates the delegated responders due (two thirds of their
// certificate's life passed) and re-signs the stored answers due (half
// their validity passed, or withdrawn), under one OCSP_RESPONSE_SIGN
// event per CA and round. Answers of a CA that no longer answers, and
// about serial numbers its family no longer knows, are dropped instead.
// Concurrent rounds on several replicas only cost signatures: every
// write is version-checked. It returns how many answers it signed.
func Refresh(ctx context.Context, c *signer.Core, pubs []*Publisher) (int, error) {
	byFamily := map[string]*Publisher{}
	for _, p := range pubs {
		byFamily[p.family] = p
	}
	var errs []error
	if err := rotateDue(ctx, c, byFamily); err != nil {
		errs = append(errs, err)
	}
	n, err := refreshDue(ctx, c, byFamily)
	if err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

func dueFilters(field string, now time.Time) []store.Filter {
	return []store.Filter{{Field: field, Value: "0", Match: store.AtLeast},
		{Field: field, Value: msField(now.Add(time.Millisecond)), Match: store.Less}}
}

func rotateDue(ctx context.Context, c *signer.Core, byFamily map[string]*Publisher) error {
	page, err := c.Store().List(ctx, store.Query{Kind: RecordIssuer, Tenant: store.PlatformTenant,
		SortBy: fieldRotateAt, Limit: 100, Filters: dueFilters(fieldRotateAt, c.Now())})
	if err != nil {
		return signer.StoreErr(err, "OCSP issuers")
	}
	var errs []error
	for i := range page.Records {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rec := &page.Records[i]
		p := byFamily[rec.Fields[fieldFamily]]
		if p == nil {
			continue
		}
		if err := p.rotateDue(ctx, rec); err != nil {
			c.Log().Warn("OCSP responder rotation failed", "family", p.family, "ca", rec.Fields[fieldCA], "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rotateDue rotates one due responder when its CA still answers in
// ModeDelegated; otherwise it is left alone until Enable.
func (p *Publisher) rotateDue(ctx context.Context, rec *store.Record) error {
	var d issuerData
	if err := json.Unmarshal(rec.Data, &d); err != nil {
		return signer.StoreErr(err, "OCSP issuer")
	}
	is, err := p.src.OCSPIssuer(ctx, d.Tenant, d.CA)
	if err != nil && signer.KindOf(err) != signer.KindNotFound {
		return err
	}
	if err != nil || !is.Enabled || !is.Answering || d.Mode != ModeDelegated || !p.needsResponder(&d, is) {
		rec.Fields[fieldRotateAt] = never
		err := p.store.Update(ctx, rec, store.WriteOpts{})
		if err != nil && !errors.Is(err, store.ErrVersionConflict) && !errors.Is(err, store.ErrNotFound) {
			return signer.StoreErr(err, "OCSP issuer")
		}
		return nil
	}
	err = p.rotate(ctx, rec, &d, is)
	if errors.Is(err, store.ErrVersionConflict) {
		return nil // another replica rotated it
	}
	return err
}

func refreshDue(ctx context.Context, c *signer.Core, byFamily map[string]*Publisher) (int, error) {
	n := 0
	for seen := 0; seen < refreshMax; seen += refreshBatch {
		k, more, err := refreshBatchDue(ctx, c, byFamily)
		n += k
		if err != nil || !more {
			return n, err
		}
	}
	return n, nil
}

// refreshBatchDue handles one batch of due answers; more says the batch
// was full and moved on (another may be due).
func refreshBatchDue(ctx context.Context, c *signer.Core, byFamily map[string]*Publisher) (int, bool, error) {
	page, err := c.Store().List(ctx, store.Query{Kind: RecordResponse, Tenant: store.PlatformTenant,
		SortBy: fieldDue, Limit: refreshBatch, NoTotal: true, Filters: dueFilters(fieldDue, c.Now())})
	if err != nil {
		return 0, false, signer.StoreErr(err, "OCSP answers")
	}
	// One CA at a time, in the order its first answer fell due.
	var order []string
	groups := map[string][]*store.Record{}
	for i := range page.Records {
		r := &page.Records[i]
		ref := r.Fields[fieldIssuer]
		if _, ok := groups[ref]; !ok {
			order = append(order, ref)
		}
		groups[ref] = append(groups[ref], r)
	}
	n, skipped := 0, false
	var errs []error
	for _, ref := range order {
		if ctx.Err() != nil {
			return n, false, ctx.Err()
		}
		recs := groups[ref]
		p := byFamily[recs[0].Fields[fieldFamily]]
		if p == nil {
			skipped = true // a family this process does not serve
			continue
		}
		k, err := p.refreshCA(ctx, recs[0].Fields[fieldTenant], recs[0].Fields[fieldCA], recs)
		n += k
		if err != nil {
			c.Log().Warn("OCSP answers not re-signed", "family", p.family, "ca", recs[0].Fields[fieldCA], "err", err)
			errs = append(errs, err)
		}
	}
	// A batch that left answers due (a failure, a family not served
	// here) would come back the same: the round ends there.
	return n, len(page.Records) == refreshBatch && len(errs) == 0 && !skipped, errors.Join(errs...)
}

// refreshCA re-signs due answers of one CA.
func (p *Publisher) refreshCA(ctx context.Context, tenant, id string, recs []*store.Record) (int, error) {
	is, err := p.src.OCSPIssuer(ctx, tenant, id)
	if err != nil && signer.KindOf(err) != signer.KindNotFound {
		return 0, err
	}
	if err != nil || !is.Enabled || !is.Answering {
		for _, r := range recs {
			p.dropIfUnchanged(ctx, r)
		}
		return 0, nil
	}
	op := p.core.Start(ctx, tenant, "OCSP_RESPONSE_SIGN")
	n, err := p.refreshAnswers(ctx, is, recs)
	return n, op.Done(id, err)
}

func (p *Publisher) refreshAnswers(ctx context.Context, is *Issuer, recs []*store.Record) (int, error) {
	ir, d, err := p.loadIssuer(ctx, is.ID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		var v stored
		serial, ok := new(big.Int), false
		if json.Unmarshal(r.Data, &v) == nil {
			serial, ok = serial.SetString(v.Serial, 16)
		}
		h, hok := issuance.OCSPHashByName(v.Hash)
		if !ok || !hok {
			p.dropIfUnchanged(ctx, r)
			continue
		}
		st, err := p.src.OCSPStatus(ctx, is.Tenant, is.ID, serial)
		if err != nil {
			return n, err
		}
		if st.State == issuance.OCSPUnknown {
			p.dropIfUnchanged(ctx, r)
			continue
		}
		certID, err := issuance.CertIDFor(h, is.Cert, serial)
		if err != nil {
			return n, signer.StoreErr(err, "CA certificate")
		}
		sg, err := p.sign(ctx, is, ir, d, certID, st, nil)
		if err != nil {
			return n, err
		}
		err = p.put(ctx, r, is, h, serial, st.State, sg)
		switch {
		case err == nil:
			n++
		case errors.Is(err, store.ErrVersionConflict), errors.Is(err, store.ErrNotFound):
			// Another writer re-signed or dropped it meanwhile.
		default:
			return n, signer.StoreErr(err, "OCSP answer")
		}
	}
	return n, nil
}

// dropIfUnchanged deletes a stored answer unless it changed since r was
// read (a delete cannot be version-checked: a changed record is left for
// the next round, which reads it again).
func (p *Publisher) dropIfUnchanged(ctx context.Context, r *store.Record) {
	cur, err := p.getAnswer(ctx, r.ID)
	if err != nil || cur == nil || cur.Version != r.Version {
		return
	}
	if err := p.store.Delete(ctx, RecordResponse, store.PlatformTenant, r.ID, store.WriteOpts{}); err != nil &&
		!errors.Is(err, store.ErrNotFound) {
		p.core.Log().Warn("OCSP answer not dropped", "id", r.ID, "err", err)
	}
}
