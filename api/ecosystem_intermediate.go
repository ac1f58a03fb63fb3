package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
)

// MATTR VII DTS intermediate CA certificates, nested under their root:
// /v1/ecosystems/certificates/ca/{id}/intermediate[/{intermediateId}].
// The object is MATTR's (id, active, certificatePem,
// certificateFingerprint, certificateData, usages, caCertificateId) plus
// hsmca's isManaged; the CRL route is hsmca's addition, like the roots'.

// DTSIntermediateAPI is what the intermediate CA handlers need of the DTS
// family (*dts.Service).
type DTSIntermediateAPI interface {
	CreateIntermediate(ctx context.Context, rootID string, in dts.IntermediateInput) (*dts.Intermediate, error)
	ListIntermediates(ctx context.Context, rootID string, p dts.ListParams) ([]dts.Intermediate, string, error)
	GetIntermediate(ctx context.Context, rootID, id string) (*dts.Intermediate, error)
	UpdateIntermediate(ctx context.Context, rootID, id string, in dts.IntermediateUpdate) (*dts.Intermediate, error)
	DeleteIntermediate(ctx context.Context, rootID, id string) error
	IntermediateCRL(ctx context.Context, rootID, id string) ([]byte, error)
	IntermediateCertificate(ctx context.Context, rootID, id string) ([]byte, error)
}

func (s *server) mountEcosystemIntermediates(provider Access) {
	p := dtsCAPath + "/:id/intermediate"
	s.handle(native, "POST", p, provider, s.createDTSIntermediate)
	s.handle(native, "GET", p, provider, s.listDTSIntermediates)
	s.handle(native, "GET", p+"/:intermediateId", provider, s.getDTSIntermediate)
	s.handle(native, "PUT", p+"/:intermediateId", provider, s.updateDTSIntermediate)
	s.handle(native, "DELETE", p+"/:intermediateId", provider, s.deleteDTSIntermediate)
	s.handle(native, "GET", p+"/:intermediateId/revocation-list", Access{Public: true}, s.dtsIntermediateCRL)
	s.handle(native, "GET", p+"/:intermediateId/certificate", Access{Public: true}, s.dtsIntermediateCertificate)
}

type dtsIntermediateView struct {
	ID                     string             `json:"id"`
	Active                 bool               `json:"active"`
	CertificatePEM         string             `json:"certificatePem"`
	CertificateFingerprint string             `json:"certificateFingerprint"`
	CertificateData        dtsCertificateData `json:"certificateData"`
	Usages                 []string           `json:"usages"`
	CACertificateID        string             `json:"caCertificateId"`
	IsManaged              bool               `json:"isManaged"`
}

func viewDTSIntermediate(m *dts.Intermediate) dtsIntermediateView {
	org := m.Organisation
	nb, na := m.NotBefore.UTC(), m.NotAfter.UTC()
	usages := m.Usages
	if usages == nil {
		usages = []string{}
	}
	return dtsIntermediateView{ID: m.ID, Active: m.Active, CertificatePEM: m.CertificatePEM,
		CertificateFingerprint: m.Fingerprint, Usages: usages, CACertificateID: m.CAID, IsManaged: m.Managed,
		CertificateData: dtsCertificateData{CommonName: m.CommonName, Country: m.Country,
			OrganisationName: &org, NotBefore: &nb, NotAfter: &na}}
}

func intermediateLocation(m *dts.Intermediate) string {
	return dtsCAPath + "/" + m.CAID + "/intermediate/" + m.ID
}

// usagesDetail words the decoder's detail of a usages field of the wrong
// JSON type.
func usagesDetail(bad []signer.FieldError) {
	for i := range bad {
		if bad[i].Field == "usages" && bad[i].Msg != "unknown field" {
			bad[i].Msg = "must be an array of strings"
		}
	}
}

func (s *server) createDTSIntermediate(c *gin.Context) {
	var in dts.IntermediateInput
	bad, ok := decodeDTSBody(c, map[string]any{
		"certificatePem": &in.CertificatePEM, "usages": &in.Usages, "organisationName": &in.OrganisationName,
		"commonName": &in.CommonName, "country": &in.Country, "notBefore": &in.NotBefore, "notAfter": &in.NotAfter,
	}, true)
	if !ok {
		return
	}
	usagesDetail(bad)
	in.BadFields = bad
	m, err := s.dts.CreateIntermediate(c.Request.Context(), c.Param("id"), in)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.Header("Location", intermediateLocation(m))
	c.JSON(http.StatusCreated, viewDTSIntermediate(m))
}

func (s *server) listDTSIntermediates(c *gin.Context) {
	p, ok := dtsListParams(c)
	if !ok {
		return
	}
	list, next, err := s.dts.ListIntermediates(c.Request.Context(), c.Param("id"), p)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	page := dtsPage[dtsIntermediateView]{Data: make([]dtsIntermediateView, 0, len(list)), NextCursor: next}
	for i := range list {
		page.Data = append(page.Data, viewDTSIntermediate(&list[i]))
	}
	c.JSON(http.StatusOK, page)
}

func (s *server) getDTSIntermediate(c *gin.Context) {
	m, err := s.dts.GetIntermediate(c.Request.Context(), c.Param("id"), c.Param("intermediateId"))
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewDTSIntermediate(m))
}

func (s *server) updateDTSIntermediate(c *gin.Context) {
	var in dts.IntermediateUpdate
	bad, ok := decodeDTSBody(c, map[string]any{"active": &in.Active, "usages": &in.Usages}, true)
	if !ok {
		return
	}
	usagesDetail(bad)
	in.BadFields = bad
	m, err := s.dts.UpdateIntermediate(c.Request.Context(), c.Param("id"), c.Param("intermediateId"), in)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewDTSIntermediate(m))
}

func (s *server) deleteDTSIntermediate(c *gin.Context) {
	if err := s.dts.DeleteIntermediate(c.Request.Context(), c.Param("id"), c.Param("intermediateId")); err != nil {
		s.dtsError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// dtsIntermediateCertificate serves a managed intermediate's certificate
// (DER) to anyone: the caIssuers URL of the signers under it.
func (s *server) dtsIntermediateCertificate(c *gin.Context) {
	der, err := s.dts.IntermediateCertificate(c.Request.Context(), c.Param("id"), c.Param("intermediateId"))
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.Header("Cache-Control", caIssuersMaxAge)
	c.Data(http.StatusOK, "application/pkix-cert", der)
}

// dtsIntermediateCRL serves a managed intermediate's CRL to anyone, like
// the roots' (dtsRootCRL).
func (s *server) dtsIntermediateCRL(c *gin.Context) {
	der, err := s.dts.IntermediateCRL(c.Request.Context(), c.Param("id"), c.Param("intermediateId"))
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.Data(http.StatusOK, "application/pkix-crl", der)
}
