package oapiclient_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/internal/oapiclient"
	"github.com/hsmca/hsmca/internal/testpki"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/admins"
	"github.com/hsmca/hsmca/signer/dts"
)

// stack is the whole HTTP stack in-process, every exchange checked
// against the document (internal/apitest), in trusted-proxy mode so that
// administrators present their certificate in X-APP-CERTIFICATE; with a
// tenant token of every tenant role and a bootstrapped superAdministrator.
type stack struct {
	env    *apitest.Env
	c      *oapiclient.ClientWithResponses
	tenant string
	token  oapiclient.RequestEditorFn
	super  oapiclient.RequestEditorFn
	ca     *testpki.CA
}

func newStack(t *testing.T) *stack {
	t.Helper()
	env := apitest.New(t, "bolt", apitest.Options{DTS: []dts.Option{dts.IssuerAltName("https://dts.example.com/iaca")},
		Configure: func(o *api.Options) { o.TrustedProxy = true }})
	c, err := oapiclient.NewClientWithResponses(env.Server.URL)
	require.NoError(t, err)
	d := &stack{env: env, c: c, tenant: "acme", ca: testpki.NewCA(t, "hsmca admin CA")}
	secret := env.NewToken(d.tenant, signer.TenantRoles...)
	d.token = header("Authorization", "Bearer "+secret)
	super := d.ca.Issue(t, testpki.Options{CommonName: "root"})
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	_, err = env.Admins.Bootstrap(ctx, admins.Input{Username: "root", Certificate: super.B64()},
		admins.BootstrapOptions{ProfileOptional: true, Recover: true})
	require.NoError(t, err)
	d.super = header("X-APP-CERTIFICATE", super.B64())
	return d
}

func header(name, value string) oapiclient.RequestEditorFn {
	return func(_ context.Context, r *http.Request) error {
		r.Header.Set(name, value)
		return nil
	}
}

func ptr[T any](v T) *T { return &v }

// TestGeneratedClientDrivesEveryFamily calls a few operations of each
// family through the client generated from api/openapi.yaml, reading the
// answers only through the generated types (each status's body decoded
// into its schema, error envelopes included).
func TestGeneratedClientDrivesEveryFamily(t *testing.T) {
	d := newStack(t)
	ctx := context.Background()

	t.Run("operations", func(t *testing.T) {
		h, err := d.c.GetHealthzWithResponse(ctx)
		require.NoError(t, err)
		require.NotNil(t, h.JSON200, string(h.Body))
		assert.Equal(t, oapiclient.HealthzStatusOk, h.JSON200.Status)
		r, err := d.c.GetReadyzWithResponse(ctx)
		require.NoError(t, err)
		require.NotNil(t, r.JSON200, string(r.Body))
		assert.Equal(t, oapiclient.ReadinessStatusReady, r.JSON200.Status)
		doc, err := d.c.GetOpenAPIWithResponse(ctx)
		require.NoError(t, err)
		assert.Equal(t, api.OpenAPI(), doc.Body)
	})

	t.Run("keys and events", func(t *testing.T) {
		k, err := d.c.CreateKeyWithResponse(ctx, oapiclient.KeyCreate{Algorithm: oapiclient.KeyCreateAlgorithmEC256,
			Label: ptr("generated client")}, d.token)
		require.NoError(t, err)
		require.NotNil(t, k.JSON201, string(k.Body))
		assert.Equal(t, "/v1/keys/"+k.JSON201.Id, k.Headers201.Location)
		assert.Equal(t, []oapiclient.SigningAlgorithm{oapiclient.SigningAlgorithmES256}, k.JSON201.SigningAlgorithms)

		msg := oapiclient.Base64(base64.StdEncoding.EncodeToString([]byte("signed through the generated client")))
		s, err := d.c.SignWithKeyWithResponse(ctx, k.JSON201.Id, oapiclient.SignRequest{Message: &msg}, d.token)
		require.NoError(t, err)
		require.NotNil(t, s.JSON200, string(s.Body))
		assert.Equal(t, oapiclient.SigningAlgorithmES256, s.JSON200.Algorithm)
		v, err := d.c.VerifyWithKeyWithResponse(ctx, k.JSON201.Id, oapiclient.VerifyRequest{Message: &msg,
			Signature: oapiclient.Base64(s.JSON200.Signature)}, d.token)
		require.NoError(t, err)
		require.NotNil(t, v.JSON200, string(v.Body))
		assert.True(t, v.JSON200.Valid)

		l, err := d.c.ListKeysWithResponse(ctx, &oapiclient.ListKeysParams{Limit: ptr(10)}, d.token)
		require.NoError(t, err)
		require.NotNil(t, l.JSON200, string(l.Body))
		assert.Len(t, l.JSON200.Data, 1)

		// An error answer decodes into the family's envelope.
		g, err := d.c.GetKeyWithResponse(ctx, "no-such-key", d.token)
		require.NoError(t, err)
		require.NotNil(t, g.JSON404, "%d %s", g.StatusCode(), g.Body)
		assert.Equal(t, oapiclient.NativeErrorCodeNotFound, g.JSON404.Code)
		u, err := d.c.ListKeysWithResponse(ctx, nil)
		require.NoError(t, err)
		require.NotNil(t, u.JSON401, "%d %s", u.StatusCode(), u.Body)

		e, err := d.c.ListEventsWithResponse(ctx, &oapiclient.ListEventsParams{Operation: ptr("KEY_*"),
			Outcome: ptr("SUCCESS")}, d.token)
		require.NoError(t, err)
		require.NotNil(t, e.JSON200, string(e.Body))
		require.NotEmpty(t, e.JSON200.Data)
		assert.Equal(t, "KEY_CREATE", e.JSON200.Data[0].Operation)
		assert.Equal(t, oapiclient.EventOutcomeSUCCESS, e.JSON200.Data[0].Outcome)
	})

	t.Run("tokens", func(t *testing.T) {
		c, err := d.c.CreateTokenWithResponse(ctx, oapiclient.TokenCreate{Tenant: "beta",
			Roles: []oapiclient.TenantRole{oapiclient.TenantRoleAuditor}}, d.super)
		require.NoError(t, err)
		require.NotNil(t, c.JSON201, string(c.Body))
		assert.NotEmpty(t, c.JSON201.Token)
		assert.Nil(t, c.JSON201.ExpiresAt)
		l, err := d.c.ListTokensWithResponse(ctx, &oapiclient.ListTokensParams{Tenant: ptr("beta")}, d.super)
		require.NoError(t, err)
		require.NotNil(t, l.JSON200, string(l.Body))
		require.Len(t, l.JSON200.Data, 1)
		assert.Equal(t, c.JSON201.Id, l.JSON200.Data[0].Id)
		r, err := d.c.RevokeTokenWithResponse(ctx, c.JSON201.Id, d.super)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNoContent, r.StatusCode(), string(r.Body))
		// A tenant token may not manage tokens.
		f, err := d.c.ListTokensWithResponse(ctx, nil, d.token)
		require.NoError(t, err)
		require.NotNil(t, f.JSON403, "%d %s", f.StatusCode(), f.Body)
	})

	t.Run("MATTR VII DTS", func(t *testing.T) {
		var body oapiclient.DtsRootCreate
		require.NoError(t, body.FromDtsManagedRootCreate(oapiclient.DtsManagedRootCreate{OrganisationName: "Example Inc.",
			Country: ptr("NZ")}))
		root, err := d.c.CreateDtsRootWithResponse(ctx, body, d.token)
		require.NoError(t, err)
		require.NotNil(t, root.JSON201, string(root.Body))
		assert.True(t, root.JSON201.IsManaged)
		assert.Equal(t, "NZ", root.JSON201.CertificateData.Country)

		sg, err := d.c.CreateVicalSignerWithResponse(ctx, oapiclient.VicalSignerCreate{CaId: &root.JSON201.Id}, d.token)
		require.NoError(t, err)
		require.NotNil(t, sg.JSON201, string(sg.Body))
		require.NotNil(t, sg.JSON201.CertificatePem, "a managed, active root signs its signer at once")
		up, err := d.c.UpdateVicalSignerWithResponse(ctx, sg.JSON201.Id, oapiclient.VicalSignerUpdate{Active: ptr(true)}, d.token)
		require.NoError(t, err)
		require.NotNil(t, up.JSON200, string(up.Body))
		assert.True(t, up.JSON200.Active)
		sig, err := d.c.SignWithVicalSignerWithResponse(ctx, sg.JSON201.Id,
			oapiclient.VicalSignRequest{Payload: oapiclient.Base64(base64.StdEncoding.EncodeToString([]byte("VICAL")))}, d.token)
		require.NoError(t, err)
		require.NotNil(t, sig.JSON200, string(sig.Body))
		assert.NotEmpty(t, sig.JSON200.Signature)

		crl, err := d.c.GetDtsRootCrlWithResponse(ctx, root.JSON201.Id) // public
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, crl.StatusCode(), string(crl.Body))
		_, err = x509.ParseRevocationList(crl.Body)
		require.NoError(t, err)
		rc, err := d.c.GetDtsRootCertificateWithResponse(ctx, root.JSON201.Id) // public
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, rc.StatusCode(), string(rc.Body))
		rootCert, err := x509.ParseCertificate(rc.Body)
		require.NoError(t, err)
		assert.True(t, rootCert.IsCA)

		bad, err := d.c.CreateDtsRootWithBodyWithResponse(ctx, "application/json",
			strings.NewReader(`{"organisationName":"x","certificatePem":"y"}`), d.token)
		require.NoError(t, err)
		require.NotNil(t, bad.JSON400, "%d %s", bad.StatusCode(), bad.Body)
		assert.Equal(t, oapiclient.MattrErrorCodeBadRequest, bad.JSON400.Code)
		assert.NotEmpty(t, bad.JSON400.Details)
	})

	t.Run("Huawei CCM PCA", func(t *testing.T) {
		dn := oapiclient.PcaDistinguishedName{CommonName: ptr("Client Root"), Country: ptr("DE"), State: ptr("Berlin"),
			Locality: ptr("Berlin"), Organization: ptr("hsmca tests"), OrganizationalUnit: ptr("PKI")}
		sha := oapiclient.PcaSignatureAlgorithmSHA256
		ca, err := d.c.CreatePcaCAWithResponse(ctx, oapiclient.PcaCACreate{Type: oapiclient.PcaCATypeROOT,
			KeyAlgorithm: oapiclient.PcaKeyAlgorithmEC256, SignatureAlgorithm: &sha, DistinguishedName: dn,
			Validity: &oapiclient.PcaValidity{Type: oapiclient.PcaValidityTypeYEAR, Value: 5}}, d.token)
		require.NoError(t, err)
		require.NotNil(t, ca.JSON200, string(ca.Body))
		caID := ca.JSON200.CaId
		show, err := d.c.GetPcaCAWithResponse(ctx, caID, d.token)
		require.NoError(t, err)
		require.NotNil(t, show.JSON200, string(show.Body))
		assert.Equal(t, oapiclient.PcaCAStatusACTIVED, show.JSON200.Status)
		assert.Nil(t, show.JSON200.IssuerId)
		require.NotNil(t, show.JSON200.NotAfter)

		cert, err := d.c.IssuePcaCertificateWithResponse(ctx, oapiclient.PcaCertificateIssue{IssuerId: caID,
			DistinguishedName: oapiclient.PcaDistinguishedName{CommonName: ptr("www.example.com")},
			Validity:          oapiclient.PcaValidity{Type: oapiclient.PcaValidityTypeDAY, Value: 30},
			SubjectAlternativeNames: &[]oapiclient.PcaSubjectAlternativeName{{Type: oapiclient.PcaSubjectAlternativeNameTypeDNS,
				Value: "www.example.com"}}}, d.token)
		require.NoError(t, err)
		require.NotNil(t, cert.JSON200, string(cert.Body))
		exp, err := d.c.ExportPcaCertificateWithResponse(ctx, cert.JSON200.CertificateId,
			oapiclient.PcaCertificateExportRequest{Password: ptr("correct horse")}, d.token)
		require.NoError(t, err)
		require.NotNil(t, exp.JSON200, string(exp.Body))
		require.NotNil(t, exp.JSON200.PrivateKey)
		assert.Contains(t, *exp.JSON200.PrivateKey, "ENCRYPTED PRIVATE KEY")
		rv, err := d.c.RevokePcaCertificateWithResponse(ctx, cert.JSON200.CertificateId,
			oapiclient.PcaRevoke{Reason: ptr(oapiclient.PcaRevokeReasonKEYCOMPROMISE)}, d.token)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNoContent, rv.StatusCode(), string(rv.Body))
		list, err := d.c.ListPcaCertificatesWithResponse(ctx, &oapiclient.ListPcaCertificatesParams{
			Status: ptr(oapiclient.PcaCertificateStatusREVOKED)}, d.token)
		require.NoError(t, err)
		require.NotNil(t, list.JSON200, string(list.Body))
		require.Equal(t, 1, list.JSON200.Total)
		require.NotNil(t, list.JSON200.Certificates[0].RevokeReason)
		assert.Equal(t, "KEY_COMPROMISE", *list.JSON200.Certificates[0].RevokeReason)
		q, err := d.c.GetPcaCertificateQuotasWithResponse(ctx, d.token)
		require.NoError(t, err)
		require.NotNil(t, q.JSON200, string(q.Body))
		require.Len(t, q.JSON200.Quotas.Resources, 1)
		assert.Equal(t, oapiclient.PcaQuotasQuotasResourcesTypeCERTIFICATE, q.JSON200.Quotas.Resources[0].Type)

		// Unknown ids answer 400 PCA.10010002, as the public service does.
		nf, err := d.c.GetPcaCAWithResponse(ctx, "00000000-0000-4000-8000-000000000000", d.token)
		require.NoError(t, err)
		require.NotNil(t, nf.JSON400, "%d %s", nf.StatusCode(), nf.Body)
		assert.Equal(t, api.PCACodeNotFound, nf.JSON400.ErrorCode)
	})

	t.Run("Huawei APIG", func(t *testing.T) {
		leafCA := testpki.NewCA(t, "XXSSL CA")
		leaf := leafCA.Issue(t, testpki.Options{CommonName: "apigtest.example.com", Server: true,
			DNSNames: []string{"apigtest.example.com", "*.san.com"}})
		in := oapiclient.ApigCertificateInput{Name: "cert_demo", CertContent: string(leaf.PEM()),
			PrivateKey: string(leaf.KeyPEM(t))}
		c, err := d.c.CreateApigCertificateWithResponse(ctx, d.tenant, in, d.token)
		require.NoError(t, err)
		require.NotNil(t, c.JSON200, string(c.Body))
		assert.Equal(t, []string{"apigtest.example.com", "*.san.com"}, c.JSON200.San)
		assert.Equal(t, "common", c.JSON200.InstanceId)
		l, err := d.c.ListApigCertificatesWithResponse(ctx, d.tenant, &oapiclient.ListApigCertificatesParams{
			Name: ptr("cert_demo")}, d.token)
		require.NoError(t, err)
		require.NotNil(t, l.JSON200, string(l.Body))
		require.Equal(t, 1, l.JSON200.Total)
		assert.Equal(t, c.JSON200.Id, l.JSON200.Certs[0].Id)

		dup, err := d.c.CreateApigCertificateWithResponse(ctx, d.tenant, in, d.token)
		require.NoError(t, err)
		require.NotNil(t, dup.JSON400, "%d %s", dup.StatusCode(), dup.Body)
		assert.Equal(t, api.APIGCodeNameTaken, dup.JSON400.ErrorCode)
		other, err := d.c.GetApigCertificateWithResponse(ctx, "someone-else", c.JSON200.Id, d.token)
		require.NoError(t, err)
		require.NotNil(t, other.JSON403, "%d %s", other.StatusCode(), other.Body)
		assert.Equal(t, api.APIGCodeForbidden, other.JSON403.ErrorCode)

		del, err := d.c.DeleteApigCertificateWithResponse(ctx, d.tenant, c.JSON200.Id, d.token)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNoContent, del.StatusCode(), string(del.Body))
		gone, err := d.c.GetApigCertificateWithResponse(ctx, d.tenant, c.JSON200.Id, d.token)
		require.NoError(t, err)
		require.NotNil(t, gone.JSON404, "%d %s", gone.StatusCode(), gone.Body)
	})

	t.Run("CZERTAINLY", func(t *testing.T) {
		op := d.ca.Issue(t, testpki.Options{CommonName: "Operator"})
		c, err := d.c.CreateAdminWithResponse(ctx, oapiclient.CzAdminCreate{AdminCertificate: ptr(op.B64()),
			Username: "op1", Name: "Op", Surname: "One", Email: "op1@example.com",
			Role: oapiclient.PlatformRoleAdministrator, Enabled: ptr(true)}, d.super)
		require.NoError(t, err)
		require.NotNil(t, c.JSON201, string(c.Body))
		assert.Equal(t, "/v1/admins/"+c.JSON201.Uuid, c.Headers201.Location)

		g, err := d.c.GetAdminWithResponse(ctx, c.JSON201.Uuid, header("X-APP-CERTIFICATE", op.B64()))
		require.NoError(t, err)
		require.NotNil(t, g.JSON200, string(g.Body))
		assert.Equal(t, "op1", g.JSON200.Username)
		assert.Equal(t, "Operator", g.JSON200.Certificate.CommonName)

		dis, err := d.c.DisableAdminsWithResponse(ctx, oapiclient.CzUuidList{c.JSON201.Uuid}, d.super)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNoContent, dis.StatusCode(), string(dis.Body))
		l, err := d.c.ListAdminsWithResponse(ctx, d.super)
		require.NoError(t, err)
		require.NotNil(t, l.JSON200, string(l.Body))
		assert.Len(t, *l.JSON200, 2)

		// Field validation failures: 422 with one message per field.
		bad, err := d.c.CreateAdminWithResponse(ctx, oapiclient.CzAdminCreate{AdminCertificate: ptr(op.B64()),
			Username: "op2", Name: "Op", Surname: "Two", Email: "not an address",
			Role: oapiclient.PlatformRoleAdministrator}, d.super)
		require.NoError(t, err)
		require.NotNil(t, bad.JSON422, "%d %s", bad.StatusCode(), bad.Body)
		assert.NotEmpty(t, *bad.JSON422)
	})
}
