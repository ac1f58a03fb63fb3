package acme

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// Challenge types.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeDNS01     = "dns-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Identifier is an order's identifier.
type Identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// order is an order's record.
type order struct {
	Dir         string       `json:"dir"`
	Account     string       `json:"account"`
	Status      string       `json:"status"`
	Expires     time.Time    `json:"expires"`
	Identifiers []Identifier `json:"identifiers"`
	Authzs      []string     `json:"authzs"`
	Cert        string       `json:"cert,omitempty"`
	Error       *Problem     `json:"error,omitempty"`
	Replaces    string       `json:"replaces,omitempty"`
}

// authz is an authorization's record, with its challenges.
type authz struct {
	Dir        string       `json:"dir"`
	Account    string       `json:"account"`
	Identifier Identifier   `json:"identifier"`
	Status     string       `json:"status"`
	Expires    time.Time    `json:"expires"`
	Wildcard   bool         `json:"wildcard,omitempty"`
	Challenges []*challenge `json:"challenges"`
}

type challenge struct {
	Type      string     `json:"type"`
	Token     string     `json:"token"`
	Status    string     `json:"status"`
	Validated *time.Time `json:"validated,omitempty"`
	Error     *Problem   `json:"error,omitempty"`
}

// OrderObject is the order resource (RFC 8555 §7.1.3).
type OrderObject struct {
	Status         string       `json:"status"`
	Expires        time.Time    `json:"expires"`
	Identifiers    []Identifier `json:"identifiers"`
	Authorizations []string     `json:"authorizations"`
	Finalize       string       `json:"finalize"`
	Certificate    string       `json:"certificate,omitempty"`
	Error          *Problem     `json:"error,omitempty"`
	Replaces       string       `json:"replaces,omitempty"`
}

// AuthzObject is the authorization resource (RFC 8555 §7.1.4).
type AuthzObject struct {
	Status     string            `json:"status"`
	Expires    time.Time         `json:"expires"`
	Identifier Identifier        `json:"identifier"`
	Challenges []ChallengeObject `json:"challenges"`
	Wildcard   bool              `json:"wildcard,omitempty"`
}

// ChallengeObject is a challenge resource (RFC 8555 §7.1.5).
type ChallengeObject struct {
	Type      string     `json:"type"`
	URL       string     `json:"url"`
	Status    string     `json:"status"`
	Token     string     `json:"token"`
	Validated *time.Time `json:"validated,omitempty"`
	Error     *Problem   `json:"error,omitempty"`
}

func orderObject(r Request, id string, o *order) OrderObject {
	out := OrderObject{Status: o.Status, Expires: o.Expires, Identifiers: o.Identifiers,
		Finalize: orderURL(r.Base, r.Dir, id) + "/finalize", Error: o.Error, Replaces: o.Replaces}
	for _, a := range o.Authzs {
		out.Authorizations = append(out.Authorizations, authzURL(r.Base, r.Dir, a))
	}
	if o.Cert != "" {
		out.Certificate = certURL(r.Base, r.Dir, o.Cert)
	}
	return out
}

func challengeObject(r Request, authzID string, c *challenge) ChallengeObject {
	return ChallengeObject{Type: c.Type, URL: challURL(r.Base, r.Dir, authzID, c.Type), Status: c.Status,
		Token: c.Token, Validated: c.Validated, Error: c.Error}
}

func authzObject(r Request, id string, a *authz) AuthzObject {
	out := AuthzObject{Status: a.Status, Expires: a.Expires, Identifier: a.Identifier, Wildcard: a.Wildcard}
	for _, c := range a.Challenges {
		out.Challenges = append(out.Challenges, challengeObject(r, id, c))
	}
	return out
}

// validDNSName accepts a lowercase DNS name of LDH labels with a dot.
func validDNSName(n string) bool {
	if len(n) == 0 || len(n) > 253 || !strings.Contains(n, ".") {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// checkIdentifier applies the identifier rules and the directory's
// policy; it returns the identifier in canonical form.
func checkIdentifier(p *Policy, id Identifier) (Identifier, error) {
	switch id.Type {
	case "dns":
		name := strings.ToLower(id.Value)
		base := strings.TrimPrefix(name, "*.")
		if !validDNSName(base) {
			return id, problem(ReasonRejectedIdentifier, "identifier "+signer.QuoteID(id.Value)+" is not a valid DNS name")
		}
		if len(p.AllowedDomains) > 0 && !slices.ContainsFunc(p.AllowedDomains, func(s string) bool {
			return base == s || strings.HasSuffix(base, "."+s)
		}) {
			return id, problem(ReasonRejectedIdentifier, "the directory's policy does not allow "+signer.QuoteID(id.Value))
		}
		return Identifier{Type: "dns", Value: name}, nil
	case "ip":
		ip := net.ParseIP(id.Value)
		if ip == nil {
			return id, problem(ReasonRejectedIdentifier, "identifier "+signer.QuoteID(id.Value)+" is not an IP address")
		}
		ok := false
		for _, r := range p.AllowedIPRanges {
			if _, n, err := net.ParseCIDR(r); err == nil && n.Contains(ip) {
				ok = true
			}
		}
		if !ok {
			return id, problem(ReasonRejectedIdentifier, "the directory's policy does not allow "+signer.QuoteID(id.Value))
		}
		return Identifier{Type: "ip", Value: ip.String()}, nil
	}
	return id, problem(ReasonUnsupportedIdentifier, "identifier type "+signer.QuoteID(id.Type)+" is not supported (dns, ip)")
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

type newOrderPayload struct {
	Identifiers []Identifier `json:"identifiers"`
	NotBefore   string       `json:"notBefore"`
	NotAfter    string       `json:"notAfter"`
	Replaces    string       `json:"replaces"`
}

// NewOrder creates an order and its authorizations (ACME_ORDER_CREATE).
func (s *Service) NewOrder(ctx context.Context, r Request) (*Answer, error) {
	d, err := s.directoryOf(ctx, r.Dir)
	if err != nil {
		return nil, err
	}
	req, err := s.verify(ctx, d, r, false, false)
	if err != nil {
		return nil, err
	}
	ctx = withAccount(ctx, req.acctRec.ID)
	op := s.start(ctx, d, "ACME_ORDER_CREATE")
	ans, id, err := s.newOrder(ctx, d, r, req)
	return ans, op.Done(id, err)
}

func (s *Service) newOrder(ctx context.Context, d *directory, r Request, req *signed) (*Answer, string, error) {
	var p newOrderPayload
	if err := req.decode(&p); err != nil {
		return nil, "", err
	}
	if len(p.Identifiers) == 0 || len(p.Identifiers) > 100 {
		return nil, "", problem(ReasonMalformed, "an order needs 1 to 100 identifiers")
	}
	if p.NotBefore != "" || p.NotAfter != "" {
		return nil, "", problem(ReasonMalformed, "notBefore and notAfter are not supported: the directory's policy sets the validity")
	}
	acct := req.acctRec.ID
	if err := s.throttle(ctx, d, acct); err != nil {
		return nil, "", err
	}
	if err := s.openOrdersFree(ctx, d, acct); err != nil {
		return nil, "", err
	}
	seen := map[Identifier]bool{}
	var ids []Identifier
	for _, in := range p.Identifiers {
		id, err := checkIdentifier(&d.Policy, in)
		if err != nil {
			return nil, "", err
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if p.Replaces != "" {
		if err := s.checkReplaces(ctx, d, acct, p.Replaces); err != nil {
			return nil, "", err
		}
	}
	now := s.now().UTC()
	exp := now.Add(s.cfg.OrderTTL).Truncate(time.Second)
	o := &order{Dir: d.ID, Account: acct, Status: StatusPending, Expires: exp, Identifiers: ids, Replaces: p.Replaces}
	var recs []*store.Record
	for _, id := range ids {
		a := &authz{Dir: d.ID, Account: acct, Identifier: id, Status: StatusPending, Expires: exp}
		types := []string{ChallengeHTTP01, ChallengeDNS01, ChallengeTLSALPN01}
		if strings.HasPrefix(id.Value, "*.") {
			a.Identifier.Value, a.Wildcard = strings.TrimPrefix(id.Value, "*."), true
			types = []string{ChallengeDNS01}
		} else if id.Type == "ip" {
			types = []string{ChallengeHTTP01, ChallengeTLSALPN01}
		}
		for _, t := range types {
			a.Challenges = append(a.Challenges, &challenge{Type: t, Token: newToken(), Status: StatusPending})
		}
		data, err := json.Marshal(a)
		if err != nil {
			return nil, "", err
		}
		aid := newID()
		o.Authzs = append(o.Authzs, aid)
		recs = append(recs, &store.Record{Kind: RecordAuthz, Tenant: d.Tenant, ID: aid, Data: data})
	}
	oid := newID()
	data, err := json.Marshal(o)
	if err != nil {
		return nil, "", err
	}
	// The authorizations first: an order never names one that is not
	// there; one left by a failure is never reachable.
	for _, rec := range recs {
		if err := s.store.Create(ctx, rec, store.WriteOpts{}); err != nil {
			return nil, "", signer.StoreErr(err, "authorization")
		}
	}
	rec := &store.Record{Kind: RecordOrder, Tenant: d.Tenant, ID: oid, Fields: orderFields(o), Data: data}
	if err := s.store.Create(ctx, rec, store.WriteOpts{}); err != nil {
		return nil, "", signer.StoreErr(err, "order")
	}
	return &Answer{Created: true, Location: orderURL(r.Base, r.Dir, oid), Body: orderObject(r, oid, o)}, oid, nil
}

// throttle counts a new order against the account's rate.
func (s *Service) throttle(ctx context.Context, d *directory, acct string) error {
	if s.cfg.OrdersPerHour < 0 {
		return nil
	}
	wait, err := s.core.Throttle(ctx, "acme-account:"+d.Tenant+":"+acct, s.cfg.OrdersPerHour/3600, s.cfg.OrderBurst)
	if err != nil {
		return err
	}
	if wait > 0 {
		e := problem(ReasonRateLimited, fmt.Sprintf("the account may create %g orders an hour", s.cfg.OrdersPerHour))
		e.RetryAfter = wait
		return e
	}
	return nil
}

// ownedOrder reads an order of the account, its status brought up to
// date from its authorizations and its expiry.
func (s *Service) ownedOrder(ctx context.Context, d *directory, acct, id string) (*order, error) {
	return update(ctx, s.store, RecordOrder, d.Tenant, id, "order", func(rec *store.Record, o *order) (bool, error) {
		if o.Dir != d.ID || o.Account != acct {
			return false, problem(ReasonUnauthorized, "the order belongs to another account")
		}
		changed, err := s.orderStatus(ctx, d, o)
		rec.Fields = orderFields(o)
		return changed, err
	})
}

// orderFields index an order by account, and by account again while it
// is open (pending, ready or processing): the open orders an account may
// hold are counted from that index.
func orderFields(o *order) map[string]string {
	f := map[string]string{"account": o.Account}
	if o.Status == StatusPending || o.Status == StatusReady || o.Status == StatusProcessing {
		f["open"] = o.Account
	}
	return f
}

// openOrdersFree refuses a new order when the account holds its limit of
// open orders. Orders that expired unread still count as open in the
// index: at the limit they are read (which closes the expired ones) and
// counted again.
func (s *Service) openOrdersFree(ctx context.Context, d *directory, acct string) error {
	if s.cfg.OpenOrdersPerAccount < 0 {
		return nil
	}
	q := store.Query{Kind: RecordOrder, Tenant: d.Tenant, OffsetPaging: true, Limit: 1,
		Filters: []store.Filter{{Field: "open", Value: acct, Match: store.Equal}}}
	page, err := s.store.List(ctx, q)
	if err != nil {
		return signer.StoreErr(err, "orders")
	}
	if page.Total < s.cfg.OpenOrdersPerAccount {
		return nil
	}
	q.Limit = 0
	if page, err = s.store.List(ctx, q); err != nil {
		return signer.StoreErr(err, "orders")
	}
	open := 0
	for _, rec := range page.Records {
		o, err := s.ownedOrder(ctx, d, acct, rec.ID)
		if err != nil {
			return err
		}
		if o.Status == StatusPending || o.Status == StatusReady || o.Status == StatusProcessing {
			open++
		}
	}
	if open >= s.cfg.OpenOrdersPerAccount {
		return problem(ReasonRateLimited, fmt.Sprintf("the account holds %d open orders, its limit: finalize or let some expire first", open))
	}
	return nil
}

// orderStatus moves a pending or ready order to what its authorizations
// and expiry say; it reports a change.
func (s *Service) orderStatus(ctx context.Context, d *directory, o *order) (bool, error) {
	if o.Status != StatusPending && o.Status != StatusReady {
		return false, nil
	}
	was := o.Status
	if s.now().After(o.Expires) {
		o.Status = StatusInvalid
		o.Error = problemDoc(ReasonMalformed, "the order expired")
		return true, nil
	}
	if o.Status == StatusReady {
		return false, nil
	}
	all := true
	for _, id := range o.Authzs {
		_, a, err := getJSON[authz](ctx, s.store, RecordAuthz, d.Tenant, id, "authorization")
		if err != nil {
			return false, err
		}
		switch authzStatus(a, s.now()) {
		case StatusValid:
		case StatusPending:
			all = false
		default:
			o.Status = StatusInvalid
			o.Error = problemDoc(ReasonUnauthorized, "authorization for "+a.Identifier.Value+" is "+authzStatus(a, s.now()))
			return true, nil
		}
	}
	if all {
		o.Status = StatusReady
	}
	return o.Status != was, nil
}

// authzStatus is an authorization's status now.
func authzStatus(a *authz, now time.Time) string {
	if (a.Status == StatusPending || a.Status == StatusValid) && now.After(a.Expires) {
		return StatusExpired
	}
	return a.Status
}

// Order answers a POST-as-GET of an order (ACME_ORDER_RETRIEVE).
func (s *Service) Order(ctx context.Context, r Request) (*Answer, error) {
	d, req, err := s.accountRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	ctx = withAccount(ctx, req.acctRec.ID)
	op := s.start(ctx, d, "ACME_ORDER_RETRIEVE")
	o, err := s.ownedOrder(ctx, d, req.acctRec.ID, r.ID)
	if err != nil {
		return nil, op.Done(r.ID, err)
	}
	ans := &Answer{Body: orderObject(r, r.ID, o)}
	if o.Status == StatusProcessing {
		ans.RetryAfter = time.Second
	}
	return ans, op.Done(r.ID, nil)
}

// accountRequest resolves the directory and verifies a request signed by
// an account.
func (s *Service) accountRequest(ctx context.Context, r Request) (*directory, *signed, error) {
	d, err := s.directoryOf(ctx, r.Dir)
	if err != nil {
		return nil, nil, err
	}
	req, err := s.verify(ctx, d, r, false, false)
	if err != nil {
		return nil, nil, err
	}
	return d, req, nil
}

// AccountOrders lists the orders of an account (POST-as-GET,
// ACME_ORDER_LIST).
func (s *Service) AccountOrders(ctx context.Context, r Request) (*Answer, error) {
	d, req, err := s.accountRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	ctx = withAccount(ctx, req.acctRec.ID)
	op := s.start(ctx, d, "ACME_ORDER_LIST")
	if req.acctRec.ID != r.ID {
		return nil, op.Done(r.ID, problem(ReasonUnauthorized, "the request is not signed by this account"))
	}
	page, err := s.store.List(ctx, store.Query{Kind: RecordOrder, Tenant: d.Tenant, Limit: 1000,
		Filters: []store.Filter{{Field: "account", Value: r.ID, Match: store.Equal}}})
	if err != nil {
		return nil, op.Done(r.ID, signer.StoreErr(err, "orders"))
	}
	urls := []string{}
	for _, rec := range page.Records {
		urls = append(urls, orderURL(r.Base, r.Dir, rec.ID))
	}
	return &Answer{Body: map[string][]string{"orders": urls}}, op.Done(r.ID, nil)
}

// Authorization answers a POST-as-GET of an authorization
// (ACME_AUTHZ_RETRIEVE), or deactivates it (ACME_AUTHZ_DEACTIVATE).
func (s *Service) Authorization(ctx context.Context, r Request) (*Answer, error) {
	d, req, err := s.accountRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	acct := req.acctRec.ID
	ctx = withAccount(ctx, acct)
	deactivate := !req.postAsGet()
	event := "ACME_AUTHZ_RETRIEVE"
	if deactivate {
		event = "ACME_AUTHZ_DEACTIVATE"
	}
	op := s.start(ctx, d, event)
	if deactivate {
		var p struct {
			Status string `json:"status"`
		}
		if err := req.decode(&p); err != nil {
			return nil, op.Done(r.ID, err)
		}
		if p.Status != StatusDeactivated {
			return nil, op.Done(r.ID, problem(ReasonMalformed, "an authorization's status can only become deactivated"))
		}
	}
	a, err := update(ctx, s.store, RecordAuthz, d.Tenant, r.ID, "authorization", func(_ *store.Record, a *authz) (bool, error) {
		if a.Dir != d.ID || a.Account != acct {
			return false, problem(ReasonUnauthorized, "the authorization belongs to another account")
		}
		if !deactivate {
			return false, nil
		}
		if st := authzStatus(a, s.now()); st != StatusPending && st != StatusValid {
			return false, problem(ReasonMalformed, "the authorization is "+st)
		}
		a.Status = StatusDeactivated
		return true, nil
	})
	if err = op.Done(r.ID, err); err != nil {
		return nil, err
	}
	a.Status = authzStatus(a, s.now())
	return &Answer{Body: authzObject(r, r.ID, a)}, nil
}

// Challenge asks the server to validate a challenge: the validation runs
// now, bounded in time, and its result is answered (ACME_CHALLENGE_VALIDATE).
func (s *Service) Challenge(ctx context.Context, r Request) (*Answer, error) {
	d, req, err := s.accountRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	acct := req.acctRec.ID
	ctx = withAccount(ctx, acct)
	_, a, err := getJSON[authz](ctx, s.store, RecordAuthz, d.Tenant, r.ID, "authorization")
	if err != nil {
		return nil, err
	}
	if a.Dir != d.ID || a.Account != acct {
		return nil, problem(ReasonUnauthorized, "the authorization belongs to another account")
	}
	i := slices.IndexFunc(a.Challenges, func(c *challenge) bool { return c.Type == r.Type })
	if i < 0 {
		return nil, &signer.Error{Kind: signer.KindNotFound, Reason: ReasonMalformed, Msg: "the authorization has no such challenge"}
	}
	up := []string{"<" + authzURL(r.Base, r.Dir, r.ID) + `>;rel="up"`}
	c := a.Challenges[i]
	if req.postAsGet() || c.Status != StatusPending || authzStatus(a, s.now()) != StatusPending {
		return &Answer{Body: challengeObject(r, r.ID, c), Links: up}, s.start(ctx, d, "ACME_CHALLENGE_RETRIEVE").Done(r.ID, nil)
	}
	op := s.start(ctx, d, "ACME_CHALLENGE_VALIDATE")
	thumb, err := thumbprint(req.jwk)
	if err != nil {
		return nil, op.Done(r.ID, err)
	}
	keyAuth := c.Token + "." + thumb
	vctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	verr := s.v.validate(vctx, c.Type, a.Identifier, c.Token, keyAuth)
	cancel()
	now := s.now().UTC()
	a, err = update(ctx, s.store, RecordAuthz, d.Tenant, r.ID, "authorization", func(_ *store.Record, a *authz) (bool, error) {
		c := a.Challenges[i]
		if c.Status != StatusPending || a.Status != StatusPending {
			return false, nil // another request settled it
		}
		if verr != nil {
			c.Status, c.Error = StatusInvalid, problemDoc(signer.ReasonOf(verr), signer.AsError(verr).Msg)
			a.Status = StatusInvalid
		} else {
			c.Status, c.Validated = StatusValid, &now
			a.Status = StatusValid
		}
		return true, nil
	})
	if err != nil {
		return nil, op.Done(r.ID, err)
	}
	if verr != nil {
		err = verr
	}
	_ = op.Done(r.ID, err)
	return &Answer{Body: challengeObject(r, r.ID, a.Challenges[i]), Links: up}, nil
}

// Finalize issues the order's certificate from its CSR
// (ACME_ORDER_FINALIZE).
func (s *Service) Finalize(ctx context.Context, r Request) (*Answer, error) {
	d, req, err := s.accountRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	ctx = withAccount(ctx, req.acctRec.ID)
	op := s.start(ctx, d, "ACME_ORDER_FINALIZE")
	o, err := s.finalize(ctx, d, req, r.ID)
	if err != nil {
		return nil, op.Done(r.ID, err)
	}
	return &Answer{Location: orderURL(r.Base, r.Dir, r.ID), Body: orderObject(r, r.ID, o)}, op.Done(r.ID, nil)
}

func (s *Service) finalize(ctx context.Context, d *directory, req *signed, id string) (*order, error) {
	acct := req.acctRec.ID
	var p struct {
		CSR string `json:"csr"`
	}
	if err := req.decode(&p); err != nil {
		return nil, err
	}
	o, err := s.ownedOrder(ctx, d, acct, id)
	if err != nil {
		return nil, err
	}
	if o.Status != StatusReady {
		return nil, problem(ReasonOrderNotReady, "the order is "+o.Status+", not ready")
	}
	der, err := base64.RawURLEncoding.DecodeString(p.CSR)
	if err != nil {
		return nil, problem(ReasonBadCSR, "csr must be base64url DER")
	}
	if err := s.checkCSR(d, o, req, der); err != nil {
		return nil, err
	}
	// ready -> processing: of two finalizations, one goes on.
	o, err = update(ctx, s.store, RecordOrder, d.Tenant, id, "order", func(rec *store.Record, o *order) (bool, error) {
		if o.Status != StatusReady {
			return false, problem(ReasonOrderNotReady, "the order is "+o.Status+", not ready")
		}
		o.Status = StatusProcessing
		rec.Fields = orderFields(o)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	certID, ierr := s.issue(ctx, d, acct, id, o, der)
	o, err = update(ctx, s.store, RecordOrder, d.Tenant, id, "order", func(rec *store.Record, o *order) (bool, error) {
		if ierr != nil {
			o.Status = StatusReady // the client may try another CSR
		} else {
			o.Status, o.Cert = StatusValid, certID
		}
		rec.Fields = orderFields(o)
		return true, nil
	})
	if ierr != nil {
		return nil, ierr
	}
	return o, err
}

// checkCSR checks a finalization's CSR against its order and the policy.
func (s *Service) checkCSR(d *directory, o *order, req *signed, der []byte) error {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return problem(ReasonBadCSR, "the CSR cannot be read")
	}
	if err := csr.CheckSignature(); err != nil {
		return problem(ReasonBadCSR, "the CSR's signature does not verify")
	}
	if err := keyTypeAllowed(csr.PublicKey, d.Policy.KeyTypes); err != nil {
		return problem(ReasonBadCSR, "the CSR's key: "+err.Error())
	}
	if encoding.PublicKeysEqual(csr.PublicKey, req.jwk.Key) {
		return problem(ReasonBadCSR, "the CSR's key must not be the account key")
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return problem(ReasonBadCSR, "the CSR may name only the order's DNS names and IP addresses")
	}
	want := map[string]bool{}
	for _, id := range o.Identifiers {
		want[id.Type+":"+id.Value] = true
	}
	got := map[string]bool{}
	for _, n := range csr.DNSNames {
		got["dns:"+strings.ToLower(n)] = true
	}
	for _, ip := range csr.IPAddresses {
		got["ip:"+ip.String()] = true
	}
	if cn := csr.Subject.CommonName; cn != "" {
		k := "dns:" + strings.ToLower(cn)
		if ip := net.ParseIP(cn); ip != nil {
			k = "ip:" + ip.String()
		}
		if !want[k] {
			return problem(ReasonBadCSR, "the CSR's common name is not an identifier of the order")
		}
		got[k] = true
	}
	if len(got) != len(want) {
		return problem(ReasonBadCSR, "the CSR must name exactly the order's identifiers")
	}
	for k := range want {
		if !got[k] {
			return problem(ReasonBadCSR, "the CSR must name exactly the order's identifiers")
		}
	}
	return nil
}

// issued is a certificate's record.
type issued struct {
	Dir      string    `json:"dir"`
	Account  string    `json:"account"`
	Order    string    `json:"order"`
	PCAID    string    `json:"pca_id"`
	Serial   string    `json:"serial"`
	DER      []byte    `json:"der"`
	Chain    string    `json:"chain"`
	Replaced string    `json:"replaced_by,omitempty"` // the order that replaces it (RFC 9773)
	Created  time.Time `json:"created"`
}

func serialKey(hexSerial string) string { return "serial:" + hexSerial }

// issue has the PCA family sign the CSR and keeps the certificate.
func (s *Service) issue(ctx context.Context, d *directory, acct, orderID string, o *order, der []byte) (string, error) {
	pcaID, cert, chain, err := s.issuer.IssueEntityFromCSR(ctx, d.Tenant, d.CAID, der, time.Duration(d.Policy.MaxValidityDays)*24*time.Hour)
	if err != nil {
		if signer.KindOf(err) == signer.KindInvalid {
			return "", problem(ReasonBadCSR, "the CA refused the CSR: "+signer.AsError(err).Msg)
		}
		return "", err
	}
	c, err := x509.ParseCertificate(cert)
	if err != nil {
		return "", err
	}
	id := newID()
	rec := issued{Dir: d.ID, Account: acct, Order: orderID, PCAID: pcaID, Serial: c.SerialNumber.Text(16),
		DER: cert, Chain: chain, Created: s.now().UTC()}
	data, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	if err := s.store.Create(ctx, &store.Record{Kind: RecordCert, Tenant: d.Tenant, ID: id,
		Unique: []string{serialKey(rec.Serial)}, Data: data}, store.WriteOpts{}); err != nil {
		return "", signer.StoreErr(err, "certificate")
	}
	if o.Replaces != "" {
		s.markReplaced(ctx, d, o.Replaces, orderID)
	}
	return id, nil
}

// Certificate answers a POST-as-GET of a certificate: the chain as PEM
// (ACME_CERTIFICATE_DOWNLOAD).
func (s *Service) Certificate(ctx context.Context, r Request) (*Answer, error) {
	d, req, err := s.accountRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	ctx = withAccount(ctx, req.acctRec.ID)
	op := s.start(ctx, d, "ACME_CERTIFICATE_DOWNLOAD")
	_, c, err := getJSON[issued](ctx, s.store, RecordCert, d.Tenant, r.ID, "certificate")
	if err != nil {
		return nil, op.Done(r.ID, err)
	}
	if c.Dir != d.ID || c.Account != req.acctRec.ID {
		return nil, op.Done(r.ID, problem(ReasonUnauthorized, "the certificate belongs to another account"))
	}
	leaf := pemCert(c.DER)
	return &Answer{PEM: append(leaf, c.Chain...)}, op.Done(r.ID, nil)
}
