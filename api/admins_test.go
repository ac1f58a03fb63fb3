package api_test

import (
	"context"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

func message(t *testing.T, r *apitest.Response) string {
	t.Helper()
	m := r.Map(t)
	assert.Len(t, m, 1, "CZERTAINLY errors are {\"message\"} only: %s", r.Body)
	s, _ := m["message"].(string)
	return s
}

func TestAdminsAPI(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			opCert := f.ca.Issue(t, testpki.Options{CommonName: "Operator One", Serial: big.NewInt(0x01f2),
				DNSNames: []string{"op.example"}})
			body := map[string]any{
				"adminCertificate": opCert.B64(), "username": "op1", "name": "Op", "surname": "One",
				"email": "op1@example.com", "role": "administrator", "description": "night shift",
				"someNewerField": true, // ignored, as the reference service does
			}

			// create: 201 {"uuid"} + Location
			r := f.doAs(f.super, "POST", "/v1/admins", body)
			require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
			created := r.Map(t)
			id := created["uuid"].(string)
			assert.Len(t, created, 1)
			assert.Equal(t, "/v1/admins/"+id, r.Header.Get("Location"))

			// get: the admin object with its parsed certificate
			r = f.doAs(f.admin, "GET", "/v1/admins/"+id, nil)
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			a := r.Map(t)
			for k, want := range map[string]any{"uuid": id, "username": "op1", "name": "Op", "surname": "One",
				"email": "op1@example.com", "description": "night shift", "enabled": false,
				"role": "administrator", "serialNumber": "1f2"} {
				assert.Equal(t, want, a[k], k)
			}
			c := a["certificate"].(map[string]any)
			for k, want := range map[string]any{
				"commonName": "Operator One", "serialNumber": "1f2", "issuerCommonName": "hsmca admin CA",
				"certificateContent": opCert.B64(), "subjectDn": "CN=Operator One,O=hsmca tests",
				"issuerDn": "CN=hsmca admin CA,O=hsmca tests", "publicKeyAlgorithm": "ECDSA",
				"signatureAlgorithm": "ECDSA-SHA256", "keySize": float64(256), "status": "valid",
				"fingerprint": encoding.Fingerprint(opCert.Cert.Raw), "certificateType": "X509",
				"basicConstraints": "Subject Type=End Entity",
				"notBefore":        opCert.Cert.NotBefore.UTC().Format(time.RFC3339),
				"notAfter":         opCert.Cert.NotAfter.UTC().Format(time.RFC3339),
			} {
				assert.Equal(t, want, c[k], "certificate.%s", k)
			}
			assert.Equal(t, []any{"1.3.6.1.5.5.7.3.2"}, c["extendedKeyUsage"])
			assert.Equal(t, []any{"digitalSignature"}, c["keyUsage"])
			assert.Equal(t, []any{"op.example"}, c["subjectAlternativeNames"].(map[string]any)["dNSName"])
			assert.NotEmpty(t, c["uuid"])

			// list
			r = f.doAs(f.admin, "GET", "/v1/admins", nil)
			require.Equal(t, http.StatusOK, r.Status)
			var list []map[string]any
			r.JSON(t, &list)
			var names []string
			for _, x := range list {
				names = append(names, x["username"].(string))
			}
			assert.Equal(t, []string{"root", "reader", "op1"}, names)

			// duplicates: 400 "... already exists."
			dup := clone(body)
			dup["adminCertificate"] = f.ca.Issue(t, testpki.Options{}).B64()
			dup["username"] = "OP1"
			r = f.doAs(f.super, "POST", "/v1/admins", dup)
			assert.Equal(t, http.StatusBadRequest, r.Status)
			assert.Equal(t, "Admin with username OP1 already exists.", message(t, r))
			dup = clone(body)
			dup["username"] = "op2"
			dup["adminCertificate"] = testpki.NewCA(t, "other").Issue(t, testpki.Options{Serial: big.NewInt(0x01f2)}).B64()
			r = f.doAs(f.super, "POST", "/v1/admins", dup)
			assert.Equal(t, http.StatusBadRequest, r.Status)
			assert.True(t, strings.HasSuffix(message(t, r), "already exists."))

			// validation: 422 with a JSON array of messages
			r = f.doAs(f.super, "POST", "/v1/admins", map[string]any{"username": "x y", "email": "nope", "role": "boss"})
			assert.Equal(t, http.StatusUnprocessableEntity, r.Status)
			var msgs []string
			r.JSON(t, &msgs)
			assert.Len(t, msgs, 6, "%v", msgs)
			assert.Contains(t, msgs, "email: must be a valid email address")
			bad := clone(body)
			bad["username"], bad["adminCertificate"] = "op3", "bm90IGEgY2VydA=="
			r = f.doAs(f.super, "POST", "/v1/admins", bad)
			assert.Equal(t, http.StatusUnprocessableEntity, r.Status)
			r.JSON(t, &msgs)
			require.Len(t, msgs, 1)
			assert.True(t, strings.HasPrefix(msgs[0], "adminCertificate: "))

			// certificateUuid: no inventory yet, so not found
			ref := clone(body)
			delete(ref, "adminCertificate")
			ref["username"], ref["certificateUuid"] = "op3", "7b55ae1c-844f-11dc-a8a3-0242ac120002"
			r = f.doAs(f.super, "POST", "/v1/admins", ref)
			assert.Equal(t, http.StatusNotFound, r.Status)
			assert.Equal(t, "Certificate 7b55ae1c-844f-11dc-a8a3-0242ac120002 not found", message(t, r))

			// malformed body: 400
			r = f.doAs(f.super, "POST", "/v1/admins", "{")
			assert.Equal(t, http.StatusBadRequest, r.Status)
			message(t, r)

			// edit: everything but the username
			newCert := f.ca.Issue(t, testpki.Options{CommonName: "Operator One (2)"})
			r = f.doAs(f.super, "POST", "/v1/admins/"+id, map[string]any{"surname": "Uno", "role": "superAdministrator",
				"adminCertificate": newCert.B64(), "description": "", "username": "op1"})
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			a = r.Map(t)
			assert.Equal(t, "Uno", a["surname"])
			assert.Equal(t, "Op", a["name"])
			assert.Equal(t, "", a["description"])
			assert.Equal(t, "superAdministrator", a["role"])
			assert.Equal(t, encoding.SerialHex(newCert.Cert.SerialNumber), a["serialNumber"])
			r = f.doAs(f.super, "POST", "/v1/admins/"+id, map[string]any{"username": "renamed"})
			assert.Equal(t, http.StatusUnprocessableEntity, r.Status)
			r = f.doAs(f.super, "POST", "/v1/admins/"+id, map[string]any{"email": "x"})
			assert.Equal(t, http.StatusUnprocessableEntity, r.Status)
			r = f.doAs(f.super, "POST", "/v1/admins/"+id, map[string]any{"adminCertificate": f.admin.B64()})
			assert.Equal(t, http.StatusBadRequest, r.Status, "another admin's certificate")
			assert.True(t, strings.HasSuffix(message(t, r), "already exists."))

			// unknown ids: 404 {"message"}
			unknown := "0e6c3f3a-6b0a-4c7e-8f69-8d1f7b2a9c55"
			for _, call := range [][2]string{{"GET", ""}, {"POST", ""}, {"DELETE", ""}, {"PUT", "/enable"}, {"PUT", "/disable"}} {
				for _, u := range []string{unknown, "not-a-uuid"} {
					r = f.doAs(f.super, call[0], "/v1/admins/"+u+call[1], map[string]any{})
					assert.Equal(t, http.StatusNotFound, r.Status, "%s %s", call[0], call[1])
					assert.Equal(t, "Admin "+u+" not found", message(t, r))
				}
			}

			// enable / disable, single and bulk (unknown ids skipped)
			r = f.doAs(f.super, "PUT", "/v1/admins/"+id+"/enable", nil)
			assert.Equal(t, http.StatusNoContent, r.Status)
			assert.Equal(t, http.StatusOK, f.doAs(newCert, "GET", "/v1/admins", nil).Status, "enabled: its certificate works")
			r = f.doAs(f.super, "PUT", "/v1/admins/disable", []string{unknown, id, "junk"})
			assert.Equal(t, http.StatusNoContent, r.Status, string(r.Body))
			r = f.doAs(newCert, "GET", "/v1/admins", nil)
			assert.Equal(t, http.StatusUnauthorized, r.Status, "disabled: refused")
			message(t, r)
			r = f.doAs(f.super, "PUT", "/v1/admins/enable", []string{id, unknown})
			assert.Equal(t, http.StatusNoContent, r.Status)
			assert.Equal(t, http.StatusOK, f.doAs(newCert, "GET", "/v1/admins", nil).Status)
			r = f.doAs(f.super, "PUT", "/v1/admins/enable", map[string]any{"uuids": []string{id}})
			assert.Equal(t, http.StatusBadRequest, r.Status, "the body is a JSON array")

			// the last enabled superAdministrator: 409
			r = f.doAs(f.super, "PUT", "/v1/admins/"+id+"/disable", nil)
			require.Equal(t, http.StatusNoContent, r.Status)
			for _, call := range []struct {
				method, path string
				body         any
			}{
				{"PUT", "/v1/admins/" + f.superID + "/disable", nil},
				{"DELETE", "/v1/admins/" + f.superID, nil},
				{"PUT", "/v1/admins/disable", []string{f.superID}},
				{"DELETE", "/v1/admins", []string{f.adminID, f.superID}},
				{"POST", "/v1/admins/" + f.superID, map[string]any{"role": "administrator"}},
			} {
				r = f.doAs(f.super, call.method, call.path, call.body)
				assert.Equal(t, http.StatusConflict, r.Status, "%s %s: %s", call.method, call.path, r.Body)
				assert.Contains(t, message(t, r), "last enabled superAdministrator")
			}
			assert.Equal(t, http.StatusOK, f.doAs(f.admin, "GET", "/v1/admins", nil).Status, "the refused bulk delete removed nothing")

			// administrator reads but never writes
			for _, call := range [][2]string{{"POST", "/v1/admins"}, {"POST", "/v1/admins/" + id}, {"DELETE", "/v1/admins/" + id},
				{"DELETE", "/v1/admins"}, {"PUT", "/v1/admins/" + id + "/enable"}, {"PUT", "/v1/admins/enable"}} {
				r = f.doAs(f.admin, call[0], call[1], []string{id})
				assert.Equal(t, http.StatusForbidden, r.Status, "%v", call)
				message(t, r)
			}

			// delete, single and bulk
			r = f.doAs(f.super, "DELETE", "/v1/admins/"+id, nil)
			assert.Equal(t, http.StatusNoContent, r.Status)
			assert.Equal(t, http.StatusNotFound, f.doAs(f.super, "GET", "/v1/admins/"+id, nil).Status)
			r = f.doAs(f.super, "DELETE", "/v1/admins", []string{f.adminID, id, unknown})
			assert.Equal(t, http.StatusNoContent, r.Status)
			assert.Equal(t, http.StatusUnauthorized, f.doAs(f.admin, "GET", "/v1/admins", nil).Status, "a deleted admin is refused")
			r = f.doAs(f.super, "GET", "/v1/admins", nil)
			r.JSON(t, &list)
			assert.Len(t, list, 1)

			// Every operation is an event of the platform chain, by principal.
			evs, err := f.env.Engine.ListEvents(context.Background(), store.PlatformTenant, 0, 0)
			require.NoError(t, err)
			seen := map[string]bool{}
			for _, ev := range evs {
				seen[ev.Operation+"_"+ev.Outcome] = true
				if ev.Operation == "ADMIN_CREATE" && ev.Outcome == "SUCCESS" {
					assert.Equal(t, "admin:"+encoding.SerialHex(f.super.Cert.SerialNumber), ev.Principal)
				}
			}
			for _, want := range []string{"ADMIN_BOOTSTRAP_SUCCESS", "ADMIN_CREATE_SUCCESS", "ADMIN_CREATE_FAIL",
				"ADMIN_RETRIEVE_SUCCESS", "ADMIN_RETRIEVE_FAIL", "ADMIN_RETRIEVE_LIST_SUCCESS", "ADMIN_UPDATE_SUCCESS",
				"ADMIN_UPDATE_FAIL", "ADMIN_DELETE_SUCCESS", "ADMIN_DELETE_FAIL", "ADMIN_ENABLE_SUCCESS",
				"ADMIN_DISABLE_SUCCESS", "ADMIN_DISABLE_FAIL", "ADMIN_BULK_DELETE_SUCCESS", "ADMIN_BULK_DELETE_FAIL",
				"ADMIN_BULK_ENABLE_SUCCESS", "ADMIN_BULK_DISABLE_SUCCESS", "ADMIN_BULK_DISABLE_FAIL"} {
				assert.True(t, seen[want], "event %s", want)
			}
		})
	}
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestAdminCertificateHeader: the forms X-APP-CERTIFICATE takes, and a
// certificate that shares the registered serial but is not the registered
// certificate.
func TestAdminCertificateHeader(t *testing.T) {
	f := newFixture(t, "bolt")
	pemText := string(f.admin.PEM())
	for name, v := range map[string]string{
		"base64 DER":       f.admin.B64(),
		"url-encoded PEM":  url.QueryEscape(pemText),
		"path-escaped PEM": url.PathEscape(pemText),
		"raw url base64":   base64.RawURLEncoding.EncodeToString(f.admin.Cert.Raw),
		"PEM on one line":  strings.ReplaceAll(strings.TrimSpace(pemText), "\n", " "),
		"escaped + signs":  strings.ReplaceAll(f.admin.B64(), "+", "%2B"),
	} {
		r := f.env.Do("GET", "/v1/admins", "", nil, certHeader, v)
		assert.Equal(t, http.StatusOK, r.Status, "%s: %s", name, r.Body)
	}
	twin := f.ca.Issue(t, testpki.Options{Serial: f.admin.Cert.SerialNumber, CommonName: "reader"})
	r := f.doAs(twin, "GET", "/v1/admins", nil)
	assert.Equal(t, http.StatusUnauthorized, r.Status, "same serial, another certificate")
	r = f.env.Do("GET", "/v1/admins", "", nil, certHeader, "not a certificate")
	assert.Equal(t, http.StatusUnauthorized, r.Status)
	message(t, r)

	// Without trusted-proxy mode the header is no credential at all.
	plain := apitest.New(t, "bolt", apitest.Options{Token: f.env.Token})
	r = plain.Do("GET", "/v1/admins", "", nil, as(f.admin)...)
	assert.Equal(t, http.StatusUnauthorized, r.Status)
	assert.Contains(t, message(t, r), "missing credential")
}

func TestExpiredAdminCertificateIsRefused(t *testing.T) {
	f := newFixture(t, "bolt")
	short := f.ca.Issue(t, testpki.Options{NotAfter: time.Now().Add(2 * time.Second)})
	f.createAdmin(short, "brief", signer.RoleAdministrator, true)
	assert.Equal(t, http.StatusOK, f.doAs(short, "GET", "/v1/admins", nil).Status)
	time.Sleep(time.Until(short.Cert.NotAfter) + 1100*time.Millisecond)
	r := f.doAs(short, "GET", "/v1/admins", nil)
	assert.Equal(t, http.StatusUnauthorized, r.Status)
	r = f.doAs(f.super, "GET", "/v1/admins", nil)
	assert.Contains(t, string(r.Body), `"status":"expired"`)
}
