package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
)

// pcaCerts is what the certificate routes call.
type pcaCerts interface {
	IssueCertificate(ctx context.Context, tenant string, in pcasvc.CertIssue) (string, error)
	IssueFromCSR(ctx context.Context, tenant string, in pcasvc.CertFromCSR) (string, error)
	ParseCSR(ctx context.Context, tenant, csrPEM string) (*pcasvc.CSRInfo, error)
	ListCertificates(ctx context.Context, tenant string, q pcasvc.CertQuery) ([]*pcasvc.Certificate, int, error)
	GetCertificate(ctx context.Context, tenant, id string) (*pcasvc.Certificate, error)
	DeleteCertificate(ctx context.Context, tenant, id string) error
	ExportCertificate(ctx context.Context, tenant, id string, in pcasvc.CertExport) (*pcasvc.Exported, error)
	RevokeCertificate(ctx context.Context, tenant, id, reason string) error
}

type pcaSAN struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type pcaEKU struct {
	ServerAuth      bool `json:"server_auth"`
	ClientAuth      bool `json:"client_auth"`
	CodeSigning     bool `json:"code_signing"`
	EmailProtection bool `json:"email_protection"`
	TimeStamping    bool `json:"time_stamping"`
}

func (u *pcaEKU) engine() *pcasvc.ExtendedKeyUsage {
	if u == nil {
		return nil
	}
	return &pcasvc.ExtendedKeyUsage{ServerAuth: u.ServerAuth, ClientAuth: u.ClientAuth,
		CodeSigning: u.CodeSigning, EmailProtection: u.EmailProtection, TimeStamping: u.TimeStamping}
}

func sansIn(list []pcaSAN) []pcasvc.SAN {
	out := make([]pcasvc.SAN, 0, len(list))
	for _, s := range list {
		out = append(out, pcasvc.SAN{Type: s.Type, Value: s.Value})
	}
	return out
}

type pcaIssueRequest struct {
	IssuerID           string       `json:"issuer_id"`
	KeyAlgorithm       string       `json:"key_algorithm"`
	SignatureAlgorithm string       `json:"signature_algorithm"`
	DN                 *pcaDN       `json:"distinguished_name"`
	Validity           *pcaValidity `json:"validity"`
	SANs               []pcaSAN     `json:"subject_alternative_names"`
	KeyUsages          []string     `json:"key_usages"`
	EKU                *pcaEKU      `json:"extended_key_usage"`
}

func (s *server) pcaIssue(c *gin.Context) {
	var req pcaIssueRequest
	if !pcaBody(c, &req, false) {
		return
	}
	id, err := s.pcaAPI.IssueCertificate(c.Request.Context(), tenantOf(c), pcasvc.CertIssue{
		IssuerID: req.IssuerID, KeyAlgorithm: req.KeyAlgorithm, SignatureAlgorithm: req.SignatureAlgorithm,
		DN: req.DN.engine(), Validity: req.Validity.engine(), SANs: sansIn(req.SANs),
		KeyUsages: req.KeyUsages, EKU: req.EKU.engine()})
	if err != nil {
		pcaError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"certificate_id": id})
}

type pcaIssueCSRRequest struct {
	IssuerID           string       `json:"issuer_id"`
	CSR                string       `json:"csr"`
	Validity           *pcaValidity `json:"validity"`
	Type               string       `json:"type"`
	PathLength         *int         `json:"path_length"`
	SignatureAlgorithm string       `json:"signature_algorithm"`
	SANs               []pcaSAN     `json:"subject_alternative_names"`
	KeyUsages          []string     `json:"key_usages"`
	EKU                *pcaEKU      `json:"extended_key_usage"`
}

func (s *server) pcaIssueCSR(c *gin.Context) {
	var req pcaIssueCSRRequest
	if !pcaIssueCSRBody(c, &req) {
		return
	}
	id, err := s.pcaAPI.IssueFromCSR(c.Request.Context(), tenantOf(c), pcasvc.CertFromCSR{
		IssuerID: req.IssuerID, CSR: req.CSR, Validity: req.Validity.engine(), Type: req.Type,
		PathLength: req.PathLength, SignatureAlgorithm: req.SignatureAlgorithm, SANs: sansIn(req.SANs),
		KeyUsages: req.KeyUsages, EKU: req.EKU.engine()})
	if err != nil {
		pcaError(c, err)
		return
	}
	writeCertificateID(c, id)
}

func (s *server) pcaParseCSR(c *gin.Context) {
	var req struct {
		CSR string `json:"csr"`
	}
	if !pcaBody(c, &req, false) {
		return
	}
	info, err := s.pcaAPI.ParseCSR(c.Request.Context(), tenantOf(c), req.CSR)
	if err != nil {
		pcaError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"key_algorithm": info.KeyAlgorithm, "key_algorithm_length": info.KeyLength,
		"signature_algorithm": info.SignatureAlgorithm, "public_key": info.PublicKeyPEM,
		"distinguished_name": viewDN(info.DN)})
}

type pcaCertView struct {
	ID                 string   `json:"certificate_id"`
	Status             string   `json:"status"`
	Type               string   `json:"type"`
	IssuerID           string   `json:"issuer_id"`
	IssuerName         string   `json:"issuer_name"`
	KeyAlgorithm       string   `json:"key_algorithm"`
	SignatureAlgorithm string   `json:"signature_algorithm"`
	FreezeFlag         int      `json:"freeze_flag"`
	GenMode            string   `json:"gen_mode"`
	SerialNumber       string   `json:"serial_number"`
	CreateTime         int64    `json:"create_time"`
	DeleteTime         *int64   `json:"delete_time"`
	NotBefore          int64    `json:"not_before"`
	NotAfter           int64    `json:"not_after"`
	DN                 pcaDN    `json:"distinguished_name"`
	SANs               []pcaSAN `json:"subject_alternative_names"`
	KeyUsages          []string `json:"key_usages"`
	EKU                pcaEKU   `json:"extended_key_usage"`
	PathLength         *int     `json:"path_length,omitempty"`
	RevokeReason       *string  `json:"revoke_reason"`
	RevokeTime         *int64   `json:"revoke_time"`
}

func viewCert(ct *pcasvc.Certificate) pcaCertView {
	v := pcaCertView{ID: ct.ID, Status: ct.Status, Type: ct.Type, IssuerID: ct.IssuerID, IssuerName: ct.IssuerName,
		KeyAlgorithm: ct.KeyAlgorithm, SignatureAlgorithm: ct.SignatureAlgorithm, GenMode: ct.GenMode,
		SerialNumber: ct.SerialNumber, CreateTime: ct.CreateTime, NotBefore: ct.NotBefore, NotAfter: ct.NotAfter,
		DN: viewDN(ct.DN), SANs: []pcaSAN{}, KeyUsages: ct.KeyUsages, PathLength: ct.PathLength,
		EKU: pcaEKU{ServerAuth: ct.EKU.ServerAuth, ClientAuth: ct.EKU.ClientAuth, CodeSigning: ct.EKU.CodeSigning,
			EmailProtection: ct.EKU.EmailProtection, TimeStamping: ct.EKU.TimeStamping},
		RevokeReason: strOrNil(ct.RevokeReason), RevokeTime: msOrNil(ct.RevokeTime)}
	for _, s := range ct.SANs {
		v.SANs = append(v.SANs, pcaSAN{Type: s.Type, Value: s.Value})
	}
	if v.KeyUsages == nil {
		v.KeyUsages = []string{}
	}
	return v
}

func (s *server) pcaListCerts(c *gin.Context) {
	limit, offset, ok := pcaPaging(c)
	if !ok {
		return
	}
	v, ok := queryParams(c, pca, pcaNameParam, pcaStatusParam, pcaSortKeyParam, pcaSortDirParam)
	if !ok {
		return
	}
	list, total, err := s.pcaAPI.ListCertificates(c.Request.Context(), tenantOf(c), pcasvc.CertQuery{
		Name: v["name"], Status: v["status"], SortKey: v["sort_key"],
		SortDir: v["sort_dir"], Limit: limit, Offset: offset})
	if err != nil {
		pcaError(c, err)
		return
	}
	out := make([]pcaCertView, 0, len(list))
	for _, ct := range list {
		out = append(out, viewCert(ct))
	}
	c.JSON(http.StatusOK, gin.H{"total": total, "certificates": out})
}

func (s *server) pcaShowCert(c *gin.Context) {
	ct, err := s.pcaAPI.GetCertificate(c.Request.Context(), tenantOf(c), c.Param("certificate_id"))
	if err != nil {
		pcaError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewCert(ct))
}

func (s *server) pcaDeleteCert(c *gin.Context) {
	if err := s.pcaAPI.DeleteCertificate(c.Request.Context(), tenantOf(c), c.Param("certificate_id")); err != nil {
		pcaError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type pcaExportRequest struct {
	Type         string `json:"type"`
	IsCompressed string `json:"is_compressed"`
	Password     string `json:"password"`
}

// pcaExportCert answers with the only copy of a private key that leaves
// the daemon, so nothing may cache it.
func (s *server) pcaExportCert(c *gin.Context) {
	var req pcaExportRequest
	if !pcaBody(c, &req, true) {
		return
	}
	out, err := s.pcaAPI.ExportCertificate(c.Request.Context(), tenantOf(c), c.Param("certificate_id"), pcasvc.CertExport{
		Type: req.Type, Compressed: req.IsCompressed, Password: req.Password})
	if err != nil {
		pcaError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	body := gin.H{"certificate": out.Certificate, "certificate_chain": out.Chain}
	if out.PrivateKey != "" {
		body["private_key"] = out.PrivateKey
	}
	c.JSON(http.StatusOK, body)
}

func (s *server) pcaRevokeCert(c *gin.Context) {
	var req pcaRevokeRequest
	if !pcaBody(c, &req, true) {
		return
	}
	if err := s.pcaAPI.RevokeCertificate(c.Request.Context(), tenantOf(c), c.Param("certificate_id"), req.Reason); err != nil {
		pcaError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
