package acme

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// EAB modes of a directory.
const (
	EABOff      = "off"      // a binding sent with newAccount is ignored
	EABOptional = "optional" // a binding is checked when given
	EABRequired = "required" // newAccount needs one
)

// Policy is what a directory lets its accounts order.
type Policy struct {
	// AllowedDomains are DNS suffixes: a name is allowed when it equals
	// one or lies below it. Empty: every DNS name.
	AllowedDomains []string `json:"allowed_domains,omitempty"`
	// AllowedIPRanges are CIDR ranges of the IP identifiers allowed.
	// Empty: no IP identifier.
	AllowedIPRanges []string `json:"allowed_ip_ranges,omitempty"`
	// MaxValidityDays bounds the certificates' validity (default and at
	// most 397 days; 90 when 0).
	MaxValidityDays int `json:"max_validity_days,omitempty"`
	// KeyTypes are the certificate key types allowed (RSA2048, RSA3072,
	// RSA4096, EC256, EC384, EC521, ED25519). Empty: all of them.
	KeyTypes []string `json:"key_types,omitempty"`
	// ExternalAccountBinding is off, optional or required (default off).
	ExternalAccountBinding string `json:"external_account_binding,omitempty"`
}

const (
	defaultValidityDays = 90
	maxValidityDays     = 397
)

var keyTypeNames = []string{"RSA2048", "RSA3072", "RSA4096", "EC256", "EC384", "EC521", "ED25519"}

// check validates a policy and fills in its defaults.
func (p *Policy) check() error {
	var fe signer.FieldErrors
	for i, d := range p.AllowedDomains {
		d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "."))
		if !validDNSName(d) {
			fe.Add(fmt.Sprintf("policy.allowed_domains[%d]", i), p.AllowedDomains[i], "must be a DNS name")
		}
		p.AllowedDomains[i] = d
	}
	for i, r := range p.AllowedIPRanges {
		_, n, err := net.ParseCIDR(r)
		if err != nil {
			fe.Add(fmt.Sprintf("policy.allowed_ip_ranges[%d]", i), r, "must be a CIDR range such as 10.0.0.0/8")
			continue
		}
		p.AllowedIPRanges[i] = n.String()
	}
	if p.MaxValidityDays == 0 {
		p.MaxValidityDays = defaultValidityDays
	}
	if p.MaxValidityDays < 1 || p.MaxValidityDays > maxValidityDays {
		fe.Add("policy.max_validity_days", p.MaxValidityDays, fmt.Sprintf("must be from 1 to %d", maxValidityDays))
	}
	for i, k := range p.KeyTypes {
		if !slices.Contains(keyTypeNames, k) {
			fe.Add(fmt.Sprintf("policy.key_types[%d]", i), k, "must be one of "+strings.Join(keyTypeNames, ", "))
		}
	}
	switch p.ExternalAccountBinding {
	case "":
		p.ExternalAccountBinding = EABOff
	case EABOff, EABOptional, EABRequired:
	default:
		fe.Add("policy.external_account_binding", p.ExternalAccountBinding, "must be off, optional or required")
	}
	return fe.Err()
}

// keyTypeName names a public key as key_types does ("" when unknown).
func keyTypeName(pub crypto.PublicKey) string {
	if k, ok := pub.(*rsa.PublicKey); ok {
		return "RSA" + strconv.Itoa(k.N.BitLen())
	}
	alg, _, err := encoding.KeyAlgorithm(pub)
	if err != nil {
		return ""
	}
	return string(alg)
}

// keyTypeAllowed checks a key against allowed (nil: any key hsmca reads,
// RSA of 2048 to 8192 bits).
func keyTypeAllowed(pub crypto.PublicKey, allowed []string) error {
	if _, _, err := encoding.KeyAlgorithm(pub); err != nil {
		return err
	}
	if len(allowed) == 0 || slices.Contains(allowed, keyTypeName(pub)) {
		return nil
	}
	return fmt.Errorf("key type %s is not allowed", keyTypeName(pub))
}

// directory is a directory's record.
type directory struct {
	ID      string    `json:"-"`
	Tenant  string    `json:"tenant"`
	CAID    string    `json:"ca_id"`
	Policy  Policy    `json:"policy"`
	Created time.Time `json:"created"`
}

// Directory is a directory as the tenant's routes show it.
type Directory struct {
	ID      string
	CAID    string
	Policy  Policy
	Created time.Time
}

func (d *directory) view() *Directory {
	return &Directory{ID: d.ID, CAID: d.CAID, Policy: d.Policy, Created: d.Created}
}

// CreateDirectory enables ACME on a CA of the tenant: a directory with
// its policy (ACME_DIRECTORY_CREATE).
func (s *Service) CreateDirectory(ctx context.Context, tenant, caID string, p Policy) (*Directory, error) {
	op := s.core.Start(ctx, tenant, "ACME_DIRECTORY_CREATE")
	d, err := s.createDirectory(ctx, tenant, caID, p)
	if err != nil {
		return nil, op.Done("", err)
	}
	return d.view(), op.Done(d.ID, nil)
}

func (s *Service) createDirectory(ctx context.Context, tenant, caID string, p Policy) (*directory, error) {
	if caID == "" {
		return nil, signer.Invalid("ca_id", caID, "is required")
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if _, err := s.issuer.IssuingCA(ctx, tenant, caID); err != nil {
		return nil, err
	}
	limit, err := s.core.QuotaFree(ctx, tenant, QuotaDirectories)
	if err != nil {
		return nil, err
	}
	d := &directory{ID: newID(), Tenant: tenant, CAID: caID, Policy: p, Created: s.now().UTC()}
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	if err := s.store.ReserveQuota(ctx, tenant, QuotaDirectories, 1, limit); err != nil {
		return nil, signer.StoreErr(err, "ACME directories")
	}
	rec := &store.Record{Kind: RecordDirectory, Tenant: store.PlatformTenant, ID: d.ID,
		Fields: map[string]string{"tenant": tenant}, Data: data}
	if err := s.store.Create(ctx, rec, store.WriteOpts{}); err != nil {
		_ = s.store.ReleaseQuota(context.WithoutCancel(ctx), tenant, QuotaDirectories, 1)
		return nil, signer.StoreErr(err, "directory")
	}
	return d, nil
}

// tenantDirectory reads a directory of the tenant.
func (s *Service) tenantDirectory(ctx context.Context, tenant, id string) (*directory, error) {
	d, err := s.directoryOf(ctx, id)
	if err == nil && d.Tenant != tenant {
		err = &signer.Error{Kind: signer.KindNotFound, Msg: "no such ACME directory"}
	}
	return d, err
}

// GetDirectory shows a directory of the tenant (ACME_DIRECTORY_RETRIEVE).
func (s *Service) GetDirectory(ctx context.Context, tenant, id string) (*Directory, error) {
	op := s.core.Start(ctx, tenant, "ACME_DIRECTORY_RETRIEVE")
	d, err := s.tenantDirectory(ctx, tenant, id)
	if err != nil {
		return nil, op.Done(id, err)
	}
	return d.view(), op.Done(id, nil)
}

// ListDirectories lists the tenant's directories (ACME_DIRECTORY_LIST).
func (s *Service) ListDirectories(ctx context.Context, tenant string) ([]*Directory, error) {
	op := s.core.Start(ctx, tenant, "ACME_DIRECTORY_LIST")
	page, err := s.store.List(ctx, store.Query{Kind: RecordDirectory, Tenant: store.PlatformTenant,
		Filters: []store.Filter{{Field: "tenant", Value: tenant, Match: store.Equal}}})
	if err != nil {
		return nil, op.Done("", signer.StoreErr(err, "directories"))
	}
	out := []*Directory{}
	for _, r := range page.Records {
		var d directory
		if err := json.Unmarshal(r.Data, &d); err != nil {
			return nil, op.Done("", signer.StoreErr(err, "directory"))
		}
		d.ID = r.ID
		out = append(out, d.view())
	}
	return out, op.Done("", nil)
}

// DeleteDirectory disables ACME on a directory: its URLs answer 404 from
// then on; the certificates it issued stay in the PCA family
// (ACME_DIRECTORY_DELETE).
func (s *Service) DeleteDirectory(ctx context.Context, tenant, id string) error {
	op := s.core.Start(ctx, tenant, "ACME_DIRECTORY_DELETE")
	if _, err := s.tenantDirectory(ctx, tenant, id); err != nil {
		return op.Done(id, err)
	}
	if err := s.store.Delete(ctx, RecordDirectory, store.PlatformTenant, id, store.WriteOpts{}); err != nil {
		return op.Done(id, signer.StoreErr(err, "directory"))
	}
	_ = s.store.ReleaseQuota(context.WithoutCancel(ctx), tenant, QuotaDirectories, 1)
	return op.Done(id, nil)
}

// DirectoryObject is the directory resource (RFC 8555 §7.1.1).
type DirectoryObject struct {
	NewNonce    string         `json:"newNonce"`
	NewAccount  string         `json:"newAccount"`
	NewOrder    string         `json:"newOrder"`
	RevokeCert  string         `json:"revokeCert"`
	KeyChange   string         `json:"keyChange"`
	RenewalInfo string         `json:"renewalInfo"`
	Meta        map[string]any `json:"meta"`
}

// DirectoryResource answers the directory URL.
func (s *Service) DirectoryResource(ctx context.Context, r Request) (*Answer, error) {
	d, err := s.directoryOf(ctx, r.Dir)
	if err != nil {
		return nil, err
	}
	base := dirURL(r.Base, d.ID)
	return &Answer{Body: DirectoryObject{NewNonce: base + "/new-nonce", NewAccount: base + "/new-account",
		NewOrder: base + "/new-order", RevokeCert: base + "/revoke-cert", KeyChange: base + "/key-change",
		RenewalInfo: base + "/renewal-info",
		Meta:        map[string]any{"externalAccountRequired": d.Policy.ExternalAccountBinding == EABRequired}}}, nil
}

// DirectoryExists answers whether a directory id is known (new-nonce).
func (s *Service) DirectoryExists(ctx context.Context, id string) error {
	_, err := s.directoryOf(ctx, id)
	return err
}
