package api

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
)

// AdminsAPI is what the administrators' handlers, the admin socket and
// the authentication of client certificates call (admins.Service).
type AdminsAPI interface {
	Create(ctx context.Context, in admins.Input) (*admins.Admin, error)
	Bootstrap(ctx context.Context, in admins.Input, o admins.BootstrapOptions) (*admins.Admin, error)
	Get(ctx context.Context, id string) (*admins.Admin, error)
	List(ctx context.Context) ([]admins.Admin, error)
	Edit(ctx context.Context, id string, ed admins.Edit) (*admins.Admin, error)
	Delete(ctx context.Context, id string) error
	DeleteMany(ctx context.Context, ids []string) error
	SetEnabled(ctx context.Context, id string, enabled bool) error
	SetEnabledMany(ctx context.Context, ids []string, enabled bool) error
	Authenticate(ctx context.Context, cert *x509.Certificate) (signer.Caller, error)
}

// mountIdentity registers the identity routes: the CZERTAINLY
// administrators API (family 4) and API tokens (family 5). Platform roles
// only: superAdministrator writes, administrator reads.
func (s *server) mountIdentity() {
	read := Access{PlatformRoles: []string{signer.RoleSuperAdministrator, signer.RoleAdministrator}}
	write := Access{PlatformRoles: []string{signer.RoleSuperAdministrator}}

	s.handle(czertainly, "GET", "/v1/admins", read, s.listAdmins)
	s.handle(czertainly, "POST", "/v1/admins", write, s.createAdmin)
	s.handle(czertainly, "DELETE", "/v1/admins", write, s.bulkDeleteAdmins)
	s.handle(czertainly, "PUT", "/v1/admins/enable", write, s.bulkSetAdminsEnabled(true))
	s.handle(czertainly, "PUT", "/v1/admins/disable", write, s.bulkSetAdminsEnabled(false))
	s.handle(czertainly, "GET", "/v1/admins/:uuid", read, s.getAdmin)
	s.handle(czertainly, "POST", "/v1/admins/:uuid", write, s.editAdmin)
	s.handle(czertainly, "DELETE", "/v1/admins/:uuid", write, s.deleteAdmin)
	s.handle(czertainly, "PUT", "/v1/admins/:uuid/enable", write, s.setAdminEnabled(true))
	s.handle(czertainly, "PUT", "/v1/admins/:uuid/disable", write, s.setAdminEnabled(false))
	s.handle(czertainly, "POST", "/v1/local/admins", Access{Loopback: true}, s.localCreateAdmin)

	s.handle(native, "POST", "/v1/tokens", write, s.createToken)
	s.handle(native, "GET", "/v1/tokens", read, func(c *gin.Context) { listCredentials(c, s.eng.ListTokens, viewToken) })
	s.handle(native, "DELETE", "/v1/tokens/:id", write, func(c *gin.Context) { revokeCredential(c, "id", s.eng.RevokeToken) })
	s.handle(native, "POST", "/v1/oauth-clients", write, s.createOAuthClient)
	s.handle(native, "GET", "/v1/oauth-clients", read, func(c *gin.Context) { listCredentials(c, s.eng.ListOAuthClients, viewOAuthClient) })
	s.handle(native, "DELETE", "/v1/oauth-clients/:client_id", write, func(c *gin.Context) { revokeCredential(c, "client_id", s.eng.RevokeOAuthClient) })
	s.handle(oauth, "POST", "/oauth/token", Access{Public: true}, s.oauthToken)
	s.handle(native, "POST", "/v1/access-keys", write, s.createAccessKey)
	s.handle(native, "GET", "/v1/access-keys", read, func(c *gin.Context) { listCredentials(c, s.eng.ListAccessKeys, viewAccessKey) })
	s.handle(native, "DELETE", "/v1/access-keys/:access_key", write, func(c *gin.Context) { revokeCredential(c, "access_key", s.eng.RevokeAccessKey) })
}

// maxBulkIDs bounds the ids of one bulk call.
const maxBulkIDs = 1000

// czAdmin is CZERTAINLY's admin object.
type czAdmin struct {
	UUID         string        `json:"uuid"`
	Name         string        `json:"name"`
	Username     string        `json:"username"`
	Certificate  czCertificate `json:"certificate"`
	Role         string        `json:"role"`
	Email        string        `json:"email"`
	SerialNumber string        `json:"serialNumber"`
	Description  string        `json:"description"`
	Enabled      bool          `json:"enabled"`
	Surname      string        `json:"surname"`
}

// czCertificateTypeX509 is the certificateType of every administrator
// certificate: CZERTAINLY's CertificateType enum of the seed's era is
// [X509, SSH], without a dot.
const czCertificateTypeX509 = "X509"

type czCertificate struct {
	UUID                    string              `json:"uuid"`
	CommonName              string              `json:"commonName"`
	SerialNumber            string              `json:"serialNumber"`
	IssuerCommonName        string              `json:"issuerCommonName"`
	CertificateContent      string              `json:"certificateContent"`
	IssuerDN                string              `json:"issuerDn"`
	SubjectDN               string              `json:"subjectDn"`
	NotBefore               time.Time           `json:"notBefore"`
	NotAfter                time.Time           `json:"notAfter"`
	PublicKeyAlgorithm      string              `json:"publicKeyAlgorithm"`
	SignatureAlgorithm      string              `json:"signatureAlgorithm"`
	KeySize                 int                 `json:"keySize"`
	ExtendedKeyUsage        []string            `json:"extendedKeyUsage"`
	KeyUsage                []string            `json:"keyUsage"`
	BasicConstraints        string              `json:"basicConstraints"`
	Status                  string              `json:"status"`
	Fingerprint             string              `json:"fingerprint"`
	SubjectAlternativeNames map[string][]string `json:"subjectAlternativeNames"`
	CertificateType         string              `json:"certificateType"`
}

func toCzAdmin(a *admins.Admin) czAdmin {
	c := a.Certificate
	return czAdmin{
		UUID: a.UUID, Name: a.Name, Username: a.Username, Role: a.Role, Email: a.Email,
		SerialNumber: a.SerialNumber, Description: a.Description, Enabled: a.Enabled, Surname: a.Surname,
		Certificate: czCertificate{
			UUID: c.UUID, CommonName: c.CommonName, SerialNumber: c.SerialNumber,
			IssuerCommonName: c.IssuerCommonName, CertificateContent: base64.StdEncoding.EncodeToString(c.DER),
			IssuerDN: c.IssuerDN, SubjectDN: c.SubjectDN, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
			PublicKeyAlgorithm: c.PublicKeyAlgorithm, SignatureAlgorithm: c.SignatureAlgorithm,
			KeySize: c.KeySize, ExtendedKeyUsage: nonNil(c.ExtendedKeyUsage), KeyUsage: nonNil(c.KeyUsage),
			BasicConstraints: c.BasicConstraints, Status: c.Status, Fingerprint: c.Fingerprint,
			SubjectAlternativeNames: c.SubjectAlternativeNames, CertificateType: czCertificateTypeX509,
		},
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// czCreateRequest is CZERTAINLY's AddAdminRequest. Unknown fields are
// ignored, as the reference service does, so newer clients keep working.
type czCreateRequest struct {
	AdminCertificate string `json:"adminCertificate"`
	CertificateUUID  string `json:"certificateUuid"`
	Username         string `json:"username"`
	Name             string `json:"name"`
	Surname          string `json:"surname"`
	Email            string `json:"email"`
	Role             string `json:"role"`
	Enabled          *bool  `json:"enabled"`
	Description      string `json:"description"`
}

func (r *czCreateRequest) input() admins.Input {
	return admins.Input{
		Username: r.Username, Name: r.Name, Surname: r.Surname, Email: r.Email,
		Description: r.Description, Role: r.Role, Enabled: r.Enabled != nil && *r.Enabled,
		Certificate: r.AdminCertificate, CertificateUUID: r.CertificateUUID,
	}
}

// czEditRequest is CZERTAINLY's EditAdminRequest; absent fields keep
// their value. username may be sent but not changed; enabled is not part
// of an edit (enable and disable are their own calls) and is ignored.
type czEditRequest struct {
	AdminCertificate string  `json:"adminCertificate"`
	CertificateUUID  string  `json:"certificateUuid"`
	Username         *string `json:"username"`
	Name             *string `json:"name"`
	Surname          *string `json:"surname"`
	Email            *string `json:"email"`
	Role             *string `json:"role"`
	Description      *string `json:"description"`
}

// czBadRequest answers a body that is not the JSON the call takes: 400
// with {"message"}, as a Spring service answers an unreadable message.
// Field validation failures are 422 (czertainlyError).
func czBadRequest(c *gin.Context, err error) {
	msg := "malformed JSON body"
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		c.AbortWithStatusJSON(http.StatusRequestEntityTooLarge, gin.H{"message": "request body too large"})
		return
	case errors.Is(err, io.EOF):
		msg = "request body is required"
	case err != nil:
		msg = "malformed JSON body: " + err.Error()
	}
	c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"message": msg})
}

// decodeBody reads exactly one JSON value.
func decodeBody(c *gin.Context, v any, strict bool) error {
	return decodeJSON(c.Request.Body, v, strict)
}

// decodeJSON reads one JSON value from r into v (strict: no unknown
// fields) and refuses anything after it.
func decodeJSON(r io.Reader, v any, strict bool) error {
	dec := json.NewDecoder(r)
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

func (s *server) listAdmins(c *gin.Context) {
	list, err := s.admins.List(c.Request.Context())
	if err != nil {
		czertainlyError(c, err)
		return
	}
	out := make([]czAdmin, 0, len(list))
	for i := range list {
		out = append(out, toCzAdmin(&list[i]))
	}
	c.JSON(http.StatusOK, out)
}

func (s *server) createAdmin(c *gin.Context) {
	var req czCreateRequest
	if err := decodeBody(c, &req, false); err != nil {
		czBadRequest(c, err)
		return
	}
	a, err := s.admins.Create(c.Request.Context(), req.input())
	if err != nil {
		czertainlyError(c, err)
		return
	}
	c.Header("Location", "/v1/admins/"+a.UUID)
	c.JSON(http.StatusCreated, gin.H{"uuid": a.UUID})
}

// localCreateAdmin serves POST /v1/local/admins: the first administrator,
// from the machine itself, before any certificate can authenticate. It is
// always an enabled superAdministrator; once any administrator exists the
// call answers 409 and new ones are added through POST /v1/admins.
func (s *server) localCreateAdmin(c *gin.Context) {
	var req czCreateRequest
	if err := decodeBody(c, &req, false); err != nil {
		czBadRequest(c, err)
		return
	}
	ctx := signer.WithCaller(c.Request.Context(), signer.Caller{Principal: "local:loopback", RequestID: c.GetString("request_id")})
	a, err := s.admins.Bootstrap(ctx, req.input(), admins.BootstrapOptions{})
	if err != nil {
		czertainlyError(c, err)
		return
	}
	s.log.Info("first administrator created on the loopback interface", "admin", a.UUID, "serial", a.SerialNumber)
	c.Header("Location", "/v1/admins/"+a.UUID)
	c.JSON(http.StatusCreated, gin.H{"uuid": a.UUID})
}

func (s *server) getAdmin(c *gin.Context) {
	a, err := s.admins.Get(c.Request.Context(), c.Param("uuid"))
	if err != nil {
		czertainlyError(c, err)
		return
	}
	c.JSON(http.StatusOK, toCzAdmin(a))
}

func (s *server) editAdmin(c *gin.Context) {
	var req czEditRequest
	if err := decodeBody(c, &req, false); err != nil {
		czBadRequest(c, err)
		return
	}
	a, err := s.admins.Edit(c.Request.Context(), c.Param("uuid"), admins.Edit{
		Username: req.Username, Name: req.Name, Surname: req.Surname, Email: req.Email,
		Description: req.Description, Role: req.Role,
		Certificate: req.AdminCertificate, CertificateUUID: req.CertificateUUID,
	})
	if err != nil {
		czertainlyError(c, err)
		return
	}
	c.JSON(http.StatusOK, toCzAdmin(a))
}

func (s *server) deleteAdmin(c *gin.Context) {
	if err := s.admins.Delete(c.Request.Context(), c.Param("uuid")); err != nil {
		czertainlyError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *server) setAdminEnabled(enabled bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := s.admins.SetEnabled(c.Request.Context(), c.Param("uuid"), enabled); err != nil {
			czertainlyError(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

// bulkIDs reads the JSON array of uuids of a bulk call.
func bulkIDs(c *gin.Context) ([]string, bool) {
	var ids []string
	if err := decodeBody(c, &ids, false); err != nil {
		czBadRequest(c, err)
		return nil, false
	}
	if len(ids) > maxBulkIDs {
		czertainlyError(c, signer.Invalid("uuids", len(ids), "at most 1000 uuids per call"))
		return nil, false
	}
	return ids, true
}

func (s *server) bulkDeleteAdmins(c *gin.Context) {
	ids, ok := bulkIDs(c)
	if !ok {
		return
	}
	if err := s.admins.DeleteMany(c.Request.Context(), ids); err != nil {
		czertainlyError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *server) bulkSetAdminsEnabled(enabled bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		ids, ok := bulkIDs(c)
		if !ok {
			return
		}
		if err := s.admins.SetEnabledMany(c.Request.Context(), ids, enabled); err != nil {
			czertainlyError(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}
