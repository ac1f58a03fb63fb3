package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
)

// pcaCAs is what the CA routes call.
type pcaCAs interface {
	CreateCA(ctx context.Context, tenant string, in pcasvc.CACreate) (string, error)
	ListCAs(ctx context.Context, tenant string, q pcasvc.CAQuery) ([]*pcasvc.CA, int, error)
	GetCA(ctx context.Context, tenant, id string) (*pcasvc.CA, error)
	ActivateCA(ctx context.Context, tenant, id string, in pcasvc.CAActivate) error
	CACSR(ctx context.Context, tenant, id string) (string, error)
	ImportCACertificate(ctx context.Context, tenant, id, certPEM, chainPEM string) error
	ExportCA(ctx context.Context, tenant, id string) (cert, chain string, err error)
	DeleteCA(ctx context.Context, tenant, id string, pendingDays int) error
	RevokeCA(ctx context.Context, tenant, id, reason string) error
	ConfigureCRL(ctx context.Context, tenant, id string, cfg pcasvc.CRLConfiguration) error
	PublicCRL(ctx context.Context, caID string) ([]byte, error)
}

type pcaCreateCARequest struct {
	Type               string        `json:"type"`
	DN                 *pcaDN        `json:"distinguished_name"`
	KeyAlgorithm       string        `json:"key_algorithm"`
	SignatureAlgorithm string        `json:"signature_algorithm"`
	Validity           *pcaValidity  `json:"validity"`
	IssuerID           string        `json:"issuer_id"`
	PathLength         *int          `json:"path_length"`
	KeyUsages          []string      `json:"key_usages"`
	CRL                *pcaCRLConfig `json:"crl_configuration"`
}

func (s *server) pcaCreateCA(c *gin.Context) {
	var req pcaCreateCARequest
	if !pcaBody(c, &req, false) {
		return
	}
	in := pcasvc.CACreate{Type: req.Type, DN: req.DN.engine(), KeyAlgorithm: req.KeyAlgorithm,
		SignatureAlgorithm: req.SignatureAlgorithm, Validity: req.Validity.engine(), IssuerID: req.IssuerID,
		PathLength: req.PathLength, KeyUsages: req.KeyUsages}
	if req.CRL != nil {
		in.CRL = &pcasvc.CRLConfiguration{Enabled: req.CRL.Enabled, ValidDays: req.CRL.ValidDays,
			CRLName: req.CRL.CRLName, OBSBucketName: req.CRL.OBSBucketName}
	}
	id, err := s.pcaAPI.CreateCA(c.Request.Context(), tenantOf(c), in)
	if err != nil {
		pcaError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"ca_id": id})
}

type pcaCRLView struct {
	Enabled       bool   `json:"enabled"`
	CRLName       string `json:"crl_name"`
	OBSBucketName string `json:"obs_bucket_name"`
	ValidDays     int    `json:"valid_days"`
	CRLDisPoint   string `json:"crl_dis_point"`
}

type pcaCAView struct {
	ID                 string     `json:"ca_id"`
	Type               string     `json:"type"`
	Status             string     `json:"status"`
	PathLength         *int       `json:"path_length"` // null: the certificate sets no pathLenConstraint
	IssuerID           *string    `json:"issuer_id"`
	IssuerName         *string    `json:"issuer_name"`
	KeyAlgorithm       string     `json:"key_algorithm"`
	SignatureAlgorithm string     `json:"signature_algorithm"`
	FreezeFlag         int        `json:"freeze_flag"`
	GenMode            string     `json:"gen_mode"`
	SerialNumber       *string    `json:"serial_number"`
	CreateTime         int64      `json:"create_time"`
	DeleteTime         *int64     `json:"delete_time"`
	NotBefore          *int64     `json:"not_before"`
	NotAfter           *int64     `json:"not_after"`
	DN                 pcaDN      `json:"distinguished_name"`
	CRL                pcaCRLView `json:"crl_configuration"`
	// OCSPSwitch is hsmca's own (the public service's CA object and the
	// SDK's model have no such field): true while the CA answers OCSP
	// requests, as UpdateOcspSwitch set it; absent otherwise, so that the
	// object is exactly the model's unless the caller switched OCSP on.
	OCSPSwitch bool `json:"ocsp_switch,omitempty"`
	// DomainID is the account that owns the CA: in hsmca the tenant
	// (Huawei's domain and project at once).
	DomainID string `json:"domain_id"`
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func msOrNil(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

// viewCA shapes a CA; base is the daemon's public base URL (publicBase),
// which the CRL distribution point of a CA publishing a CRL is under.
func viewCA(ca *pcasvc.CA, base string) pcaCAView {
	v := pcaCAView{ID: ca.ID, Type: ca.Type, Status: ca.Status, PathLength: ca.PathLength,
		IssuerID: strOrNil(ca.IssuerID), IssuerName: strOrNil(ca.IssuerName), KeyAlgorithm: ca.KeyAlgorithm,
		SignatureAlgorithm: ca.SignatureAlgorithm, GenMode: ca.GenMode, SerialNumber: strOrNil(ca.SerialNumber),
		CreateTime: ca.CreateTime, DeleteTime: msOrNil(ca.DeleteTime), NotBefore: msOrNil(ca.NotBefore),
		NotAfter: msOrNil(ca.NotAfter), DN: viewDN(ca.DN), OCSPSwitch: ca.OCSP,
		CRL: pcaCRLView{Enabled: ca.CRL.Enabled, ValidDays: ca.CRL.ValidDays, CRLName: ca.CRL.CRLName,
			OBSBucketName: ca.CRL.OBSBucketName}}
	if ca.CRL.Enabled {
		if v.CRL.CRLName == "" {
			v.CRL.CRLName = ca.ID // the public service's default
		}
		v.CRL.CRLDisPoint = base + "/v1/private-certificate-authorities/" + ca.ID + "/crl"
	}
	return v
}

func (s *server) pcaListCAs(c *gin.Context) {
	limit, offset, ok := pcaPaging(c)
	if !ok {
		return
	}
	v, ok := queryParams(c, pca, pcaNameParam, pcaStatusParam, pcaTypeParam, pcaSortKeyParam, pcaSortDirParam)
	if !ok {
		return
	}
	q := pcasvc.CAQuery{Name: v["name"], Status: v["status"], Type: v["type"],
		SortKey: v["sort_key"], SortDir: v["sort_dir"], Limit: limit, Offset: offset}
	list, total, err := s.pcaAPI.ListCAs(c.Request.Context(), tenantOf(c), q)
	if err != nil {
		pcaError(c, err)
		return
	}
	out := make([]pcaCAView, 0, len(list))
	base := s.publicBase(c)
	for _, ca := range list {
		v := viewCA(ca, base)
		v.DomainID = tenantOf(c)
		out = append(out, v)
	}
	c.JSON(http.StatusOK, gin.H{"total": total, "certificate_authorities": out})
}

func (s *server) pcaShowCA(c *gin.Context) {
	ca, err := s.pcaAPI.GetCA(c.Request.Context(), tenantOf(c), c.Param("ca_id"))
	if err != nil {
		pcaError(c, err)
		return
	}
	v := viewCA(ca, s.publicBase(c))
	v.DomainID = tenantOf(c)
	c.JSON(http.StatusOK, v)
}

type pcaActivateRequest struct {
	IssuerID           string       `json:"issuer_id"`
	PathLength         *int         `json:"path_length"`
	SignatureAlgorithm string       `json:"signature_algorithm"`
	Validity           *pcaValidity `json:"validity"`
}

func (s *server) pcaActivateCA(c *gin.Context) {
	var req pcaActivateRequest
	if !pcaBody(c, &req, false) {
		return
	}
	err := s.pcaAPI.ActivateCA(c.Request.Context(), tenantOf(c), c.Param("ca_id"), pcasvc.CAActivate{
		IssuerID: req.IssuerID, SignatureAlgorithm: req.SignatureAlgorithm, Validity: req.Validity.engine(),
		PathLength: req.PathLength})
	if err != nil {
		pcaError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *server) pcaCSR(c *gin.Context) {
	csr, err := s.pcaAPI.CACSR(c.Request.Context(), tenantOf(c), c.Param("ca_id"))
	if err != nil {
		pcaError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"csr": csr})
}

type pcaImportRequest struct {
	Certificate      string `json:"certificate"`
	CertificateChain string `json:"certificate_chain"`
}

func (s *server) pcaImportCA(c *gin.Context) {
	var req pcaImportRequest
	if !pcaBody(c, &req, false) {
		return
	}
	if err := s.pcaAPI.ImportCACertificate(c.Request.Context(), tenantOf(c), c.Param("ca_id"), req.Certificate, req.CertificateChain); err != nil {
		pcaError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *server) pcaExportCA(c *gin.Context) {
	cert, chain, err := s.pcaAPI.ExportCA(c.Request.Context(), tenantOf(c), c.Param("ca_id"))
	if err != nil {
		pcaError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"certificate": cert, "certificate_chain": chain})
}

// pcaCAState serves the body-less state changes (disable, enable, restore).
func (s *server) pcaCAState(f func(ctx context.Context, tenant, id string) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := f(c.Request.Context(), tenantOf(c), c.Param("ca_id")); err != nil {
			pcaError(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

func (s *server) pcaDeleteCA(c *gin.Context) {
	days, ok := queryInt(c, pca, "pending_days", 0, 7, 30, "must be an integer from 7 to 30")
	if !ok {
		return
	}
	if err := s.pcaAPI.DeleteCA(c.Request.Context(), tenantOf(c), c.Param("ca_id"), days); err != nil {
		pcaError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type pcaRevokeRequest struct {
	Reason string `json:"reason"`
}

func (s *server) pcaRevokeCA(c *gin.Context) {
	var req pcaRevokeRequest
	if !pcaBody(c, &req, true) {
		return
	}
	if err := s.pcaAPI.RevokeCA(c.Request.Context(), tenantOf(c), c.Param("ca_id"), req.Reason); err != nil {
		pcaError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type pcaCRLEnableRequest struct {
	ValidDays     *int   `json:"valid_days"`
	CRLName       string `json:"crl_name"`
	OBSBucketName string `json:"obs_bucket_name"`
}

func (s *server) pcaCRLEnable(c *gin.Context) {
	var req pcaCRLEnableRequest
	if !pcaBody(c, &req, false) {
		return
	}
	if req.ValidDays == nil {
		pcaError(c, pcaInvalid("valid_days", nil, "is required"))
		return
	}
	cfg := pcasvc.CRLConfiguration{Enabled: true, ValidDays: *req.ValidDays, CRLName: req.CRLName, OBSBucketName: req.OBSBucketName}
	if err := s.pcaAPI.ConfigureCRL(c.Request.Context(), tenantOf(c), c.Param("ca_id"), cfg); err != nil {
		pcaError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *server) pcaCRLDisable(c *gin.Context) {
	if err := s.pcaAPI.ConfigureCRL(c.Request.Context(), tenantOf(c), c.Param("ca_id"), pcasvc.CRLConfiguration{}); err != nil {
		pcaError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// pcaCRL serves a CA's CRL to anyone, as DER.
func (s *server) pcaCRL(c *gin.Context) {
	der, err := s.pcaAPI.PublicCRL(c.Request.Context(), c.Param("ca_id"))
	if err != nil {
		pcaError(c, err)
		return
	}
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/pkix-crl", der)
}
