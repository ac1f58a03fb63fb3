package api_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdktime"
	apigmodel "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/apig/v2/model"
	ccmv1 "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1"
	ccmmodel "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/ccm/v1/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
)

// The official Huawei Cloud Go SDK (services apig/v2 and ccm/v1) against
// hsmcad: plain AK/SK credentials with a project id (APIG) or a domain id
// (CCM), an endpoint override, nothing else. Each answer must decode into
// the SDK's model with the fields hsmca fills set and right; fields of the
// models that mean nothing in hsmca are named where they are skipped.
//
// SDK quirks met on the way (the wire format is not bent to them):
//   - ccm Validity.StartFrom is *int32, but the service (and hsmca) take
//     epoch milliseconds, which overflow int32 since 1970-01-25: an SDK
//     user cannot set start_from at all.
//   - ccm DeleteCertificateAuthorityRequest.PendingDays is a plain string,
//     so the SDK always sends pending_days, empty when not set.
//   - apig ListCertificatesV2Request.InstanceId is a plain string, so the
//     SDK always sends instance_id, empty when not set.
//   - ccm EnableCertificateAuthorityCrlRequestBody.ObsBucketName is a
//     plain string, so obs_bucket_name is always sent.
//   - ccm list models (CertificateAuthorities, Certificates,
//     ListCrlConfiguration) have non-pointer fields: a null or missing field
//     decodes as "" or 0, so "filled" there means non-zero.

// apigFull is what the APIG SDK's create, show and update models share:
// the full certificate object.
type apigFull struct {
	Id, Name, InstanceId, ProjectId, CommonName, SignatureAlgorithm, SerialNumber *string
	Type                                                                          string
	San, Organization, OrganizationalUnit, Locality, State, Country, Issuer       *[]string
	NotAfter, NotBefore, CreateTime, UpdateTime                                   *sdktime.SdkTime
	IsHasTrustedRootCa                                                            *bool
	Version                                                                       *int32
	AlgorithmTypeSet                                                              bool
}

// fromCreate and fromUpdate read their models through the show model:
// the three describe the same object with the same JSON fields.
func fromCreate(r *apigmodel.CreateCertificateV2Response) apigFull { return fromShow(asShow(r)) }

func fromUpdate(r *apigmodel.UpdateCertificateV2Response) apigFull { return fromShow(asShow(r)) }

func asShow(v any) *apigmodel.ShowDetailsOfCertificateV2Response {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out apigmodel.ShowDetailsOfCertificateV2Response
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(err)
	}
	return &out
}

func fromShow(r *apigmodel.ShowDetailsOfCertificateV2Response) apigFull {
	f := apigFull{Id: r.Id, Name: r.Name, InstanceId: r.InstanceId, ProjectId: r.ProjectId, CommonName: r.CommonName,
		SignatureAlgorithm: r.SignatureAlgorithm, SerialNumber: r.SerialNumber, San: r.San, Organization: r.Organization,
		OrganizationalUnit: r.OrganizationalUnit, Locality: r.Locality, State: r.State, Country: r.Country,
		Issuer: r.Issuer, NotAfter: r.NotAfter, NotBefore: r.NotBefore, CreateTime: r.CreateTime, UpdateTime: r.UpdateTime,
		IsHasTrustedRootCa: r.IsHasTrustedRootCa, Version: r.Version, AlgorithmTypeSet: r.AlgorithmType != nil}
	if r.Type != nil {
		f.Type = r.Type.Value()
	}
	return f
}

// checkAPIGFull asserts every field of a full certificate object against
// the leaf it was made from.
func checkAPIGFull(t *testing.T, f apigFull, name, project, typ, instance string, leaf *x509.Certificate, trusted bool) {
	t.Helper()
	require.NotNil(t, f.Id)
	assert.Regexp(t, `^[0-9a-f]{32}$`, *f.Id)
	require.NotNil(t, f.Name)
	assert.Equal(t, name, *f.Name)
	assert.Equal(t, typ, f.Type)
	require.NotNil(t, f.InstanceId)
	assert.Equal(t, instance, *f.InstanceId)
	require.NotNil(t, f.ProjectId)
	assert.Equal(t, project, *f.ProjectId)
	require.NotNil(t, f.CommonName)
	assert.Equal(t, leaf.Subject.CommonName, *f.CommonName)
	require.NotNil(t, f.San)
	assert.Equal(t, leaf.DNSNames, *f.San)
	assert.True(t, leaf.NotAfter.Equal(sdkTime(t, f.NotAfter)), "not_after")
	assert.True(t, leaf.NotBefore.Equal(sdkTime(t, f.NotBefore)), "not_before")
	require.NotNil(t, f.SignatureAlgorithm)
	assert.Equal(t, leaf.SignatureAlgorithm.String(), *f.SignatureAlgorithm)
	created, updated := sdkTime(t, f.CreateTime), sdkTime(t, f.UpdateTime)
	assert.WithinDuration(t, time.Now(), created, time.Hour)
	assert.False(t, updated.Before(created), "update_time %v before create_time %v", updated, created)
	require.NotNil(t, f.IsHasTrustedRootCa)
	assert.Equal(t, trusted, *f.IsHasTrustedRootCa)
	require.NotNil(t, f.Version)
	assert.EqualValues(t, leaf.Version, *f.Version)
	for _, p := range []struct {
		name string
		got  *[]string
		want []string
	}{{"organization", f.Organization, leaf.Subject.Organization},
		{"organizational_unit", f.OrganizationalUnit, leaf.Subject.OrganizationalUnit},
		{"locality", f.Locality, leaf.Subject.Locality}, {"state", f.State, leaf.Subject.Province},
		{"country", f.Country, leaf.Subject.Country}} {
		require.NotNil(t, p.got, p.name)
		assert.Equal(t, orEmpty(p.want), *p.got, p.name)
	}
	require.NotNil(t, f.SerialNumber)
	assert.Equal(t, leaf.SerialNumber.String(), *f.SerialNumber)
	require.NotNil(t, f.Issuer)
	assert.Equal(t, leaf.Issuer.Organization, *f.Issuer)
	assert.True(t, f.AlgorithmTypeSet, "algorithm_type")
}

// orEmpty is s, or an empty list for nil: hsmca answers [] where a
// certificate has no such attribute.
func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func firstCert(t *testing.T, pemText string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(pemText))
	require.NotNil(t, b)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

// TestHuaweiSDKAPIGCertificates drives the APIG certificate routes
// through the official SDK: create, list, show, update, delete.
func TestHuaweiSDKAPIGCertificates(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			ak, sk := env.NewAccessKey("acme", signer.RoleCAOperator)
			c := apigClient(t, env.Server.URL, ak, sk, "acme")
			o := newOSSL(t)

			// A global certificate with its chain in cert_content.
			seed := o.seedPair("rsa")
			seedLeaf := firstCert(t, seed.cert)
			created, err := c.CreateCertificateV2(&apigmodel.CreateCertificateV2Request{Body: &apigmodel.CertificateForm{
				Name: "sdk_global", CertContent: seed.cert, PrivateKey: seed.key,
				Type: ptr(apigmodel.GetCertificateFormTypeEnum().GLOBAL)}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, created.HttpStatusCode)
			checkAPIGFull(t, fromCreate(created), "sdk_global", "acme", "global", "common", seedLeaf, false)
			globalID := *created.Id

			// An instance certificate with a trusted root (an EC key).
			caKey := o.key("ec")
			ca := o.ca(caKey, "/C=DE/O=SDK Root Org/CN=SDK Root")
			ecKey := o.key("ec")
			leafPath := o.leaf(ecKey, "/C=DE/ST=Berlin/L=Berlin/O=SDK Org/OU=Ops/CN=ec.example.com",
				"DNS:ec.example.com,DNS:www.ec.example.com", ca, caKey, "4242")
			ecLeaf := firstCert(t, o.read(leafPath))
			inst, err := c.CreateCertificateV2(&apigmodel.CreateCertificateV2Request{Body: &apigmodel.CertificateForm{
				Name: "sdk_instance", CertContent: o.read(leafPath), PrivateKey: o.read(ecKey),
				Type:       ptr(apigmodel.GetCertificateFormTypeEnum().INSTANCE),
				InstanceId: ptr(seedInst), TrustedRootCa: ptr(o.read(ca))}})
			require.NoError(t, err)
			checkAPIGFull(t, fromCreate(inst), "sdk_instance", "acme", "instance", seedInst, ecLeaf, true)
			instID := *inst.Id

			// algorithm_type given, SM2 refused and the SM2 signing pair:
			// api/apig_sdk_test.go and TestAPIGAlgorithmType, TestAPIGSM2SigningPair.

			// Show: the full object.
			shown, err := c.ShowDetailsOfCertificateV2(&apigmodel.ShowDetailsOfCertificateV2Request{CertificateId: instID})
			require.NoError(t, err)
			checkAPIGFull(t, fromShow(shown), "sdk_instance", "acme", "instance", seedInst, ecLeaf, true)
			assert.Equal(t, time.Time(*inst.CreateTime), time.Time(*shown.CreateTime))

			// List: the short form, newest first, with each filter.
			list, err := c.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{})
			require.NoError(t, err)
			assert.EqualValues(t, 2, list.Total)
			assert.EqualValues(t, 2, list.Size)
			require.NotNil(t, list.Certs)
			require.Len(t, *list.Certs, 2)
			item := (*list.Certs)[0]
			require.NotNil(t, item.Id)
			assert.Equal(t, instID, *item.Id)
			require.NotNil(t, item.Name)
			assert.Equal(t, "sdk_instance", *item.Name)
			require.NotNil(t, item.Type)
			assert.Equal(t, "instance", item.Type.Value())
			require.NotNil(t, item.InstanceId)
			assert.Equal(t, seedInst, *item.InstanceId)
			require.NotNil(t, item.ProjectId)
			assert.Equal(t, "acme", *item.ProjectId)
			require.NotNil(t, item.CommonName)
			assert.Equal(t, "ec.example.com", *item.CommonName)
			require.NotNil(t, item.San)
			assert.Equal(t, []string{"ec.example.com", "www.ec.example.com"}, *item.San)
			assert.True(t, ecLeaf.NotAfter.Equal(sdkTime(t, item.NotAfter)))
			require.NotNil(t, item.SignatureAlgorithm)
			assert.Equal(t, ecLeaf.SignatureAlgorithm.String(), *item.SignatureAlgorithm)
			assert.Equal(t, time.Time(*inst.CreateTime), sdkTime(t, item.CreateTime))
			assert.Equal(t, time.Time(*inst.UpdateTime), sdkTime(t, item.UpdateTime))
			require.NotNil(t, item.IsHasTrustedRootCa)
			assert.True(t, *item.IsHasTrustedRootCa)
			require.NotNil(t, item.AlgorithmType)
			assert.Equal(t, "ECC", item.AlgorithmType.Value())
			require.NotNil(t, (*list.Certs)[1].Id)
			assert.Equal(t, globalID, *(*list.Certs)[1].Id)

			ids := func(r *apigmodel.ListCertificatesV2Response) []string {
				var out []string
				for _, c := range *r.Certs {
					out = append(out, *c.Id)
				}
				return out
			}
			for _, tc := range []struct {
				name string
				req  apigmodel.ListCertificatesV2Request
				want []string
			}{
				{"limit", apigmodel.ListCertificatesV2Request{Limit: ptr(int32(1))}, []string{instID}},
				{"offset", apigmodel.ListCertificatesV2Request{Offset: ptr(int64(1)), Limit: ptr(int32(5))}, []string{globalID}},
				{"name", apigmodel.ListCertificatesV2Request{Name: ptr("global")}, []string{globalID}},
				{"common_name", apigmodel.ListCertificatesV2Request{CommonName: ptr("ec.example")}, []string{instID}},
				{"type", apigmodel.ListCertificatesV2Request{Type: ptr(apigmodel.GetListCertificatesV2RequestTypeEnum().GLOBAL)}, []string{globalID}},
				{"instance_id", apigmodel.ListCertificatesV2Request{InstanceId: seedInst}, []string{instID}},
				{"signature_algorithm", apigmodel.ListCertificatesV2Request{SignatureAlgorithm: ptr(seedLeaf.SignatureAlgorithm.String())}, []string{globalID}},
			} {
				r, err := c.ListCertificatesV2(&tc.req)
				require.NoError(t, err, tc.name)
				assert.Equal(t, tc.want, ids(r), tc.name)
				assert.EqualValues(t, len(tc.want), r.Size, tc.name)
			}
			// limit <= 0 meaning 20 and a negative offset meaning 0: TestAPIGListPaging.

			// Update: a full replace with another certificate and key.
			other := o.selfSigned("ec", "renewed.example.com")
			otherLeaf := firstCert(t, other.cert)
			updated, err := c.UpdateCertificateV2(&apigmodel.UpdateCertificateV2Request{CertificateId: globalID,
				Body: &apigmodel.CertificateForm{Name: "sdk_global_renewed", CertContent: other.cert, PrivateKey: other.key}})
			require.NoError(t, err)
			uf := fromUpdate(updated)
			checkAPIGFull(t, uf, "sdk_global_renewed", "acme", "global", "common", otherLeaf, false)
			assert.Equal(t, globalID, *uf.Id)
			assert.Equal(t, time.Time(*created.CreateTime), time.Time(*updated.CreateTime))
			shown, err = c.ShowDetailsOfCertificateV2(&apigmodel.ShowDetailsOfCertificateV2Request{CertificateId: globalID})
			require.NoError(t, err)
			checkAPIGFull(t, fromShow(shown), "sdk_global_renewed", "acme", "global", "common", otherLeaf, false)
			// Names with Chinese characters: TestAPIGChineseNames.

			// Delete: 204, then 404 APIG.3021.
			del, err := c.DeleteCertificateV2(&apigmodel.DeleteCertificateV2Request{CertificateId: globalID})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, del.HttpStatusCode)
			status, code := sdkStatus(t, func() error {
				_, err := c.ShowDetailsOfCertificateV2(&apigmodel.ShowDetailsOfCertificateV2Request{CertificateId: globalID})
				return err
			}())
			assert.Equal(t, http.StatusNotFound, status)
			assert.Equal(t, "APIG.3021", code)
			list, err = c.ListCertificatesV2(&apigmodel.ListCertificatesV2Request{})
			require.NoError(t, err)
			assert.EqualValues(t, 1, list.Total)

			// A refusal decodes into the SDK's error with the family's code.
			status, code = sdkStatus(t, func() error {
				_, err := c.CreateCertificateV2(&apigmodel.CreateCertificateV2Request{Body: &apigmodel.CertificateForm{
					Name: "sdk_mismatch", CertContent: seed.cert, PrivateKey: other.key}})
				return err
			}())
			assert.Equal(t, http.StatusBadRequest, status)
			assert.Equal(t, "APIG.2101", code)
			assert.NotContains(t, env.Logs.String(), sk)
		})
	}
}

// seedActivateBody is the request body of the activation example in
// Huawei's "Activating a CA" document, verbatim but for the issuer id.
const seedActivateBody = `{
"signature_algorithm" : "SHA256",
"validity" : {
"type" : "YEAR",
"value" : 1
},
"path_length" : 3,
"issuer_id" : "c718fe5f-d44a-467f-80f1-948348ff4132"
}`

// ccmSDK is a CCM client and the assertions the CA tests share.
type ccmSDK struct {
	t *testing.T
	c *ccmv1.CcmClient
}

func (s ccmSDK) showCA(id string) *ccmmodel.ShowCertificateAuthorityResponse {
	s.t.Helper()
	r, err := s.c.ShowCertificateAuthority(&ccmmodel.ShowCertificateAuthorityRequest{CaId: id})
	require.NoError(s.t, err)
	return r
}

func (s ccmSDK) exportCA(id string) (cert *x509.Certificate, chain string) {
	s.t.Helper()
	r, err := s.c.ExportCertificateAuthorityCertificate(&ccmmodel.ExportCertificateAuthorityCertificateRequest{CaId: id})
	require.NoError(s.t, err)
	require.NotNil(s.t, r.Certificate)
	require.NotNil(s.t, r.CertificateChain)
	return firstCert(s.t, *r.Certificate), *r.CertificateChain
}

func (s ccmSDK) showCert(id string) *ccmmodel.ShowCertificateResponse {
	s.t.Helper()
	r, err := s.c.ShowCertificate(&ccmmodel.ShowCertificateRequest{CertificateId: id})
	require.NoError(s.t, err)
	return r
}

func sdkDN(cn string) *ccmmodel.DistinguishedName {
	return &ccmmodel.DistinguishedName{CommonName: cn, Country: "DE", State: "Berlin", Locality: "Berlin",
		Organization: "hsmca SDK", OrganizationalUnit: "PKI"}
}

// checkCA asserts a shown CA against its certificate and what was asked.
func checkCA(t *testing.T, r *ccmmodel.ShowCertificateAuthorityResponse, id, typ, status, keyAlg, sigAlg, genMode string,
	dn *ccmmodel.DistinguishedName, cert *x509.Certificate) {
	t.Helper()
	require.NotNil(t, r.CaId)
	assert.Equal(t, id, *r.CaId)
	require.NotNil(t, r.Type)
	assert.Equal(t, typ, *r.Type)
	require.NotNil(t, r.Status)
	assert.Equal(t, status, *r.Status)
	require.NotNil(t, r.KeyAlgorithm)
	assert.Equal(t, keyAlg, *r.KeyAlgorithm)
	require.NotNil(t, r.FreezeFlag)
	assert.EqualValues(t, 0, *r.FreezeFlag)
	require.NotNil(t, r.GenMode)
	assert.Equal(t, genMode, *r.GenMode)
	require.NotNil(t, r.CreateTime)
	assert.WithinDuration(t, time.Now(), time.UnixMilli(*r.CreateTime), time.Hour)
	require.NotNil(t, r.DistinguishedName)
	assert.Equal(t, *dn, *r.DistinguishedName)
	require.NotNil(t, r.CrlConfiguration)
	require.NotNil(t, r.DomainId, "domain_id: the tenant is the domain")
	assert.Equal(t, "acme", *r.DomainId)
	// No meaning in hsmca: enterprise_project_id (no enterprise
	// projects), free_quota and charging_mode (no billing), cluster_id
	// (no dedicated HSM clusters).
	if cert == nil { // PENDING: no certificate yet
		require.NotNil(t, r.PathLength, "the requested path length")
		assert.Nil(t, r.SerialNumber)
		assert.Nil(t, r.NotBefore)
		assert.Nil(t, r.NotAfter)
		return
	}
	require.NotNil(t, r.SignatureAlgorithm)
	assert.Equal(t, sigAlg, *r.SignatureAlgorithm)
	require.NotNil(t, r.SerialNumber)
	assert.Equal(t, cert.SerialNumber.Text(16), *r.SerialNumber)
	require.NotNil(t, r.NotBefore)
	assert.Equal(t, cert.NotBefore.UnixMilli(), *r.NotBefore)
	require.NotNil(t, r.NotAfter)
	assert.Equal(t, cert.NotAfter.UnixMilli(), *r.NotAfter)
	// path_length agrees with the certificate: null when it sets no
	// pathLenConstraint, as a root's does.
	if cert.MaxPathLen < 0 || (cert.MaxPathLen == 0 && !cert.MaxPathLenZero) {
		assert.Nil(t, r.PathLength, "path_length agrees with the certificate: none")
		return
	}
	require.NotNil(t, r.PathLength)
	assert.EqualValues(t, cert.MaxPathLen, *r.PathLength, "path_length agrees with the certificate")
}

// TestHuaweiSDKCCMPrivateCA drives the CCM PCA routes through the
// official SDK with global (domain) credentials: the CA lifecycle,
// issuance, certificates, CSR parsing and quotas.
func TestHuaweiSDKCCMPrivateCA(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			ak, sk := env.NewAccessKey("acme", signer.RoleCAOperator)
			s := ccmSDK{t: t, c: ccmClient(t, env.Server.URL, ak, sk, "acme")}
			c := s.c

			// A ROOT, signed at once, with its CRL on.
			rootDN := sdkDN("SDK Root CA")
			created, err := c.CreateCertificateAuthority(&ccmmodel.CreateCertificateAuthorityRequest{
				Body: &ccmmodel.CreateCertificateAuthorityRequestBody{Type: "ROOT", DistinguishedName: rootDN,
					KeyAlgorithm: "EC256", SignatureAlgorithm: ptr("SHA256"), PathLength: ptr(int32(5)),
					Validity: &ccmmodel.Validity{Type: "YEAR", Value: 10},
					CrlConfiguration: &ccmmodel.CrlConfiguration{Enabled: true, ValidDays: ptr(int32(7)),
						CrlName: ptr("sdk-root"), ObsBucketName: ptr("sdk-bucket")}}})
			require.NoError(t, err)
			require.NotNil(t, created.CaId)
			root := *created.CaId
			rootCert, rootChain := s.exportCA(root)
			// A root's chain is the root itself, as the service answers it.
			assert.Equal(t, rootCert.Raw, firstCert(t, rootChain).Raw)
			r := s.showCA(root)
			checkCA(t, r, root, "ROOT", "ACTIVED", "EC256", "SHA256", "GENERATE", rootDN, rootCert)
			assert.Nil(t, r.IssuerId, "a root has no issuer")
			assert.Nil(t, r.IssuerName)
			assert.Nil(t, r.DeleteTime)
			assert.True(t, r.CrlConfiguration.Enabled)
			assert.EqualValues(t, 7, r.CrlConfiguration.ValidDays)
			assert.NotEmpty(t, r.CrlConfiguration.CrlDisPoint)
			// On the wire: a root's issuer fields are null (not its own
			// name), and domain_id is the tenant.
			raw := env.Do("GET", pcaCAs+"/"+root, "", nil, "X-Auth-Token", env.NewToken("acme", signer.RoleCAOperator)).Map(t)
			assert.Contains(t, raw, "issuer_name")
			assert.Nil(t, raw["issuer_name"])
			assert.Nil(t, raw["issuer_id"])
			assert.Equal(t, "acme", raw["domain_id"])
			// crl_name and obs_bucket_name as given; crl_dis_point the
			// absolute URL the CRL is served at.
			assert.Equal(t, "sdk-root", r.CrlConfiguration.CrlName)
			assert.Equal(t, "sdk-bucket", r.CrlConfiguration.ObsBucketName)
			assert.Equal(t, env.Server.URL+pcaCAs+"/"+root+"/crl", r.CrlConfiguration.CrlDisPoint)

			// A SUBORDINATE signed at once by the root.
			subDN := sdkDN("SDK Issuing CA")
			created, err = c.CreateCertificateAuthority(&ccmmodel.CreateCertificateAuthorityRequest{
				Body: &ccmmodel.CreateCertificateAuthorityRequestBody{Type: "SUBORDINATE", DistinguishedName: subDN,
					KeyAlgorithm: "RSA2048", SignatureAlgorithm: ptr("SHA384"), PathLength: ptr(int32(0)),
					IssuerId: ptr(root), Validity: &ccmmodel.Validity{Type: "YEAR", Value: 3},
					KeyUsages: &[]string{"digitalSignature", "keyCertSign", "cRLSign"}}})
			require.NoError(t, err)
			sub := *created.CaId
			subCert, subChain := s.exportCA(sub)
			assert.Equal(t, rootCert.Raw, firstCert(t, subChain).Raw, "a subordinate's chain starts at its issuer")
			assert.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign|x509.KeyUsageCRLSign, subCert.KeyUsage)
			assert.True(t, subCert.MaxPathLenZero)
			r = s.showCA(sub)
			checkCA(t, r, sub, "SUBORDINATE", "ACTIVED", "RSA2048", "SHA384", "GENERATE", subDN, subCert)
			require.NotNil(t, r.IssuerId)
			assert.Equal(t, root, *r.IssuerId)
			require.NotNil(t, r.IssuerName)
			assert.Equal(t, "SDK Root CA", *r.IssuerName)
			assert.False(t, r.CrlConfiguration.Enabled)

			// A PENDING subordinate, activated with the seed's body.
			pendDN := sdkDN("SDK Pending CA")
			created, err = c.CreateCertificateAuthority(&ccmmodel.CreateCertificateAuthorityRequest{
				Body: &ccmmodel.CreateCertificateAuthorityRequestBody{Type: "SUBORDINATE", DistinguishedName: pendDN,
					KeyAlgorithm: "EC384"}})
			require.NoError(t, err)
			pending := *created.CaId
			checkCA(t, s.showCA(pending), pending, "SUBORDINATE", "PENDING", "EC384", "", "GENERATE", pendDN, nil)
			csr, err := c.ExportCertificateAuthorityCsr(&ccmmodel.ExportCertificateAuthorityCsrRequest{CaId: pending})
			require.NoError(t, err)
			require.NotNil(t, csr.Csr)
			assert.Contains(t, *csr.Csr, "-----BEGIN CERTIFICATE REQUEST-----")

			var body ccmmodel.IssueCertificateAuthorityCertificateRequestBody
			require.NoError(t, json.Unmarshal([]byte(strings.Replace(seedActivateBody, "c718fe5f-d44a-467f-80f1-948348ff4132", root, 1)), &body))
			act, err := c.IssueCertificateAuthorityCertificate(&ccmmodel.IssueCertificateAuthorityCertificateRequest{CaId: pending, Body: &body})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, act.HttpStatusCode)
			pendCert, _ := s.exportCA(pending)
			r = s.showCA(pending)
			checkCA(t, r, pending, "SUBORDINATE", "ACTIVED", "EC384", "SHA256", "GENERATE", pendDN, pendCert)
			assert.EqualValues(t, 3, *r.PathLength)
			assert.Equal(t, root, *r.IssuerId)
			assert.Equal(t, time.Duration(pcaYearDays)*24*time.Hour, pendCert.NotAfter.Sub(pendCert.NotBefore))

			// Another PENDING one, its CSR signed outside hsmca and imported.
			impDN := sdkDN("SDK Imported CA")
			created, err = c.CreateCertificateAuthority(&ccmmodel.CreateCertificateAuthorityRequest{
				Body: &ccmmodel.CreateCertificateAuthorityRequestBody{Type: "SUBORDINATE", DistinguishedName: impDN,
					KeyAlgorithm: "EC256"}})
			require.NoError(t, err)
			imported := *created.CaId
			csr, err = c.ExportCertificateAuthorityCsr(&ccmmodel.ExportCertificateAuthorityCsrRequest{CaId: imported})
			require.NoError(t, err)
			outside := newSoftCA(t)
			signed := outside.signCA(t, *csr.Csr, nil)
			imp, err := c.ImportCertificateAuthorityCertificate(&ccmmodel.ImportCertificateAuthorityCertificateRequest{
				CaId: imported, Body: &ccmmodel.ImportCertificateAuthorityCertificateRequestBody{
					Certificate: signed, CertificateChain: ptr(outside.pem())}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, imp.HttpStatusCode)
			impCert, impChain := s.exportCA(imported)
			assert.Equal(t, firstCert(t, signed).Raw, impCert.Raw)
			assert.Equal(t, outside.cert.Raw, firstCert(t, impChain).Raw)
			r = s.showCA(imported)
			checkCA(t, r, imported, "SUBORDINATE", "ACTIVED", "EC256", "SHA256", "IMPORT", impDN, impCert)
			// An issuer outside the tenant: no issuer_id.
			assert.Nil(t, r.IssuerId)
			// (One the tenant's root issued names it: at the end.)

			// List CAs: all four, filtered by type and status, paged.
			all, err := c.ListCertificateAuthority(&ccmmodel.ListCertificateAuthorityRequest{})
			require.NoError(t, err)
			require.NotNil(t, all.Total)
			assert.EqualValues(t, 4, *all.Total)
			require.NotNil(t, all.CertificateAuthorities)
			require.Len(t, *all.CertificateAuthorities, 4)
			byID := map[string]ccmmodel.CertificateAuthorities{}
			for _, ca := range *all.CertificateAuthorities {
				byID[ca.CaId] = ca
			}
			item, ok := byID[sub]
			require.True(t, ok)
			assert.Equal(t, "SUBORDINATE", item.Type)
			assert.Equal(t, "ACTIVED", item.Status)
			assert.EqualValues(t, 0, item.PathLength)
			assert.Equal(t, root, item.IssuerId)
			assert.Equal(t, "SDK Root CA", item.IssuerName)
			assert.Equal(t, "RSA2048", item.KeyAlgorithm)
			assert.Equal(t, "SHA384", item.SignatureAlgorithm)
			assert.Equal(t, "GENERATE", item.GenMode)
			assert.Equal(t, subCert.SerialNumber.Text(16), item.SerialNumber)
			assert.Equal(t, subCert.NotBefore.UnixMilli(), item.NotBefore)
			assert.Equal(t, subCert.NotAfter.UnixMilli(), item.NotAfter)
			assert.NotZero(t, item.CreateTime)
			assert.Zero(t, item.DeleteTime)
			require.NotNil(t, item.DistinguishedName)
			assert.Equal(t, *subDN, *item.DistinguishedName)
			require.NotNil(t, item.CrlConfiguration)
			require.NotNil(t, item.DomainId)
			assert.Equal(t, "acme", *item.DomainId)
			rootItem := byID[root]
			require.NotNil(t, rootItem.CrlConfiguration)
			assert.True(t, rootItem.CrlConfiguration.Enabled)
			assert.EqualValues(t, 7, rootItem.CrlConfiguration.ValidDays)

			roots, err := c.ListCertificateAuthority(&ccmmodel.ListCertificateAuthorityRequest{Type: ptr("ROOT")})
			require.NoError(t, err)
			assert.EqualValues(t, 1, *roots.Total)
			require.Len(t, *roots.CertificateAuthorities, 1)
			assert.Equal(t, root, (*roots.CertificateAuthorities)[0].CaId)
			page, err := c.ListCertificateAuthority(&ccmmodel.ListCertificateAuthorityRequest{Limit: ptr(int32(2)),
				Offset: ptr(int32(1)), SortKey: ptr("create_time"), SortDir: ptr("ASC")})
			require.NoError(t, err)
			assert.EqualValues(t, 4, *page.Total)
			require.Len(t, *page.CertificateAuthorities, 2)
			assert.Equal(t, sub, (*page.CertificateAuthorities)[0].CaId)
			named, err := c.ListCertificateAuthority(&ccmmodel.ListCertificateAuthorityRequest{Name: ptr("Imported")})
			require.NoError(t, err)
			assert.EqualValues(t, 1, *named.Total)

			// Issue by key generation under the subordinate, and show it.
			certDN := &ccmmodel.CertDistinguishedName{CommonName: "svc.example.com", Country: ptr("DE"),
				State: ptr("Berlin"), Locality: ptr("Berlin"), Organization: ptr("hsmca SDK"), OrganizationalUnit: ptr("Svc")}
			issued, err := c.CreateCertificate(&ccmmodel.CreateCertificateRequest{Body: &ccmmodel.CreateCertificateRequestBody{
				IssuerId: sub, KeyAlgorithm: ptr("EC256"), SignatureAlgorithm: ptr("SHA256"), DistinguishedName: certDN,
				Validity:                &ccmmodel.Validity{Type: "DAY", Value: 90},
				KeyUsages:               &[]string{"digitalSignature", "keyAgreement"},
				SubjectAlternativeNames: &[]ccmmodel.SubjectAlternativeName{{Type: "DNS", Value: "svc.example.com"}, {Type: "IP", Value: "10.0.0.7"}},
				ExtendedKeyUsage:        &ccmmodel.ExtendedKeyUsage{ServerAuth: ptr(true), ClientAuth: ptr(true)}}})
			require.NoError(t, err)
			require.NotNil(t, issued.CertificateId)
			leafID := *issued.CertificateId

			exp, err := c.ExportCertificate(&ccmmodel.ExportCertificateRequest{CertificateId: leafID,
				Body: &ccmmodel.ExportCertificateRequestBody{IsCompressed: "false", Type: "OTHER"}})
			require.NoError(t, err)
			require.NotNil(t, exp.Certificate)
			require.NotNil(t, exp.CertificateChain)
			require.NotNil(t, exp.PrivateKey, "a key made here is exported with its certificate")
			leafCert := firstCert(t, *exp.Certificate)
			// What was asked is what was issued.
			assert.Equal(t, []string{"svc.example.com"}, leafCert.DNSNames)
			require.Len(t, leafCert.IPAddresses, 1)
			assert.Equal(t, "10.0.0.7", leafCert.IPAddresses[0].String())
			assert.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyAgreement, leafCert.KeyUsage)
			assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leafCert.ExtKeyUsage)
			assert.Equal(t, []string{"Svc"}, leafCert.Subject.OrganizationalUnit)
			assert.Equal(t, subCert.Raw, firstCert(t, *exp.CertificateChain).Raw)
			assert.Contains(t, *exp.PrivateKey, "PRIVATE KEY-----")
			// No meaning in hsmca: the SM2 (Chinese national standard)
			// fields enc_certificate, enc_private_key,
			// enc_sm2_enveloped_key, signed_and_enveloped_data.
			assert.Nil(t, exp.EncCertificate)
			assert.Nil(t, exp.EncPrivateKey)
			exp, err = c.ExportCertificate(&ccmmodel.ExportCertificateRequest{CertificateId: leafID,
				Body: &ccmmodel.ExportCertificateRequestBody{IsCompressed: "false", Type: "NGINX", Password: ptr("s3cret-pass")}})
			require.NoError(t, err)
			require.NotNil(t, exp.PrivateKey)
			assert.Contains(t, *exp.PrivateKey, "ENCRYPTED PRIVATE KEY")

			checkCert := func(r *ccmmodel.ShowCertificateResponse, id, status, issuer, keyAlg, sigAlg, genMode, cn string, cert *x509.Certificate) {
				t.Helper()
				require.NotNil(t, r.CertificateId)
				assert.Equal(t, id, *r.CertificateId)
				require.NotNil(t, r.Status)
				assert.Equal(t, status, *r.Status)
				require.NotNil(t, r.IssuerId)
				assert.Equal(t, issuer, *r.IssuerId)
				require.NotNil(t, r.IssuerName)
				assert.Equal(t, "SDK Issuing CA", *r.IssuerName)
				require.NotNil(t, r.KeyAlgorithm)
				assert.Equal(t, keyAlg, *r.KeyAlgorithm)
				require.NotNil(t, r.SignatureAlgorithm)
				assert.Equal(t, sigAlg, *r.SignatureAlgorithm)
				require.NotNil(t, r.FreezeFlag)
				assert.EqualValues(t, 0, *r.FreezeFlag)
				require.NotNil(t, r.GenMode)
				assert.Equal(t, genMode, *r.GenMode)
				require.NotNil(t, r.SerialNumber)
				assert.Equal(t, cert.SerialNumber.Text(16), *r.SerialNumber)
				require.NotNil(t, r.CreateTime)
				assert.WithinDuration(t, time.Now(), time.UnixMilli(*r.CreateTime), time.Hour)
				assert.Nil(t, r.DeleteTime)
				require.NotNil(t, r.NotBefore)
				assert.Equal(t, cert.NotBefore.UnixMilli(), *r.NotBefore)
				require.NotNil(t, r.NotAfter)
				assert.Equal(t, cert.NotAfter.UnixMilli(), *r.NotAfter)
				require.NotNil(t, r.DistinguishedName)
				assert.Equal(t, cn, r.DistinguishedName.CommonName)
				// No meaning in hsmca: enc_cert_info (SM2 encryption
				// certificates), enterprise_project_id.
				assert.Nil(t, r.EncCertInfo)
			}
			shown := s.showCert(leafID)
			checkCert(shown, leafID, "ISSUED", sub, "EC256", "SHA256", "GENERATE", "svc.example.com", leafCert)
			assert.Equal(t, ccmmodel.DistinguishedName{CommonName: "svc.example.com", Country: "DE", State: "Berlin",
				Locality: "Berlin", Organization: "hsmca SDK", OrganizationalUnit: "Svc"}, *shown.DistinguishedName)

			// Issue from a CSR, after parsing it.
			rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
			require.NoError(t, err)
			csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "csr.example.com", Organization: []string{"CSR Org"}, Country: []string{"FR"}},
				DNSNames: []string{"csr.example.com"}, SignatureAlgorithm: x509.SHA256WithRSA}, rsaKey)
			require.NoError(t, err)
			csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))
			parsed, err := c.ParseCertificateSigningRequest(&ccmmodel.ParseCertificateSigningRequestRequest{
				Body: &ccmmodel.ParseCertificateSigningRequestRequestBody{Csr: csrPEM}})
			require.NoError(t, err)
			require.NotNil(t, parsed.KeyAlgorithm)
			assert.Equal(t, "RSA", *parsed.KeyAlgorithm)
			require.NotNil(t, parsed.KeyAlgorithmLength)
			assert.EqualValues(t, 2048, *parsed.KeyAlgorithmLength)
			// Huawei's model text gives "SHA256withRSA" as an example;
			// hsmca answers the hash name, as its CA and certificate
			// objects do ("SHA256"). Both are strings to the SDK.
			require.NotNil(t, parsed.SignatureAlgorithm)
			assert.Equal(t, "SHA256", *parsed.SignatureAlgorithm)
			require.NotNil(t, parsed.PublicKey)
			spki, err := x509.MarshalPKIXPublicKey(rsaKey.Public())
			require.NoError(t, err)
			assert.Equal(t, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})), *parsed.PublicKey)
			require.NotNil(t, parsed.DistinguishedName)
			assert.Equal(t, ccmmodel.DistinguishedName{CommonName: "csr.example.com", Organization: "CSR Org", Country: "FR"},
				*parsed.DistinguishedName)

			byCSR, err := c.CreateCertificateByCsr(&ccmmodel.CreateCertificateByCsrRequest{Body: &ccmmodel.CreateCertificateByCsrRequestBody{
				IssuerId: sub, Csr: csrPEM, Validity: &ccmmodel.Validity{Type: "MONTH", Value: 2},
				SubjectAlternativeNames: &[]ccmmodel.SubjectAlternativeName{{Type: "DNS", Value: "alt.example.com"}}}})
			require.NoError(t, err)
			require.NotNil(t, byCSR.CertificateId)
			csrID := *byCSR.CertificateId
			exp, err = c.ExportCertificate(&ccmmodel.ExportCertificateRequest{CertificateId: csrID,
				Body: &ccmmodel.ExportCertificateRequestBody{IsCompressed: "false", Type: "APACHE"}})
			require.NoError(t, err)
			assert.Nil(t, exp.PrivateKey, "the key of a CSR was never here")
			csrCert := firstCert(t, *exp.Certificate)
			assert.Equal(t, []string{"alt.example.com"}, csrCert.DNSNames, "the body's names replace the CSR's")
			checkCert(s.showCert(csrID), csrID, "ISSUED", sub, "RSA2048", "SHA256", "CSR", "csr.example.com", csrCert)

			// List certificates: both, newest first, filtered and paged.
			certs, err := c.ListCertificate(&ccmmodel.ListCertificateRequest{})
			require.NoError(t, err)
			require.NotNil(t, certs.Total)
			assert.EqualValues(t, 2, *certs.Total)
			require.NotNil(t, certs.Certificates)
			require.Len(t, *certs.Certificates, 2)
			var li ccmmodel.Certificates
			for _, ct := range *certs.Certificates {
				if ct.CertificateId == leafID {
					li = ct
				}
			}
			assert.Equal(t, leafID, li.CertificateId)
			assert.Equal(t, "ISSUED", li.Status)
			assert.Equal(t, sub, li.IssuerId)
			assert.Equal(t, "SDK Issuing CA", li.IssuerName)
			assert.Equal(t, "EC256", li.KeyAlgorithm)
			assert.Equal(t, "SHA256", li.SignatureAlgorithm)
			assert.Equal(t, "GENERATE", li.GenMode)
			assert.Equal(t, leafCert.SerialNumber.Text(16), li.SerialNumber)
			assert.NotZero(t, li.CreateTime)
			assert.Equal(t, leafCert.NotBefore.UnixMilli(), li.NotBefore)
			assert.Equal(t, leafCert.NotAfter.UnixMilli(), li.NotAfter)
			require.NotNil(t, li.DistinguishedName)
			assert.Equal(t, "svc.example.com", li.DistinguishedName.CommonName)
			one, err := c.ListCertificate(&ccmmodel.ListCertificateRequest{Limit: ptr(int32(1)), Name: ptr("csr.example"),
				Status: ptr("ISSUED"), SortKey: ptr("create_time"), SortDir: ptr("DESC")})
			require.NoError(t, err)
			assert.EqualValues(t, 1, *one.Total)
			require.Len(t, *one.Certificates, 1)
			assert.Equal(t, csrID, (*one.Certificates)[0].CertificateId)

			// Quotas: both routes.
			caQ, err := c.ShowCertificateAuthorityQuota(&ccmmodel.ShowCertificateAuthorityQuotaRequest{})
			require.NoError(t, err)
			certQ, err := c.ShowCertificateQuota(&ccmmodel.ShowCertificateQuotaRequest{})
			require.NoError(t, err)
			quota := func(q *ccmmodel.Quotas, typ string) *ccmmodel.Resources {
				t.Helper()
				require.NotNil(t, q)
				for i := range q.Resources {
					if q.Resources[i].Type == typ {
						return &q.Resources[i]
					}
				}
				t.Fatalf("no %s in %+v", typ, q.Resources)
				return nil
			}
			assert.EqualValues(t, 4, quota(caQ.Quotas, "CERTIFICATE_AUTHORITY").Used)
			assert.EqualValues(t, 100, quota(caQ.Quotas, "CERTIFICATE_AUTHORITY").Quota)
			assert.EqualValues(t, 2, quota(certQ.Quotas, "CERTIFICATE").Used)
			assert.EqualValues(t, 100000, quota(certQ.Quotas, "CERTIFICATE").Quota)
			// Each route reports its own resource only.
			assert.Len(t, caQ.Quotas.Resources, 1)
			assert.Len(t, certQ.Quotas.Resources, 1)

			// Revoke a certificate: REVOKED, on the issuer's CRL.
			rev, err := c.RevokeCertificate(&ccmmodel.RevokeCertificateRequest{CertificateId: leafID,
				Body: &ccmmodel.RevokeCertificateRequestBody{Reason: ptr("KEY_COMPROMISE")}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, rev.HttpStatusCode)
			checkCert(s.showCert(leafID), leafID, "REVOKED", sub, "EC256", "SHA256", "GENERATE", "svc.example.com", leafCert)

			// Delete a certificate: gone (the service's 400 PCA.10010002).
			del, err := c.DeleteCertificate(&ccmmodel.DeleteCertificateRequest{CertificateId: csrID})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, del.HttpStatusCode)
			status, code := sdkStatus(t, func() error {
				_, err := c.ShowCertificate(&ccmmodel.ShowCertificateRequest{CertificateId: csrID})
				return err
			}())
			assert.Equal(t, http.StatusBadRequest, status)
			assert.Equal(t, "PCA.10010002", code)
			certQ, err = c.ShowCertificateQuota(&ccmmodel.ShowCertificateQuotaRequest{})
			require.NoError(t, err)
			assert.EqualValues(t, 1, quota(certQ.Quotas, "CERTIFICATE").Used)

			// CRL off and on again (the SDK always sends obs_bucket_name).
			crlOff, err := c.DisableCertificateAuthorityCrl(&ccmmodel.DisableCertificateAuthorityCrlRequest{CaId: root})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, crlOff.HttpStatusCode)
			r = s.showCA(root)
			assert.False(t, r.CrlConfiguration.Enabled)
			crlOn, err := c.EnableCertificateAuthorityCrl(&ccmmodel.EnableCertificateAuthorityCrlRequest{CaId: sub,
				Body: &ccmmodel.EnableCertificateAuthorityCrlRequestBody{ValidDays: 10, CrlName: ptr("sdk-sub"), ObsBucketName: "sdk-bucket"}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, crlOn.HttpStatusCode)
			r = s.showCA(sub)
			assert.True(t, r.CrlConfiguration.Enabled)
			assert.EqualValues(t, 10, r.CrlConfiguration.ValidDays)
			assert.Equal(t, "sdk-sub", r.CrlConfiguration.CrlName)
			assert.Equal(t, "sdk-bucket", r.CrlConfiguration.ObsBucketName)
			assert.Equal(t, env.Server.URL+pcaCAs+"/"+sub+"/crl", r.CrlConfiguration.CrlDisPoint)
			crl := env.Do("GET", "/v1/private-certificate-authorities/"+sub+"/crl", "", nil)
			require.Equal(t, http.StatusOK, crl.Status)
			parsedCRL, err := x509.ParseRevocationList(crl.Body)
			require.NoError(t, err)
			// The revoked certificate, and the deleted one (revoked by its
			// deletion), are on their issuer's CRL.
			onCRL := map[string]int{}
			for _, e := range parsedCRL.RevokedCertificateEntries {
				onCRL[e.SerialNumber.Text(16)] = e.ReasonCode
			}
			assert.Equal(t, map[string]int{leafCert.SerialNumber.Text(16): 1, csrCert.SerialNumber.Text(16): 5}, onCRL)

			// Disable, enable; disable, delete (scheduled), restore.
			dis, err := c.DisableCertificateAuthority(&ccmmodel.DisableCertificateAuthorityRequest{CaId: pending})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, dis.HttpStatusCode)
			assert.Equal(t, "DISABLED", *s.showCA(pending).Status)
			en, err := c.EnableCertificateAuthority(&ccmmodel.EnableCertificateAuthorityRequest{CaId: pending})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, en.HttpStatusCode)
			assert.Equal(t, "ACTIVED", *s.showCA(pending).Status)
			_, err = c.DisableCertificateAuthority(&ccmmodel.DisableCertificateAuthorityRequest{CaId: pending})
			require.NoError(t, err)
			delCA, err := c.DeleteCertificateAuthority(&ccmmodel.DeleteCertificateAuthorityRequest{CaId: pending, PendingDays: "7"})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, delCA.HttpStatusCode)
			r = s.showCA(pending)
			assert.Equal(t, "DELETED", *r.Status)
			require.NotNil(t, r.DeleteTime)
			assert.WithinDuration(t, time.Now().Add(7*24*time.Hour), time.UnixMilli(*r.DeleteTime), time.Hour)
			res, err := c.RestoreCertificateAuthority(&ccmmodel.RestoreCertificateAuthorityRequest{CaId: pending})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, res.HttpStatusCode)
			r = s.showCA(pending)
			assert.Equal(t, "DISABLED", *r.Status)
			assert.Nil(t, r.DeleteTime)
			// Without pending_days the SDK sends an empty one: the default 7.
			_, err = c.DeleteCertificateAuthority(&ccmmodel.DeleteCertificateAuthorityRequest{CaId: pending})
			require.NoError(t, err)
			assert.Equal(t, "DELETED", *s.showCA(pending).Status)

			// Revoke an ACTIVED subordinate: REVOKED.
			revCA, err := c.RevokeCertificateAuthority(&ccmmodel.RevokeCertificateAuthorityRequest{CaId: sub,
				Body: &ccmmodel.RevokeCertificateRequestBody{Reason: ptr("SUPERSEDED")}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusNoContent, revCA.HttpStatusCode)
			assert.Equal(t, "REVOKED", *s.showCA(sub).Status)

			// The SDK's int32 start_from can only say a time in January
			// 1970: refused, naming the field, rather than misread.
			_, err = c.CreateCertificate(&ccmmodel.CreateCertificateRequest{Body: &ccmmodel.CreateCertificateRequestBody{
				IssuerId: root, DistinguishedName: &ccmmodel.CertDistinguishedName{CommonName: "late.example.com"},
				Validity: &ccmmodel.Validity{Type: "DAY", Value: 1, StartFrom: ptr(int32(math.MaxInt32))}}})
			status, _ = sdkStatus(t, err)
			assert.Equal(t, http.StatusBadRequest, status)
			var se *sdkerr.ServiceResponseError
			require.ErrorAs(t, err, &se)
			assert.Contains(t, se.ErrorMessage, "start_from")

			// A refusal decodes into the SDK's error with the family's code.
			status, code = sdkStatus(t, func() error {
				_, err := c.CreateCertificate(&ccmmodel.CreateCertificateRequest{Body: &ccmmodel.CreateCertificateRequestBody{
					IssuerId: sub, DistinguishedName: &ccmmodel.CertDistinguishedName{CommonName: "x.example.com"},
					Validity: &ccmmodel.Validity{Type: "DAY", Value: 1}}})
				return err
			}())
			assert.Equal(t, http.StatusBadRequest, status)
			assert.Equal(t, "PCA.00020301", code)

			// A PENDING CA whose CSR the tenant's root signed (by CSR, as
			// an INTERMEDIATE_CA) and which is imported without a chain:
			// the root is its issuer, and its chain.
			tenDN := sdkDN("SDK Tenant-Issued CA")
			created, err = c.CreateCertificateAuthority(&ccmmodel.CreateCertificateAuthorityRequest{
				Body: &ccmmodel.CreateCertificateAuthorityRequestBody{Type: "SUBORDINATE", DistinguishedName: tenDN,
					KeyAlgorithm: "EC256"}})
			require.NoError(t, err)
			tenantIssued := *created.CaId
			csr, err = c.ExportCertificateAuthorityCsr(&ccmmodel.ExportCertificateAuthorityCsrRequest{CaId: tenantIssued})
			require.NoError(t, err)
			byRoot, err := c.CreateCertificateByCsr(&ccmmodel.CreateCertificateByCsrRequest{Body: &ccmmodel.CreateCertificateByCsrRequestBody{
				IssuerId: root, Csr: *csr.Csr, Type: ptr("INTERMEDIATE_CA"), Validity: &ccmmodel.Validity{Type: "MONTH", Value: 6}}})
			require.NoError(t, err)
			exp, err = c.ExportCertificate(&ccmmodel.ExportCertificateRequest{CertificateId: *byRoot.CertificateId,
				Body: &ccmmodel.ExportCertificateRequestBody{IsCompressed: "false", Type: "OTHER"}})
			require.NoError(t, err)
			_, err = c.ImportCertificateAuthorityCertificate(&ccmmodel.ImportCertificateAuthorityCertificateRequest{
				CaId: tenantIssued, Body: &ccmmodel.ImportCertificateAuthorityCertificateRequestBody{Certificate: *exp.Certificate}})
			require.NoError(t, err)
			tenCert, tenChain := s.exportCA(tenantIssued)
			r = s.showCA(tenantIssued)
			checkCA(t, r, tenantIssued, "SUBORDINATE", "ACTIVED", "EC256", "SHA256", "IMPORT", tenDN, tenCert)
			require.NotNil(t, r.IssuerId)
			assert.Equal(t, root, *r.IssuerId)
			require.NotNil(t, r.IssuerName)
			assert.Equal(t, "SDK Root CA", *r.IssuerName)
			assert.Equal(t, rootCert.Raw, firstCert(t, tenChain).Raw)
			assert.NotContains(t, env.Logs.String(), sk)
		})
	}
}

// pcaYearDays is the family's year: 12 months of 31 days.
const pcaYearDays = 12 * 31
