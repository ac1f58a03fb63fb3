package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	apigsvc "github.com/hsmca/hsmca/signer/apig"
)

// APIGAPI is what the APIG handlers call: signer/apig's Service.
type APIGAPI interface {
	Create(ctx context.Context, tenant string, in apigsvc.Input) (*apigsvc.Certificate, error)
	Get(ctx context.Context, tenant, id string) (*apigsvc.Certificate, error)
	List(ctx context.Context, tenant string, q apigsvc.Query) ([]apigsvc.Certificate, int, error)
	Update(ctx context.Context, tenant, id string, in apigsvc.Input) (*apigsvc.Certificate, error)
	Delete(ctx context.Context, tenant, id string) error
}

// mountAPIG mounts Huawei APIG v2 SSL certificates (family 3).
func (s *server) mountAPIG() {
	a := Access{TenantRoles: []string{signer.RoleAdmin, signer.RoleCAOperator}}
	const base = "/v2/:project_id/apigw/certificates"
	s.handle(apig, "POST", base, a, apigProject, s.createAPIGCert)
	s.handle(apig, "GET", base, a, apigProject, s.listAPIGCerts)
	s.handle(apig, "GET", base+"/:certificate_id", a, apigProject, s.showAPIGCert)
	s.handle(apig, "PUT", base+"/:certificate_id", a, apigProject, s.updateAPIGCert)
	s.handle(apig, "DELETE", base+"/:certificate_id", a, apigProject, s.deleteAPIGCert)
}

// apigProject refuses a project_id other than the caller's tenant. It is
// a 403 (not the 404 of another tenant's resource) because the public
// service answers so and the id names the caller's own scope.
func apigProject(c *gin.Context) {
	if c.Param("project_id") != signer.CallerFrom(c.Request.Context()).Tenant {
		apigError(c, &signer.Error{Kind: signer.KindForbidden,
			Msg: "No permissions to request this method: project_id is not the project of this credential"})
		return
	}
	c.Next()
}

// apigCertView is the full certificate object, fields in the public
// service's order.
type apigCertView struct {
	ID                 string   `json:"id"`
	Name               string   `json:"name"`
	Type               string   `json:"type"`
	InstanceID         string   `json:"instance_id"`
	ProjectID          string   `json:"project_id"`
	CommonName         string   `json:"common_name"`
	SAN                []string `json:"san"`
	NotAfter           string   `json:"not_after"`
	SignatureAlgorithm string   `json:"signature_algorithm"`
	CreateTime         string   `json:"create_time"`
	UpdateTime         string   `json:"update_time"`
	IsHasTrustedRootCA bool     `json:"is_has_trusted_root_ca"`
	AlgorithmType      string   `json:"algorithm_type"`
	Version            int      `json:"version"`
	Organization       []string `json:"organization"`
	OrganizationalUnit []string `json:"organizational_unit"`
	Locality           []string `json:"locality"`
	State              []string `json:"state"`
	Country            []string `json:"country"`
	NotBefore          string   `json:"not_before"`
	SerialNumber       string   `json:"serial_number"`
	Issuer             []string `json:"issuer"`
}

// apigCertItem is a list item: the short form.
type apigCertItem struct {
	ID                 string   `json:"id"`
	Name               string   `json:"name"`
	Type               string   `json:"type"`
	InstanceID         string   `json:"instance_id"`
	ProjectID          string   `json:"project_id"`
	CommonName         string   `json:"common_name"`
	SAN                []string `json:"san"`
	NotAfter           string   `json:"not_after"`
	SignatureAlgorithm string   `json:"signature_algorithm"`
	CreateTime         string   `json:"create_time"`
	UpdateTime         string   `json:"update_time"`
	IsHasTrustedRootCA bool     `json:"is_has_trusted_root_ca"`
	AlgorithmType      string   `json:"algorithm_type"`
}

func apigTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func toAPIGItem(v *apigsvc.Certificate) apigCertItem {
	return apigCertItem{ID: v.ID, Name: v.Name, Type: v.Type, InstanceID: v.InstanceID, ProjectID: v.ProjectID,
		CommonName: v.CommonName, SAN: v.SAN, NotAfter: apigTime(v.NotAfter), SignatureAlgorithm: v.SignatureAlgorithm,
		CreateTime: apigTime(v.Created), UpdateTime: apigTime(v.Updated), IsHasTrustedRootCA: v.HasTrustedRootCA,
		AlgorithmType: v.AlgorithmType}
}

func toAPIGView(v *apigsvc.Certificate) apigCertView {
	i := toAPIGItem(v)
	return apigCertView{ID: i.ID, Name: i.Name, Type: i.Type, InstanceID: i.InstanceID, ProjectID: i.ProjectID,
		CommonName: i.CommonName, SAN: i.SAN, NotAfter: i.NotAfter, SignatureAlgorithm: i.SignatureAlgorithm,
		CreateTime: i.CreateTime, UpdateTime: i.UpdateTime, IsHasTrustedRootCA: i.IsHasTrustedRootCA,
		AlgorithmType: i.AlgorithmType, Version: v.Version, Organization: v.Organization, OrganizationalUnit: v.OrganizationalUnit,
		Locality: v.Locality, State: v.State, Country: v.Country, NotBefore: apigTime(v.NotBefore),
		SerialNumber: v.SerialNumber, Issuer: v.Issuer}
}

func apigBadValue(field, msg string) error {
	return &signer.Error{Kind: signer.KindInvalid, Reason: apigsvc.ReasonBadValue, Msg: field + ": " + msg}
}

// apigBody reads a create or replace body. The body holds private keys,
// so it is read into buffers this function owns and clears, and the keys
// (private_key, private_key_sign) are unquoted into byte slices (never
// strings) that the service clears. Unknown fields are refused; null is
// an absent field.
func apigBody(c *gin.Context) (apigsvc.Input, error) {
	var in apigsvc.Input
	body, err := readOwned(c.Request.Body, c.Request.ContentLength)
	defer clear(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return in, errBodyTooLarge
		}
		return in, apigBadValue("body", "could not be read")
	}
	if len(body) == 0 {
		return in, &signer.Error{Kind: signer.KindInvalid, Reason: apigsvc.ReasonMissing, Msg: "request body is required"}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		// The decoder's message may quote a character of the body.
		return in, apigBadValue("body", "must be a JSON object")
	}
	defer func() {
		for _, v := range fields {
			clear(v)
		}
	}()
	str := func(name string, dst *string) error {
		raw, ok := fields[name]
		if !ok {
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return apigBadValue(name, "must be a string")
		}
		return nil
	}
	for name := range fields {
		switch name {
		case "name", "cert_content", "private_key", "type", "instance_id", "trusted_root_ca",
			"algorithm_type", "cert_content_sign", "private_key_sign":
		default:
			return in, apigBadValue(name, "unknown parameter")
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"name", &in.Name}, {"cert_content", &in.CertContent}, {"type", &in.Type},
		{"instance_id", &in.InstanceID}, {"trusted_root_ca", &in.TrustedRootCA},
		{"algorithm_type", &in.AlgorithmType}, {"cert_content_sign", &in.CertContentSign}} {
		if err := str(f.name, f.dst); err != nil {
			return in, err
		}
	}
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{"private_key", &in.PrivateKey}, {"private_key_sign", &in.PrivateKeySign}} {
		raw, ok := fields[f.name]
		if !ok {
			continue
		}
		key, err := unquoteJSONBytes(raw)
		if err != nil {
			return in, apigBadValue(f.name, "must be a string")
		}
		*f.dst = key
	}
	return in, nil
}

var errBodyTooLarge = errors.New("request body too large")

// readOwned reads r whole into a buffer it grows itself, clearing each
// buffer it outgrows.
func readOwned(r io.Reader, hint int64) ([]byte, error) {
	size := 4096
	if hint > 0 && hint < 1<<24 {
		size = int(hint) + 1
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), 2*cap(buf))
			copy(nb, buf)
			clear(buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// unquoteJSONBytes decodes a JSON string literal (already validated by the
// JSON decoder) into a new byte slice. null gives nil.
func unquoteJSONBytes(raw []byte) ([]byte, error) {
	raw = bytes.Trim(raw, " \t\r\n")
	if string(raw) == "null" {
		return nil, nil
	}
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, errors.New("not a JSON string")
	}
	s := raw[1 : len(raw)-1]
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(s) {
			clear(out)
			return nil, errors.New("bad escape")
		}
		switch s[i] {
		case '"', '\\', '/':
			out = append(out, s[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, n := hex4(s[i+1:])
			if n < 0 {
				clear(out)
				return nil, errors.New("bad escape")
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if v, m := hex4(s[i+3:]); m >= 0 {
						r2 = v
					}
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			clear(out)
			return nil, errors.New("bad escape")
		}
	}
	return out, nil
}

func hex4(b []byte) (rune, int) {
	if len(b) < 4 {
		return 0, -1
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, -1
		}
	}
	return r, 4
}

func apigBodyError(c *gin.Context, err error) {
	if errors.Is(err, errBodyTooLarge) {
		c.AbortWithStatusJSON(http.StatusRequestEntityTooLarge, huaweiEnvelope{Code: APIGCodeBadValue, Msg: "request body too large"})
		return
	}
	apigError(c, err)
}

// clearInput clears the keys of an input the service was not given.
func clearInput(in *apigsvc.Input) {
	clear(in.PrivateKey)
	clear(in.PrivateKeySign)
}

func (s *server) createAPIGCert(c *gin.Context) {
	in, err := apigBody(c)
	if err != nil {
		clearInput(&in)
		apigBodyError(c, err)
		return
	}
	v, err := s.opts.APIG.Create(c.Request.Context(), c.Param("project_id"), in)
	if err != nil {
		apigError(c, err)
		return
	}
	c.JSON(http.StatusOK, toAPIGView(v))
}

func (s *server) updateAPIGCert(c *gin.Context) {
	in, err := apigBody(c)
	if err != nil {
		clearInput(&in)
		apigBodyError(c, err)
		return
	}
	v, err := s.opts.APIG.Update(c.Request.Context(), c.Param("project_id"), c.Param("certificate_id"), in)
	if err != nil {
		apigError(c, err)
		return
	}
	c.JSON(http.StatusOK, toAPIGView(v))
}

func (s *server) showAPIGCert(c *gin.Context) {
	v, err := s.opts.APIG.Get(c.Request.Context(), c.Param("project_id"), c.Param("certificate_id"))
	if err != nil {
		apigError(c, err)
		return
	}
	c.JSON(http.StatusOK, toAPIGView(v))
}

func (s *server) deleteAPIGCert(c *gin.Context) {
	if err := s.opts.APIG.Delete(c.Request.Context(), c.Param("project_id"), c.Param("certificate_id")); err != nil {
		apigError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// listAPIGCerts serves the list. As Huawei documents, a negative offset
// means 0, a limit of 0 or less means 20 and one over 500 means 500; a
// value that is not an integer is refused. The filters are bounded: name
// and common_name 64 characters of text, the others 64 (instance_id), 32
// or 8 (algorithm_type) letters, digits, '_' and '-'.
func (s *server) listAPIGCerts(c *gin.Context) {
	v, ok := queryParams(c, apig, param{"name", 64, textChars}, param{"common_name", 64, textChars},
		param{"signature_algorithm", 32, wordChars}, param{"type", 32, wordChars}, param{"instance_id", 64, wordChars},
		param{"algorithm_type", 8, wordChars})
	if !ok {
		return
	}
	q := apigsvc.Query{Name: v["name"], CommonName: v["common_name"],
		SignatureAlgorithm: v["signature_algorithm"], Type: v["type"], InstanceID: v["instance_id"],
		AlgorithmType: v["algorithm_type"]}
	if q.Offset, ok = queryInt(c, apig, "offset", 0, math.MinInt, math.MaxInt, "must be an integer"); !ok {
		return
	}
	if q.Limit, ok = queryInt(c, apig, "limit", 0, math.MinInt, math.MaxInt, "must be an integer"); !ok {
		return
	}
	certs, total, err := s.opts.APIG.List(c.Request.Context(), c.Param("project_id"), q)
	if err != nil {
		apigError(c, err)
		return
	}
	items := make([]apigCertItem, 0, len(certs))
	for i := range certs {
		items = append(items, toAPIGItem(&certs[i]))
	}
	c.JSON(http.StatusOK, gin.H{"size": len(items), "total": total, "certs": items})
}
