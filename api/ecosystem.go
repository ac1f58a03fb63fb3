package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
)

// MATTR VII ecosystem certificates (API.md family 1): DTS root CA
// certificates and VICAL signers. Field names, status codes, the list
// shape and the error envelope follow the public service.

const (
	dtsCAPath     = "/v1/ecosystems/certificates/ca"
	dtsSignerPath = "/v1/ecosystems/certificates/vical-signers"
)

// DTSAPI is what the ecosystem handlers need of the DTS family
// (*dts.Service).
type DTSAPI interface {
	CreateRoot(ctx context.Context, in dts.RootInput) (*dts.Root, error)
	ListRoots(ctx context.Context, p dts.ListParams) ([]dts.Root, string, error)
	GetRoot(ctx context.Context, id string) (*dts.Root, error)
	UpdateRoot(ctx context.Context, id string, active, ocspEnabled *bool, bad []signer.FieldError) (*dts.Root, error)
	DeleteRoot(ctx context.Context, id string) error
	RootCRL(ctx context.Context, id string) ([]byte, error)
	RootCertificate(ctx context.Context, id string) ([]byte, error)
	CreateSignerIn(ctx context.Context, in dts.SignerInput) (*dts.VICALSigner, error)
	ListSigners(ctx context.Context, p dts.ListParams) ([]dts.VICALSigner, string, error)
	GetSigner(ctx context.Context, id string) (*dts.VICALSigner, error)
	UpdateSigner(ctx context.Context, id string, in dts.SignerUpdate) (*dts.VICALSigner, error)
	DeleteSigner(ctx context.Context, id string) error
	Sign(ctx context.Context, id string, payload []byte, bad []signer.FieldError) ([]byte, error)
	DTSIntermediateAPI
}

// mountEcosystem mounts MATTR VII DTS ecosystem certificates (family 1).
func (s *server) mountEcosystem() {
	provider := Access{TenantRoles: []string{signer.RoleAdmin, signer.RoleDTSProvider}}
	s.handle(native, "POST", dtsCAPath, provider, s.createDTSRoot)
	s.handle(native, "GET", dtsCAPath, provider, s.listDTSRoots)
	s.handle(native, "GET", dtsCAPath+"/:id", provider, s.getDTSRoot)
	s.handle(native, "PUT", dtsCAPath+"/:id", provider, s.updateDTSRoot)
	s.handle(native, "DELETE", dtsCAPath+"/:id", provider, s.deleteDTSRoot)
	s.handle(native, "GET", dtsCAPath+"/:id/revocation-list", Access{Public: true}, s.dtsRootCRL)
	s.handle(native, "GET", dtsCAPath+"/:id/certificate", Access{Public: true}, s.dtsRootCertificate)
	s.mountEcosystemIntermediates(provider)

	s.handle(native, "POST", dtsSignerPath, provider, s.createVICALSigner)
	s.handle(native, "GET", dtsSignerPath, provider, s.listVICALSigners)
	s.handle(native, "GET", dtsSignerPath+"/:id", provider, s.getVICALSigner)
	s.handle(native, "PUT", dtsSignerPath+"/:id", provider, s.updateVICALSigner)
	s.handle(native, "DELETE", dtsSignerPath+"/:id", provider, s.deleteVICALSigner)
	s.handle(native, "POST", dtsSignerPath+"/:id/sign", provider, s.signVICAL)
}

type dtsCertificateData struct {
	CommonName       string     `json:"commonName"`
	Country          string     `json:"country"`
	OrganisationName *string    `json:"organisationName,omitempty"`
	NotBefore        *time.Time `json:"notBefore"`
	NotAfter         *time.Time `json:"notAfter"`
}

type dtsRootView struct {
	ID                     string             `json:"id"`
	Active                 bool               `json:"active"`
	CertificatePEM         string             `json:"certificatePem"`
	CertificateFingerprint string             `json:"certificateFingerprint"`
	CertificateData        dtsCertificateData `json:"certificateData"`
	IsManaged              bool               `json:"isManaged"`
	UseIntermediateCA      bool               `json:"useIntermediateCa"`
	// OCSPEnabled is hsmca's own: the root answers OCSP requests.
	OCSPEnabled bool `json:"ocspEnabled"`
}

func viewDTSRoot(r *dts.Root) dtsRootView {
	org := r.Organisation
	nb, na := r.NotBefore.UTC(), r.NotAfter.UTC()
	return dtsRootView{ID: r.ID, Active: r.Active, CertificatePEM: r.CertificatePEM,
		CertificateFingerprint: r.Fingerprint, IsManaged: r.Managed, UseIntermediateCA: r.UseIntermediateCA,
		OCSPEnabled: r.OCSPEnabled,
		CertificateData: dtsCertificateData{CommonName: r.CommonName, Country: r.Country,
			OrganisationName: &org, NotBefore: &nb, NotAfter: &na}}
}

type vicalSignerView struct {
	ID                     string              `json:"id"`
	CAID                   string              `json:"caId"`
	Active                 bool                `json:"active"`
	CSRPEM                 string              `json:"csrPem"`
	CertificatePEM         string              `json:"certificatePem,omitempty"`
	CertificateFingerprint string              `json:"certificateFingerprint,omitempty"`
	CertificateData        *dtsCertificateData `json:"certificateData,omitempty"`
	// Under an intermediate CA certificate (ecosystem_intermediate.go).
	IntermediateCAID    string `json:"intermediateCaId,omitempty"`
	CertificateChainPEM string `json:"certificateChainPem,omitempty"`
}

func viewVICALSigner(v *dts.VICALSigner) vicalSignerView {
	out := vicalSignerView{ID: v.ID, CAID: v.CAID, Active: v.Active, CSRPEM: v.CSRPEM,
		CertificatePEM: v.CertificatePEM, CertificateFingerprint: v.Fingerprint,
		IntermediateCAID: v.IntermediateID, CertificateChainPEM: v.ChainPEM}
	if v.CertificatePEM != "" {
		d := &dtsCertificateData{CommonName: v.CommonName, Country: v.Country}
		if v.NotBefore != nil {
			t := v.NotBefore.UTC()
			d.NotBefore = &t
		}
		if v.NotAfter != nil {
			t := v.NotAfter.UTC()
			d.NotAfter = &t
		}
		out.CertificateData = d
	}
	return out
}

type dtsPage[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"nextCursor,omitempty"`
}

// dtsError writes the family's envelope, logging the cause of internal
// errors (never sent to the client).
func (s *server) dtsError(c *gin.Context, err error) {
	e := signer.AsError(err)
	if e.Kind == signer.KindInternal {
		s.log.Error("DTS request failed", "route", c.FullPath(), "request_id", c.GetString("request_id"), "err", err)
	}
	ecosystemError(c, err)
}

// decodeDTSBody reads a JSON object field by field into targets (name ->
// pointer), so that every field of the wrong type or unknown name becomes
// its own detail instead of the decoder stopping at the first. A null
// value leaves the target nil, like an absent field.
func decodeDTSBody(c *gin.Context, targets map[string]any, optionalBody bool) ([]signer.FieldError, bool) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(c.Request.Body)
	err := dec.Decode(&raw)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	if errors.Is(err, io.EOF) && optionalBody {
		return nil, true
	}
	if err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field == "" {
			nativeError(c, signer.E(signer.KindInvalid, "the request body must be a JSON object"))
			return nil, false
		}
		nativeBodyError(c, err)
		return nil, false
	}
	var bad []signer.FieldError
	for name, v := range raw {
		t, ok := targets[name]
		if !ok {
			bad = append(bad, signer.FieldError{Field: name, Msg: "unknown field", Location: "body"})
			continue
		}
		// Decode into a fresh value so that a failed field stays nil
		// rather than half-set.
		tv := reflect.ValueOf(t).Elem()
		nv := reflect.New(tv.Type())
		if err := json.Unmarshal(v, nv.Interface()); err == nil {
			tv.Set(nv.Elem())
		} else {
			var shown any
			_ = json.Unmarshal(v, &shown)
			bad = append(bad, signer.FieldError{Field: name, Value: shown, Msg: "must be a " + jsonKind(t), Location: "body"})
		}
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].Field < bad[j].Field })
	return bad, true
}

func jsonKind(t any) string {
	switch t.(type) {
	case **bool:
		return "boolean"
	}
	return "string"
}

// dtsListParams reads a list's limit (1..1000) and cursor; ok is false
// when one is out of bounds and the 400 is written.
func dtsListParams(c *gin.Context) (dts.ListParams, bool) {
	var p dts.ListParams
	var ok bool
	if p.Limit, ok = queryInt(c, native, "limit", 0, 1, 1000, "must be an integer from 1 to 1000"); !ok {
		return p, false
	}
	p.Cursor, ok = queryParam(c, native, cursorParam)
	return p, ok
}

func (s *server) createDTSRoot(c *gin.Context) {
	var in dts.RootInput
	bad, ok := decodeDTSBody(c, map[string]any{
		"organisationName": &in.OrganisationName, "commonName": &in.CommonName, "country": &in.Country,
		"notBefore": &in.NotBefore, "notAfter": &in.NotAfter, "certificatePem": &in.CertificatePEM,
		"useIntermediateCa": &in.UseIntermediateCA,
		"ocspEnabled":       &in.OCSPEnabled,
	}, false)
	if !ok {
		return
	}
	in.BadFields = bad
	r, err := s.dts.CreateRoot(c.Request.Context(), in)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.Header("Location", dtsCAPath+"/"+r.ID)
	c.JSON(http.StatusCreated, viewDTSRoot(r))
}

func (s *server) listDTSRoots(c *gin.Context) {
	p, ok := dtsListParams(c)
	if !ok {
		return
	}
	roots, next, err := s.dts.ListRoots(c.Request.Context(), p)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	page := dtsPage[dtsRootView]{Data: make([]dtsRootView, 0, len(roots)), NextCursor: next}
	for i := range roots {
		page.Data = append(page.Data, viewDTSRoot(&roots[i]))
	}
	c.JSON(http.StatusOK, page)
}

func (s *server) getDTSRoot(c *gin.Context) {
	r, err := s.dts.GetRoot(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewDTSRoot(r))
}

func (s *server) updateDTSRoot(c *gin.Context) {
	var active, ocspEnabled *bool
	bad, ok := decodeDTSBody(c, map[string]any{"active": &active, "ocspEnabled": &ocspEnabled}, true)
	if !ok {
		return
	}
	r, err := s.dts.UpdateRoot(c.Request.Context(), c.Param("id"), active, ocspEnabled, bad)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewDTSRoot(r))
}

func (s *server) deleteDTSRoot(c *gin.Context) {
	if err := s.dts.DeleteRoot(c.Request.Context(), c.Param("id")); err != nil {
		s.dtsError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// dtsRootCRL serves a managed root's CRL to anyone: relying parties check
// revocation without credentials.
func (s *server) dtsRootCRL(c *gin.Context) {
	der, err := s.dts.RootCRL(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.Data(http.StatusOK, "application/pkix-crl", der)
}

func (s *server) createVICALSigner(c *gin.Context) {
	var in dts.SignerInput
	bad, ok := decodeDTSBody(c, map[string]any{"caId": &in.CAID, "intermediateCaId": &in.IntermediateCAID}, false)
	if !ok {
		return
	}
	in.BadFields = bad
	v, err := s.dts.CreateSignerIn(c.Request.Context(), in)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.Header("Location", dtsSignerPath+"/"+v.ID)
	c.JSON(http.StatusCreated, viewVICALSigner(v))
}

func (s *server) listVICALSigners(c *gin.Context) {
	p, ok := dtsListParams(c)
	if !ok {
		return
	}
	list, next, err := s.dts.ListSigners(c.Request.Context(), p)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	page := dtsPage[vicalSignerView]{Data: make([]vicalSignerView, 0, len(list)), NextCursor: next}
	for i := range list {
		page.Data = append(page.Data, viewVICALSigner(&list[i]))
	}
	c.JSON(http.StatusOK, page)
}

func (s *server) getVICALSigner(c *gin.Context) {
	v, err := s.dts.GetSigner(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewVICALSigner(v))
}

func (s *server) updateVICALSigner(c *gin.Context) {
	var in dts.SignerUpdate
	bad, ok := decodeDTSBody(c, map[string]any{"active": &in.Active, "certificatePem": &in.CertificatePEM}, true)
	if !ok {
		return
	}
	in.BadFields = bad
	v, err := s.dts.UpdateSigner(c.Request.Context(), c.Param("id"), in)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewVICALSigner(v))
}

func (s *server) deleteVICALSigner(c *gin.Context) {
	if err := s.dts.DeleteSigner(c.Request.Context(), c.Param("id")); err != nil {
		s.dtsError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// signVICAL serves POST /vical-signers/{id}/sign (hsmca's addition).
func (s *server) signVICAL(c *gin.Context) {
	var b64 *string
	bad, ok := decodeDTSBody(c, map[string]any{"payload": &b64}, false)
	if !ok {
		return
	}
	var payload []byte
	if b64 != nil {
		var err error
		if payload, err = decodeBase64(*b64); err != nil {
			bad = append(bad, signer.FieldError{Field: "payload", Msg: "must be base64", Location: "body"})
		}
	}
	sig, err := s.dts.Sign(c.Request.Context(), c.Param("id"), payload, bad)
	if err != nil {
		s.dtsError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"signature": base64.StdEncoding.EncodeToString(sig), "algorithm": dts.SignatureAlgorithm})
}

// decodeBase64 accepts standard and URL-safe base64, padded or not.
func decodeBase64(v string) ([]byte, error) {
	v = strings.TrimRight(strings.TrimSpace(v), "=")
	if strings.ContainsAny(v, "-_") {
		return base64.RawURLEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}
