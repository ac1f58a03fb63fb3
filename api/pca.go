package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
)

// PCAAPI is what the CCM private CA handlers need of the family
// (signer/pca's Service): the CA routes' methods, the certificate
// routes', and the body-less state changes and quotas.
type PCAAPI interface {
	pcaCAs
	pcaCerts
	pcaTags
	pcaOCSP
	DisableCA(ctx context.Context, tenant, id string) error
	EnableCA(ctx context.Context, tenant, id string) error
	RestoreCA(ctx context.Context, tenant, id string) error
	Quota(ctx context.Context, tenant, typ string) (pcasvc.QuotaUse, error)
	PublicCACertificate(ctx context.Context, caID string) ([]byte, error)
}

// mountPCA mounts Huawei CCM private CA (family 2).
func (s *server) mountPCA() {
	ops := Access{TenantRoles: []string{signer.RoleAdmin, signer.RoleCAOperator}}
	const cas = "/v1/private-certificate-authorities"
	s.handle(pca, "POST", cas, ops, s.pcaCreateCA)
	s.handle(pca, "GET", cas, ops, s.pcaListCAs)
	s.handle(pca, "GET", cas+"/quotas", ops, s.pcaQuota(pcasvc.QuotaTypeCA))
	s.handle(pca, "GET", cas+"/:ca_id", ops, s.pcaShowCA)
	s.handle(pca, "DELETE", cas+"/:ca_id", ops, s.pcaDeleteCA)
	s.handle(pca, "POST", cas+"/:ca_id/activate", ops, s.pcaActivateCA)
	s.handle(pca, "GET", cas+"/:ca_id/csr", ops, s.pcaCSR)
	s.handle(pca, "POST", cas+"/:ca_id/import", ops, s.pcaImportCA)
	s.handle(pca, "POST", cas+"/:ca_id/export", ops, s.pcaExportCA)
	s.handle(pca, "POST", cas+"/:ca_id/disable", ops, s.pcaCAState(s.pcaAPI.DisableCA))
	s.handle(pca, "POST", cas+"/:ca_id/enable", ops, s.pcaCAState(s.pcaAPI.EnableCA))
	s.handle(pca, "POST", cas+"/:ca_id/restore", ops, s.pcaCAState(s.pcaAPI.RestoreCA))
	s.handle(pca, "POST", cas+"/:ca_id/revoke", ops, s.pcaRevokeCA)
	s.handle(pca, "POST", cas+"/:ca_id/crl/enable", ops, s.pcaCRLEnable)
	s.handle(pca, "POST", cas+"/:ca_id/crl/disable", ops, s.pcaCRLDisable)
	s.handle(pca, "GET", cas+"/:ca_id/crl", Access{Public: true}, s.pcaCRL)
	s.handle(pca, "GET", cas+"/:ca_id/certificate", Access{Public: true}, s.pcaCACertificate)
	s.handle(pca, "POST", cas+"/:ca_id/ocsp/switch", ops, s.pcaOCSPSwitch)

	const certs = "/v1/private-certificates"
	s.handle(pca, "POST", certs, ops, s.pcaIssue)
	s.handle(pca, "GET", certs, ops, s.pcaListCerts)
	s.handle(pca, "GET", certs+"/quotas", ops, s.pcaQuota(pcasvc.QuotaTypeCertificate))
	// An issuance from a CSR reads the CA and signs with its key before it
	// stores the certificate: it may run beside its token's check, which
	// the certificate's create may carry.
	opsBeside := ops
	opsBeside.Overlap, opsBeside.Carry = true, true
	s.handle(pca, "POST", certs+"/csr", opsBeside, s.pcaIssueCSR)
	s.handle(pca, "POST", certs+"/csr/parse", ops, s.pcaParseCSR)
	s.handle(pca, "GET", certs+"/:certificate_id", ops, s.pcaShowCert)
	s.handle(pca, "DELETE", certs+"/:certificate_id", ops, s.pcaDeleteCert)
	s.handle(pca, "POST", certs+"/:certificate_id/export", ops, s.pcaExportCert)
	s.handle(pca, "POST", certs+"/:certificate_id/revoke", ops, s.pcaRevokeCert)

	// Tags (pca_tags.go). The static segments (tags, resource-instances)
	// sit beside the id parameter as quotas does: gin matches them first.
	for _, t := range []struct {
		base, param string
		target      pcasvc.TagTarget
	}{{cas, "ca_id", pcasvc.TagCAs}, {certs, "certificate_id", pcasvc.TagCertificates}} {
		id := t.base + "/:" + t.param
		s.handle(pca, "GET", t.base+"/tags", ops, s.pcaTagKeys(t.target))
		s.handle(pca, "POST", t.base+"/resource-instances/filter", ops, s.pcaTagFilter(t.target))
		s.handle(pca, "POST", t.base+"/resource-instances/count", ops, s.pcaTagCount(t.target))
		s.handle(pca, "GET", id+"/tags", ops, s.pcaTagsList(t.target, t.param))
		s.handle(pca, "POST", id+"/tags", ops, s.pcaTagCreate(t.target, t.param))
		s.handle(pca, "POST", id+"/tags/create", ops, s.pcaTagsBatch(t.target, t.param, false))
		s.handle(pca, "DELETE", id+"/tags/delete", ops, s.pcaTagsBatch(t.target, t.param, true))
	}
}

func tenantOf(c *gin.Context) string { return signer.CallerFrom(c.Request.Context()).Tenant }

// pcaBody decodes a JSON body leniently (the public service's clients send
// fields hsmca does not use); an empty body is an empty object when
// optional. It answers the error itself and reports whether to go on.
func pcaBody(c *gin.Context, v any, optional bool) bool {
	return pcaBodyAnswer(c, decodeJSON(c.Request.Body, v, false), optional)
}

// pcaBodyAnswer answers the error of a body's decoding, if any, in the
// family's envelope; it says whether the handler goes on.
func pcaBodyAnswer(c *gin.Context, err error, optional bool) bool {
	var (
		mbe *http.MaxBytesError
		ute *json.UnmarshalTypeError
	)
	switch {
	case err == nil:
		return true
	case errors.Is(err, io.EOF) && optional:
		return true
	case errors.As(err, &mbe):
		c.AbortWithStatusJSON(http.StatusRequestEntityTooLarge, huaweiEnvelope{Code: PCACodeBadParameter, Msg: "request body too large"})
	case errors.Is(err, io.EOF):
		pcaError(c, pcaInvalid("body", "", "request body is required"))
	case errors.As(err, &ute):
		pcaError(c, pcaInvalid(ute.Field, nil, "must be "+ute.Type.String()))
	default:
		pcaError(c, pcaInvalid("body", nil, "malformed JSON body"))
	}
	return false
}

func pcaInvalid(field string, v any, msg string) error {
	return signer.Refused(signer.KindInvalid, pcasvc.ReasonBadParameter, field, v, msg)
}

// pcaPaging reads limit (0..1000, default 10) and offset (0..2^31-1, the
// public service's Integer).
func pcaPaging(c *gin.Context) (limit, offset int, ok bool) {
	if limit, ok = queryInt(c, pca, "limit", 10, 0, 1000, "must be an integer from 0 to 1000"); !ok {
		return 0, 0, false
	}
	if offset, ok = queryInt(c, pca, "offset", 0, 0, math.MaxInt32, "must be an integer from 0 to 2147483647"); !ok {
		return 0, 0, false
	}
	return limit, offset, true
}

type pcaDN struct {
	CommonName         string `json:"common_name"`
	Country            string `json:"country"`
	State              string `json:"state"`
	Locality           string `json:"locality"`
	Organization       string `json:"organization"`
	OrganizationalUnit string `json:"organizational_unit"`
}

func (d *pcaDN) engine() *pcasvc.DistinguishedName {
	if d == nil {
		return nil
	}
	return &pcasvc.DistinguishedName{CommonName: d.CommonName, Country: d.Country, State: d.State,
		Locality: d.Locality, Organization: d.Organization, OrganizationalUnit: d.OrganizationalUnit}
}

func viewDN(d pcasvc.DistinguishedName) pcaDN {
	return pcaDN{CommonName: d.CommonName, Country: d.Country, State: d.State, Locality: d.Locality,
		Organization: d.Organization, OrganizationalUnit: d.OrganizationalUnit}
}

type pcaValidity struct {
	Type      string `json:"type"`
	Value     int64  `json:"value"`
	StartFrom int64  `json:"start_from"`
}

func (v *pcaValidity) engine() *pcasvc.Validity {
	if v == nil {
		return nil
	}
	return &pcasvc.Validity{Type: v.Type, Value: v.Value, StartFrom: v.StartFrom}
}

type pcaCRLConfig struct {
	Enabled       bool   `json:"enabled"`
	ValidDays     int    `json:"valid_days"`
	CRLName       string `json:"crl_name"`
	OBSBucketName string `json:"obs_bucket_name"`
}

// publicBase is the daemon's public base URL, without a trailing slash:
// the configured one (Options.PublicBaseURL), or else the request's own
// scheme and Host, so that URLs in answers are absolute either way. The
// scheme is https when the request came over TLS; in trusted-proxy mode
// the proxy's X-Forwarded-Proto decides (its last entry, the one the
// proxy wrote), as the proxy terminates TLS.
func (s *server) publicBase(c *gin.Context) string {
	if s.opts.PublicBaseURL != "" {
		return s.opts.PublicBaseURL
	}
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	if s.opts.TrustedProxy {
		if v := c.Request.Header.Values("X-Forwarded-Proto"); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if p := strings.ToLower(strings.TrimSpace(last)); p == "http" || p == "https" {
				scheme = p
			}
		}
	}
	host := c.Request.Host
	if host == "" {
		if a, ok := c.Request.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			host = a.String()
		}
	}
	return scheme + "://" + host
}

// pcaQuota serves a quota route: each reports its own resource only,
// {"quotas": {"resources": [{type, used, quota}]}} as the public service's
// ShowCertificateAuthorityQuota and ShowCertificateQuota answer.
func (s *server) pcaQuota(typ string) gin.HandlerFunc {
	return func(c *gin.Context) {
		q, err := s.pcaAPI.Quota(c.Request.Context(), tenantOf(c), typ)
		if err != nil {
			pcaError(c, err)
			return
		}
		type res struct {
			Type  string `json:"type"`
			Used  int64  `json:"used"`
			Quota int64  `json:"quota"`
		}
		c.JSON(http.StatusOK, gin.H{"quotas": gin.H{"resources": []res{{Type: q.Type, Used: q.Used, Quota: q.Quota}}}})
	}
}
