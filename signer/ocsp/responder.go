package ocsp

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// ResponderConfig bounds the answers signed for one request alone.
type ResponderConfig struct {
	// FreshRate is how many answers signed for one request alone (a
	// nonce, an unknown serial number) each client may get per second,
	// with bursts of FreshBurst; 0 means the defaults (1 per second,
	// bursts of 10). The count lives in the store: replicas sharing Redis
	// share it.
	FreshRate  float64
	FreshBurst int64
}

// Default per-client rate of answers signed for one request alone.
const (
	DefaultFreshRate  = 1.0
	DefaultFreshBurst = 10
)

// Responder answers OCSP requests for the CAs of its publishers' families.
type Responder struct {
	core  *signer.Core
	pubs  map[string]*Publisher
	rate  float64
	burst int64

	// refs remembers which CA a key hash names: the mapping never changes
	// while the issuer record exists, and a CA that went away is found
	// out from its family on the next request.
	mu   sync.RWMutex
	refs map[string]issuerLoc
}

type issuerLoc struct{ family, tenant, id string }

const maxRefs = 4096

// NewResponder answers for the CAs of pubs' families.
func NewResponder(core *signer.Core, cfg ResponderConfig, pubs ...*Publisher) *Responder {
	r := &Responder{core: core, pubs: map[string]*Publisher{}, rate: cfg.FreshRate, burst: cfg.FreshBurst,
		refs: map[string]issuerLoc{}}
	if !(r.rate > 0) {
		r.rate = DefaultFreshRate
	}
	if r.burst < 1 {
		r.burst = DefaultFreshBurst
	}
	for _, p := range pubs {
		if p != nil {
			r.pubs[p.family] = p
		}
	}
	return r
}

// Answer statuses (the status label of hsmca_ocsp_answers_total).
const (
	AnswerGood         = "good"
	AnswerRevoked      = "revoked"
	AnswerUnknown      = "unknown"
	AnswerMalformed    = "malformed"
	AnswerUnauthorized = "unauthorized"
	AnswerTryLater     = "try_later"
	AnswerInternal     = "internal_error"
)

// Cache outcomes (the cache label).
const (
	CacheHit   = "hit"   // a stored answer
	CacheMiss  = "miss"  // signed now and stored
	CacheFresh = "fresh" // signed for this request alone
	CacheNone  = "none"  // an unsigned error answer
)

// Answer is what the responder answers one request.
type Answer struct {
	DER    []byte
	Status string // AnswerGood ...
	Cache  string // CacheHit ...
	// ThisUpdate and NextUpdate of a signed answer; zero otherwise.
	ThisUpdate, NextUpdate time.Time
	// Nonce: the answer echoes the request's nonce.
	Nonce bool
	// RetryAfter accompanies AnswerTryLater when a rate is the cause.
	RetryAfter time.Duration
	// At is when the responder answered (its clock): an HTTP cache may
	// keep a Shared answer for NextUpdate - At.
	At time.Time
}

// Shared says whether every client asking the same gets the same bytes
// until NextUpdate: the answers HTTP caches may keep.
func (a *Answer) Shared() bool { return a.Cache == CacheHit || a.Cache == CacheMiss }

var stateNames = map[int]string{issuance.OCSPGood: AnswerGood, issuance.OCSPRevoked: AnswerRevoked,
	issuance.OCSPUnknown: AnswerUnknown}

func (r *Responder) unsigned(status int, name string) *Answer {
	return &Answer{DER: issuance.OCSPErrorResponse(status), Status: name, Cache: CacheNone}
}

// Answer answers the DER request der from client (the name its per-client
// rate is counted under). It never fails: what goes wrong is an OCSP
// error answer (malformedRequest, unauthorized, tryLater,
// internalError), counted like every answer in hsmca_ocsp_answers_total.
func (r *Responder) Answer(ctx context.Context, der []byte, client string) *Answer {
	a := r.answer(ctx, der, client)
	a.At = r.core.Now()
	r.core.Metrics().OCSPAnswers.WithLabelValues(a.Status, a.Cache).Inc()
	return a
}

func (r *Responder) answer(ctx context.Context, der []byte, client string) *Answer {
	req, err := issuance.ParseOCSPRequest(der)
	if err != nil {
		return r.unsigned(issuance.OCSPMalformedRequest, AnswerMalformed)
	}
	loc, err := r.locate(ctx, req)
	if err != nil {
		return r.failed(err)
	}
	p := r.pubs[loc.family]
	if p == nil {
		return r.unsigned(issuance.OCSPUnauthorized, AnswerUnauthorized)
	}
	is, err := p.src.OCSPIssuer(ctx, loc.tenant, loc.id)
	if signer.KindOf(err) == signer.KindNotFound {
		return r.unsigned(issuance.OCSPUnauthorized, AnswerUnauthorized)
	}
	if err != nil {
		return r.failed(err)
	}
	if !is.Enabled || !is.Answering || is.Cert == nil ||
		string(issuance.OCSPNameHash(is.Cert, req.Hash.Hash)) != string(req.NameHash) {
		return r.unsigned(issuance.OCSPUnauthorized, AnswerUnauthorized)
	}

	id := responseID(p.family, is.ID, req.Hash, req.Serial)
	var cur *store.Record
	var hit *Answer
	if req.Canonical {
		if cur, err = p.getAnswer(ctx, id); err != nil {
			return r.failed(err)
		}
		hit = r.usable(cur)
	}
	if req.Nonce == nil && hit != nil {
		return hit
	}
	if req.Nonce != nil || !req.Canonical {
		// An answer for this request alone, within the client's rate; a
		// client past it gets the stored answer (without its nonce) when
		// there is one.
		if wait := r.throttle(ctx, client); wait > 0 {
			if hit != nil {
				return hit
			}
			a := r.unsigned(issuance.OCSPTryLater, AnswerTryLater)
			a.RetryAfter = wait
			return a
		}
		return r.fresh(ctx, p, is, req)
	}

	// No usable stored answer: sign one and store it for the next
	// requests. A serial number the CA does not know is answered for
	// this request alone (and counted against the client's rate): storing
	// such answers would let anyone fill the store.
	ir, d, err := p.loadIssuer(ctx, is.ID)
	if err != nil {
		return r.failed(err)
	}
	st, err := p.src.OCSPStatus(ctx, is.Tenant, is.ID, req.Serial)
	if err != nil {
		return r.failed(err)
	}
	if st.State == issuance.OCSPUnknown {
		if wait := r.throttle(ctx, client); wait > 0 {
			a := r.unsigned(issuance.OCSPTryLater, AnswerTryLater)
			a.RetryAfter = wait
			return a
		}
		return r.fresh(ctx, p, is, req)
	}
	sg, err := p.sign(ctx, is, ir, d, req.CertID, st, nil)
	if err != nil {
		return r.failed(err)
	}
	if err := p.put(ctx, cur, is, req.Hash, req.Serial, st.State, sg); err != nil &&
		!errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrVersionConflict) {
		// Another writer (a revocation, the janitor) stored one first and
		// keeps its place; this request still gets what it was signed.
		p.core.Log().Warn("OCSP answer not stored", "family", p.family, "ca", is.ID, "err", err)
	}
	return &Answer{DER: sg.der, Status: stateNames[st.State], Cache: CacheMiss,
		ThisUpdate: sg.thisUpdate, NextUpdate: sg.nextUpdate}
}

// usable is the stored answer of rec when it can be served now.
func (r *Responder) usable(rec *store.Record) *Answer {
	if rec == nil {
		return nil
	}
	var v stored
	if json.Unmarshal(rec.Data, &v) != nil || len(v.DER) == 0 {
		return nil
	}
	now := r.core.Now().UnixMilli()
	if now >= v.NextUpdate || now < v.ThisUpdate-int64(responderBackdate/time.Millisecond) {
		return nil
	}
	return &Answer{DER: v.DER, Status: stateNames[v.Status], Cache: CacheHit,
		ThisUpdate: time.UnixMilli(v.ThisUpdate).UTC(), NextUpdate: time.UnixMilli(v.NextUpdate).UTC()}
}

// fresh signs an answer for this request alone: its own CertID, its
// nonce, the status read now.
func (r *Responder) fresh(ctx context.Context, p *Publisher, is *Issuer, req *issuance.OCSPRequest) *Answer {
	ir, d, err := p.loadIssuer(ctx, is.ID)
	if err != nil {
		return r.failed(err)
	}
	st, err := p.src.OCSPStatus(ctx, is.Tenant, is.ID, req.Serial)
	if err != nil {
		return r.failed(err)
	}
	sg, err := p.sign(ctx, is, ir, d, req.CertID, st, req.Nonce)
	if err != nil {
		return r.failed(err)
	}
	return &Answer{DER: sg.der, Status: stateNames[st.State], Cache: CacheFresh,
		ThisUpdate: sg.thisUpdate, NextUpdate: sg.nextUpdate, Nonce: req.Nonce != nil}
}

// throttle counts one answer signed for client alone; it answers how
// long the client must wait, 0 when the answer may be signed. A limiter
// that cannot answer admits the request (it meets the same store next).
func (r *Responder) throttle(ctx context.Context, client string) time.Duration {
	wait, err := r.core.Throttle(ctx, "ocsp-fresh:"+client, r.rate, r.burst)
	if err != nil {
		return 0
	}
	return wait
}

// failed answers an engine failure: unauthorized for a CA that is not
// here, tryLater when the HSM or the store does not answer, internalError
// otherwise.
func (r *Responder) failed(err error) *Answer {
	switch signer.KindOf(err) {
	case signer.KindNotFound:
		return r.unsigned(issuance.OCSPUnauthorized, AnswerUnauthorized)
	case signer.KindUnavailable:
		a := r.unsigned(issuance.OCSPTryLater, AnswerTryLater)
		a.RetryAfter = time.Second
		return a
	}
	r.core.Log().Warn("OCSP request failed", "err", err)
	return r.unsigned(issuance.OCSPInternalError, AnswerInternal)
}

// locate finds the CA whose key the request names.
func (r *Responder) locate(ctx context.Context, req *issuance.OCSPRequest) (issuerLoc, error) {
	key := keyUnique(req.Hash, req.KeyHash)
	r.mu.RLock()
	loc, ok := r.refs[key]
	r.mu.RUnlock()
	if ok {
		return loc, nil
	}
	rec, err := r.core.Store().GetByUnique(ctx, RecordIssuer, store.PlatformTenant, key)
	if errors.Is(err, store.ErrNotFound) {
		return issuerLoc{}, errUnknownIssuer
	}
	if err != nil {
		return issuerLoc{}, signer.StoreErr(err, "OCSP issuer")
	}
	loc = issuerLoc{family: rec.Fields[fieldFamily], tenant: rec.Fields[fieldTenant], id: rec.Fields[fieldCA]}
	r.mu.Lock()
	if len(r.refs) >= maxRefs {
		clear(r.refs)
	}
	r.refs[key] = loc
	r.mu.Unlock()
	return loc, nil
}

// errUnknownIssuer: no CA of this daemon has the key the request names.
var errUnknownIssuer = &signer.Error{Kind: signer.KindNotFound, Msg: "no CA here has this key"}
