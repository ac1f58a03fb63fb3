package ocsp

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// Publisher is one family's side of the responder: it keeps the issuer
// records, responders and stored answers of the family's CAs.
type Publisher struct {
	core   *signer.Core
	store  store.Store
	family string
	src    Source
	mode   Mode
	// certs keeps parsed responder certificates by their DER.
	certs *signer.BytesCache[*x509.Certificate]
}

// NewPublisher returns the publisher of family, whose CAs src describes.
func NewPublisher(core *signer.Core, family string, src Source, cfg Config) *Publisher {
	mode := cfg.Mode
	if mode == "" {
		mode = ModeDelegated
	}
	return &Publisher{core: core, store: core.Store(), family: family, src: src, mode: mode,
		certs: signer.NewBytesCache(x509.ParseCertificate)}
}

// FamilyName is the family the publisher serves.
func (p *Publisher) FamilyName() string { return p.family }

// Mode is the mode CAs switched on from now on get.
func (p *Publisher) Mode() Mode { return p.mode }

// loadIssuer reads a CA's issuer record: nil, nil when it has none.
func (p *Publisher) loadIssuer(ctx context.Context, id string) (*store.Record, *issuerData, error) {
	rec, err := p.store.Get(ctx, RecordIssuer, store.PlatformTenant, issuerRef(p.family, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, signer.StoreErr(err, "OCSP issuer")
	}
	var d issuerData
	if err := json.Unmarshal(rec.Data, &d); err != nil {
		return nil, nil, signer.StoreErr(err, "OCSP issuer")
	}
	return rec, &d, nil
}

func (p *Publisher) saveIssuer(ctx context.Context, rec *store.Record, d *issuerData) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	rec.Data = data
	return p.store.Update(ctx, rec, store.WriteOpts{})
}

// Enable readies a CA to answer: its issuer record (made on first use,
// found by the hashes of the CA's public key), the publisher's mode, and
// in ModeDelegated a responder certificate with long enough to live. The
// family calls it before it records that the CA's OCSP is on, so that a
// failure leaves the switch off.
func (p *Publisher) Enable(ctx context.Context, is *Issuer) error {
	if is.Cert == nil {
		return signer.E(signer.KindWrongState, "the CA has no certificate yet")
	}
	for attempt := 0; ; attempt++ {
		rec, d, err := p.loadIssuer(ctx, is.ID)
		if err != nil {
			return err
		}
		if rec == nil {
			err = p.createIssuer(ctx, is)
		} else if d.Mode != p.mode {
			d.Mode = p.mode
			err = p.saveIssuer(ctx, rec, d)
		} else if p.mode == ModeDelegated && p.needsResponder(d, is) {
			err = p.rotate(ctx, rec, d, is)
			if err == nil {
				return nil
			}
		} else if rc := p.responderOf(d); rc != nil && rec.Fields[fieldRotateAt] != msField(rotateAt(rc)) {
			// Rotation was called off while the switch was off.
			rec.Fields[fieldRotateAt] = msField(rotateAt(rc))
			err = p.store.Update(ctx, rec, store.WriteOpts{})
		} else {
			return nil
		}
		switch {
		case err == nil:
		case (errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists)) && attempt < 8:
			signer.Backoff(attempt)
		case errors.Is(err, store.ErrExists):
			return &signer.Error{Kind: signer.KindConflict, Msg: "another CA with the same public key answers OCSP requests", Err: err}
		case errors.Is(err, store.ErrVersionConflict):
			return &signer.Error{Kind: signer.KindConflict, Msg: "the CA's OCSP responder is being changed concurrently; retry", Err: err}
		default:
			return engineErr(err, "OCSP issuer")
		}
	}
}

// engineErr is err as the engine words it: an engine error as it is, a
// store error mapped (signer.StoreErr).
func engineErr(err error, what string) error {
	var e *signer.Error
	if errors.As(err, &e) {
		return e
	}
	return signer.StoreErr(err, what)
}

func (p *Publisher) createIssuer(ctx context.Context, is *Issuer) error {
	uniq, err := issuerUniques(is.Cert)
	if err != nil {
		return signer.StoreErr(err, "CA certificate")
	}
	data, err := json.Marshal(issuerData{Family: p.family, Tenant: is.Tenant, CA: is.ID, Mode: p.mode})
	if err != nil {
		return err
	}
	return p.store.Create(ctx, &store.Record{Kind: RecordIssuer, Tenant: store.PlatformTenant,
		ID: issuerRef(p.family, is.ID), Unique: uniq, Data: data,
		Fields: map[string]string{fieldFamily: p.family, fieldTenant: is.Tenant, fieldCA: is.ID, fieldRotateAt: never}},
		store.WriteOpts{})
}

// responderOf is the issuer record's responder certificate, nil when it
// has none usable.
func (p *Publisher) responderOf(d *issuerData) *x509.Certificate {
	if d == nil || d.Mode != ModeDelegated || len(d.ResponderCert) == 0 {
		return nil
	}
	c, err := p.certs.Get(d.ResponderCert)
	if err != nil {
		return nil
	}
	return c
}

// rotateAt is when a responder certificate is replaced: two thirds
// through its life.
func rotateAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// needsResponder says whether the CA needs a new responder certificate:
// it has none, the one it has is due for rotation, or another
// certificate of the CA (an imported one) did not sign it. A CA too close
// to its end for a new one to live minResponderLife needs none: it signs
// its answers itself.
func (p *Publisher) needsResponder(d *issuerData, is *Issuer) bool {
	now := p.core.Now()
	if is.Cert.NotAfter.Sub(now) < minResponderLife {
		return false
	}
	rc := p.responderOf(d)
	return rc == nil || !now.Before(rotateAt(rc)) || rc.CheckSignatureFrom(is.Cert) != nil
}

// rotate gives the CA a new responder key and certificate, under an
// OCSP_RESPONDER_CERTIFICATE_ISSUE event in the CA's tenant.
func (p *Publisher) rotate(ctx context.Context, rec *store.Record, d *issuerData, is *Issuer) error {
	op := p.core.Start(ctx, is.Tenant, "OCSP_RESPONDER_CERTIFICATE_ISSUE")
	return op.Done(is.ID, p.rotateKey(ctx, rec, d, is))
}

func (p *Publisher) rotateKey(ctx context.Context, rec *store.Record, d *issuerData, is *Issuer) error {
	now := p.core.Now().UTC().Truncate(time.Second)
	nb, na := now.Add(-responderBackdate), now.Add(ResponderValidity)
	if is.Cert.NotAfter.Before(na) {
		na = is.Cert.NotAfter
	}
	caKey, err := p.core.TimedSigner(ctx, is.KeyID, is.KeyAlgorithm, "ocsp_responder_certificate")
	if err != nil {
		return err
	}
	return p.core.RotateKey(ctx, rec, hsm.Algorithm(is.KeyAlgorithm), func(next *store.Record, s crypto.Signer) error {
		tmpl := issuance.OCSPResponderTemplate(is.Cert, nb, na)
		tmpl.SignatureAlgorithm = issuance.SignatureAlgorithm(is.KeyAlgorithm, is.Hash)
		der, err := issuance.SignCertificate(tmpl, is.Cert, s.Public(), caKey, issuance.KeyIDSHA1)
		if err != nil {
			return signer.HSMError(err, "CA key")
		}
		c, err := p.certs.Get(der)
		if err != nil {
			return err
		}
		nd := *d
		nd.ResponderCert, nd.ResponderKeyAlg = der, is.KeyAlgorithm
		if next.Data, err = json.Marshal(nd); err != nil {
			return err
		}
		next.Fields[fieldRotateAt] = msField(rotateAt(c))
		*d = nd
		return nil
	})
}

// Disable drops the CA's stored answers once its OCSP is switched off
// (the family has recorded it: from then on no request is answered).
// The issuer record and its responder stay for a later Enable.
func (p *Publisher) Disable(ctx context.Context, id string) error {
	return p.dropAnswers(ctx, id)
}

// Purge removes everything the responder keeps of a CA the family
// removed: its stored answers, its issuer record and (crash-safely) the
// responder's key.
func (p *Publisher) Purge(ctx context.Context, id string) error {
	if err := p.dropAnswers(ctx, id); err != nil {
		return err
	}
	rec, _, err := p.loadIssuer(ctx, id)
	if err != nil || rec == nil {
		return err
	}
	err = p.core.DeleteWithKey(ctx, rec, store.WriteOpts{})
	if signer.KindOf(err) == signer.KindNotFound {
		return nil
	}
	return err
}

func (p *Publisher) dropAnswers(ctx context.Context, id string) error {
	for {
		page, err := p.store.List(ctx, store.Query{Kind: RecordResponse, Tenant: store.PlatformTenant, Limit: 500,
			Filters: []store.Filter{{Field: fieldIssuer, Value: issuerRef(p.family, id)}}})
		if err != nil {
			return signer.StoreErr(err, "OCSP answers")
		}
		for _, r := range page.Records {
			if err := p.store.Delete(ctx, RecordResponse, store.PlatformTenant, r.ID, store.WriteOpts{}); err != nil &&
				!errors.Is(err, store.ErrNotFound) {
				return signer.StoreErr(err, "OCSP answer")
			}
		}
		if len(page.Records) < 500 {
			return nil
		}
	}
}

// signed is one signed answer.
type signed struct {
	der                          []byte
	thisUpdate, nextUpdate, made time.Time
}

// minAnswerLife: a responder certificate that ends sooner than this after
// now does not sign; the CA's key does.
const minAnswerLife = time.Hour

// sign makes an answer about the CertID certID: by the CA's responder
// when it has one valid for the answer's life (whose nextUpdate it may
// shorten to its own end), else by the CA's key. A responder key the HSM
// no longer has (rotated meanwhile) gives way to the CA's key too.
func (p *Publisher) sign(ctx context.Context, is *Issuer, ir *store.Record, d *issuerData, certID []byte, st Status, nonce []byte) (*signed, error) {
	now := p.core.Now().UTC().Truncate(time.Second)
	next := now.Add(Validity)
	r := issuance.OCSPResponse{CertID: certID, Status: st.State, RevokedAt: st.RevokedAt, Reason: st.Reason,
		ProducedAt: now, ThisUpdate: now, Nonce: nonce}
	if rc := p.responderOf(d); rc != nil && ir != nil && ir.Fields[signer.KeyField] != "" &&
		!rc.NotBefore.After(now) && rc.NotAfter.Sub(now) >= minAnswerLife {
		r.NextUpdate = next
		if rc.NotAfter.Before(next) {
			r.NextUpdate = rc.NotAfter
		}
		r.ResponderCert = d.ResponderCert
		key, err := p.core.TimedSigner(ctx, ir.Fields[signer.KeyField], d.ResponderKeyAlg, "ocsp_response")
		if err == nil {
			var der []byte
			der, err = issuance.SignOCSPResponse(r, key, issuance.SignatureAlgorithm(d.ResponderKeyAlg, is.Hash))
			if err == nil {
				return &signed{der: der, thisUpdate: now, nextUpdate: r.NextUpdate, made: now}, nil
			}
			err = signer.HSMError(err, "OCSP responder key")
		}
		if signer.KindOf(err) == signer.KindUnavailable {
			return nil, err
		}
		p.core.Log().Warn("OCSP responder key did not sign; the CA's key signs instead", "family", p.family, "ca", is.ID, "err", err)
	}
	r.NextUpdate, r.ResponderCert = next, nil
	key, err := p.core.TimedSigner(ctx, is.KeyID, is.KeyAlgorithm, "ocsp_response")
	if err != nil {
		return nil, err
	}
	der, err := issuance.SignOCSPResponse(r, key, issuance.SignatureAlgorithm(is.KeyAlgorithm, is.Hash))
	if err != nil {
		return nil, signer.HSMError(err, "CA key")
	}
	return &signed{der: der, thisUpdate: now, nextUpdate: next, made: now}, nil
}

// put stores an answer: a new record (cur nil; ErrExists when another
// writer stored one first) or over cur, version-checked.
func (p *Publisher) put(ctx context.Context, cur *store.Record, is *Issuer, h issuance.OCSPHash, serial *big.Int, st int, sg *signed) error {
	v := stored{Status: st, Hash: h.Name, Serial: serial.Text(16)}
	due := p.core.Now()
	if sg != nil {
		v.DER, v.ThisUpdate, v.NextUpdate, v.ProducedAt = sg.der, sg.thisUpdate.UnixMilli(), sg.nextUpdate.UnixMilli(), sg.made.UnixMilli()
		due = sg.thisUpdate.Add(refreshAfter)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fields := map[string]string{fieldIssuer: issuerRef(p.family, is.ID), fieldDue: msField(due),
		fieldFamily: p.family, fieldTenant: is.Tenant, fieldCA: is.ID}
	if cur == nil {
		return p.store.Create(ctx, &store.Record{Kind: RecordResponse, Tenant: store.PlatformTenant,
			ID: responseID(p.family, is.ID, h, serial), Fields: fields, Data: data}, store.WriteOpts{})
	}
	cur.Fields, cur.Data = fields, data
	return p.store.Update(ctx, cur, store.WriteOpts{})
}

// getAnswer reads a stored answer record, nil when there is none.
func (p *Publisher) getAnswer(ctx context.Context, id string) (*store.Record, error) {
	rec, err := p.store.Get(ctx, RecordResponse, store.PlatformTenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, signer.StoreErr(err, "OCSP answer")
	}
	return rec, nil
}

// Revoked is the family's word that its CA id revoked serial (the
// revocation is recorded already): the CA's stored answers about it are
// re-signed at once, and the SHA-1 one (what clients ask) is signed ahead
// of the first request, under an OCSP_RESPONSE_SIGN event. When the CA
// does not answer (OCSP off, or its state), stored answers are withdrawn
// instead, without a signature. When signing fails, the stored answers
// are withdrawn (the next request or the janitor signs them): only if
// that fails too is an error returned, as a stale "good" could then be
// served.
func (p *Publisher) Revoked(ctx context.Context, tenant, id string, serial *big.Int) error {
	is, err := p.src.OCSPIssuer(ctx, tenant, id)
	if signer.KindOf(err) == signer.KindNotFound {
		return nil
	}
	if err != nil {
		return p.withdraw(ctx, &Issuer{Tenant: tenant, ID: id}, serial)
	}
	if !is.Enabled || !is.Answering {
		// A CA whose OCSP was never on has no answers to withdraw.
		if rec, _, err := p.loadIssuer(ctx, id); err == nil && rec == nil {
			return nil
		}
		return p.withdraw(ctx, is, serial)
	}
	op := p.core.Start(ctx, tenant, "OCSP_RESPONSE_SIGN")
	err = p.resign(ctx, is, serial)
	if err != nil {
		p.core.Log().Warn("OCSP answers not re-signed after a revocation; withdrawn until they are",
			"family", p.family, "ca", id, "err", err)
		if werr := p.withdraw(ctx, is, serial); werr != nil {
			return op.Done(id, werr)
		}
	}
	return op.Done(id, err)
}

// resign signs and stores, for each CertID hash, the answer about serial
// that is stored already, and the SHA-1 one in any case (not for a serial
// the CA does not know).
func (p *Publisher) resign(ctx context.Context, is *Issuer, serial *big.Int) error {
	ir, d, err := p.loadIssuer(ctx, is.ID)
	if err != nil {
		return err
	}
	st, err := p.src.OCSPStatus(ctx, is.Tenant, is.ID, serial)
	if err != nil {
		return err
	}
	for _, h := range issuance.OCSPHashes {
		id := responseID(p.family, is.ID, h, serial)
		for attempt := 0; ; attempt++ {
			cur, err := p.getAnswer(ctx, id)
			if err != nil {
				return err
			}
			if cur == nil && (h.Name != "sha1" || st.State == issuance.OCSPUnknown) {
				break
			}
			if st.State == issuance.OCSPUnknown {
				err = p.store.Delete(ctx, RecordResponse, store.PlatformTenant, id, store.WriteOpts{})
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return signer.StoreErr(err, "OCSP answer")
				}
				break
			}
			certID, err := issuance.CertIDFor(h, is.Cert, serial)
			if err != nil {
				return signer.StoreErr(err, "CA certificate")
			}
			sg, err := p.sign(ctx, is, ir, d, certID, st, nil)
			if err != nil {
				return err
			}
			err = p.put(ctx, cur, is, h, serial, st.State, sg)
			if err == nil {
				break
			}
			if (errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists)) && attempt < 8 {
				signer.Backoff(attempt)
				continue
			}
			return engineErr(err, "OCSP answer")
		}
	}
	return nil
}

// withdraw marks the stored answers about serial withdrawn (never served;
// due at once for the janitor) and puts a withdrawn SHA-1 one in place
// when there is none, so that a request that read the status before the
// change cannot store its answer after it.
func (p *Publisher) withdraw(ctx context.Context, is *Issuer, serial *big.Int) error {
	for _, h := range issuance.OCSPHashes {
		id := responseID(p.family, is.ID, h, serial)
		for attempt := 0; ; attempt++ {
			cur, err := p.getAnswer(ctx, id)
			if err != nil {
				return err
			}
			if cur == nil && h.Name != "sha1" {
				break
			}
			err = p.put(ctx, cur, is, h, serial, issuance.OCSPUnknown, nil)
			if err == nil {
				break
			}
			if (errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrExists)) && attempt < 8 {
				signer.Backoff(attempt)
				continue
			}
			return signer.StoreErr(err, "OCSP answer")
		}
	}
	return nil
}
