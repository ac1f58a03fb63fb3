// Package acme is the ACME family (RFC 8555): an ACME server in front of
// each issuing CA of the PCA family that a tenant enables for ACME. A
// directory names its CA and its policy; accounts, orders,
// authorizations, challenges and the certificates issued through it are
// records of the tenant, nonces records of the platform, so that replicas
// sharing a store share them. Certificates are issued by the PCA family
// (through the Issuer interface the daemon wires) and are listed,
// revoked and published on CRLs and OCSP there like any other.
package acme

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// Record kinds of the family.
const (
	// RecordDirectory is a directory (platform namespace, found by its id
	// from the URL; field tenant lists a tenant's).
	RecordDirectory = "acme_directory"
	RecordAccount   = "acme_account"
	RecordOrder     = "acme_order"
	RecordAuthz     = "acme_authz"
	RecordCert      = "acme_cert"
	// RecordNonce is one unused nonce (platform namespace).
	RecordNonce = "acme_nonce"
	// RecordEAB is an external account binding key of a tenant.
	RecordEAB = "acme_eab"
)

// Per-tenant quota resources of the family.
const (
	QuotaDirectories = "acme_directories" // default 100
	QuotaAccounts    = "acme_accounts"    // default 10000
)

// Issuer is what the family needs of the CAs it fronts; *pca.Service
// implements it.
type Issuer interface {
	IssuingCA(ctx context.Context, tenant, caID string) (*x509.Certificate, error)
	IssueEntityFromCSR(ctx context.Context, tenant, caID string, csrDER []byte, validity time.Duration) (id string, der []byte, chainPEM string, err error)
	RevokeCertificate(ctx context.Context, tenant, id, reason string) error
	CertificateStatus(ctx context.Context, tenant, id string) (status, reason string, err error)
}

// Config is the validator's and the protocol's tuning. Zero values take
// the RFCs' defaults.
type Config struct {
	// HTTPPort is the port http-01 validation connects to (80), and the
	// only port an http redirect may name.
	HTTPPort int
	// HTTPSPort is the only port an https redirect of http-01 may name
	// (443).
	HTTPSPort int
	// TLSALPNPort is the port tls-alpn-01 validation connects to (443).
	TLSALPNPort int
	// Resolver is the DNS server (host:port) the validator asks for
	// addresses and dns-01 TXT records; empty: the system's.
	Resolver string
	// Timeout bounds one validation (10s).
	Timeout time.Duration
	// NonceTTL is how long an unused nonce stays valid (1h).
	NonceTTL time.Duration
	// OrderTTL is how long a pending order and its authorizations stay
	// valid (7 days).
	OrderTTL time.Duration
	// OrdersPerHour and the burst limit the new orders of one account
	// (default 300 an hour, bursts of 50); negative: no limit.
	OrdersPerHour float64
	OrderBurst    int64
	// OpenOrdersPerAccount bounds the orders an account holds pending,
	// ready or processing (default 100); negative: no bound.
	OpenOrdersPerAccount int
}

func (c Config) withDefaults() Config {
	if c.HTTPPort == 0 {
		c.HTTPPort = 80
	}
	if c.HTTPSPort == 0 {
		c.HTTPSPort = 443
	}
	if c.TLSALPNPort == 0 {
		c.TLSALPNPort = 443
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.NonceTTL <= 0 {
		c.NonceTTL = time.Hour
	}
	if c.OrderTTL <= 0 {
		c.OrderTTL = 7 * 24 * time.Hour
	}
	if c.OrdersPerHour == 0 {
		c.OrdersPerHour = 300
	}
	if c.OrderBurst <= 0 {
		c.OrderBurst = 50
	}
	if c.OpenOrdersPerAccount == 0 {
		c.OpenOrdersPerAccount = 100
	}
	return c
}

// Service is the family's use cases over a core.
type Service struct {
	core   *signer.Core
	store  store.Store
	issuer Issuer
	cfg    Config
	v      *validator
}

// New returns the family's service over core, issuing through issuer.
func New(core *signer.Core, issuer Issuer, cfg Config) *Service {
	cfg = cfg.withDefaults()
	if issuer == nil {
		issuer = noIssuer{}
	}
	return &Service{core: core, store: core.Store(), issuer: issuer, cfg: cfg, v: newValidator(cfg)}
}

// Family is what the core needs of the family: directories listed by
// tenant, orders by account and open orders by account, nonces by expiry
// (purged when expired), EAB keys by directory.
func Family() signer.Family {
	return signer.Family{
		Name: "acme",
		Indexes: []store.Index{
			{Kind: RecordDirectory, Field: "tenant"},
			{Kind: RecordOrder, Field: "account"},
			{Kind: RecordOrder, Field: "open"},
			{Kind: RecordNonce, Field: "expires"},
			{Kind: RecordEAB, Field: "directory"},
		},
		Quotas: []signer.QuotaDefault{
			{Resource: QuotaDirectories, Default: 100},
			{Resource: QuotaAccounts, Default: 10000},
		},
		Janitors: []signer.Janitor{
			{Name: "expired-acme-nonces", Run: purgeNonces},
		},
	}
}

func (s *Service) now() time.Time { return s.core.Now() }

// newID is a random URL-safe id.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// msField is a time as a sortable index field.
func msField(t time.Time) string { return fmt.Sprintf("%016d", t.UnixMilli()) }

// getJSON reads and decodes a record.
func getJSON[T any](ctx context.Context, st store.Store, kind, tenant, id, what string) (*store.Record, *T, error) {
	if id == "" || len(id) > 128 {
		return nil, nil, problem(ReasonMalformed, what+" does not exist")
	}
	rec, err := st.Get(ctx, kind, tenant, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return nil, nil, &signer.Error{Kind: signer.KindNotFound, Reason: ReasonMalformed, Msg: what + " does not exist"}
	}
	if err != nil {
		return nil, nil, signer.StoreErr(err, what)
	}
	var v T
	if err := json.Unmarshal(rec.Data, &v); err != nil {
		return nil, nil, signer.StoreErr(err, what)
	}
	return rec, &v, nil
}

// update re-reads a record, applies change and writes it, again on a
// version conflict. change returns false to write nothing.
func update[T any](ctx context.Context, st store.Store, kind, tenant, id, what string, change func(*store.Record, *T) (bool, error)) (*T, error) {
	for attempt := 0; ; attempt++ {
		rec, v, err := getJSON[T](ctx, st, kind, tenant, id, what)
		if err != nil {
			return nil, err
		}
		ok, err := change(rec, v)
		if err != nil || !ok {
			return v, err
		}
		if rec.Data, err = json.Marshal(v); err != nil {
			return nil, err
		}
		err = st.Update(ctx, rec, store.WriteOpts{})
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, store.ErrVersionConflict) || attempt >= 20 {
			return nil, signer.StoreErr(err, what)
		}
		signer.Backoff(attempt)
	}
}

// noIssuer stands in when no CA family is wired: nothing can be enabled.
type noIssuer struct{}

var errNoIssuer = &signer.Error{Kind: signer.KindUnavailable, Msg: "ACME has no CA family to issue through"}

func (noIssuer) IssuingCA(context.Context, string, string) (*x509.Certificate, error) {
	return nil, errNoIssuer
}
func (noIssuer) IssueEntityFromCSR(context.Context, string, string, []byte, time.Duration) (string, []byte, string, error) {
	return "", nil, "", errNoIssuer
}
func (noIssuer) RevokeCertificate(context.Context, string, string, string) error { return errNoIssuer }
func (noIssuer) CertificateStatus(context.Context, string, string) (string, string, error) {
	return "", "", errNoIssuer
}
