package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// The caIssuers routes: a CA's certificate, DER, to anyone. Every
// certificate the daemon signs under a CA names this URL (its
// authorityInfoAccess id-ad-caIssuers) when a public base URL is set, so
// that a relying party completes the chain from the certificate alone.
// Like the CRL routes they are public and limited per client address.

// caIssuersMaxAge is how long a relying party may keep a CA certificate:
// it changes only when the CA is replaced, under another id.
const caIssuersMaxAge = "public, max-age=86400"

// pcaCACertificate serves a CCM CA's certificate.
func (s *server) pcaCACertificate(c *gin.Context) {
	der, err := s.pcaAPI.PublicCACertificate(c.Request.Context(), c.Param("ca_id"))
	if err != nil {
		pcaError(c, err)
		return
	}
	c.Header("Cache-Control", caIssuersMaxAge)
	c.Data(http.StatusOK, "application/pkix-cert", der)
}

// dtsRootCertificate serves a managed DTS root's certificate.
func (s *server) dtsRootCertificate(c *gin.Context) {
	der, err := s.dts.RootCertificate(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.Header("Cache-Control", caIssuersMaxAge)
	c.Data(http.StatusOK, "application/pkix-cert", der)
}
