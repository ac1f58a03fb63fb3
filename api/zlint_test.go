package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	stdx509 "crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/dts"
)

// zlint over everything the daemon signs. Each kind of certificate and
// CRL is made through the API as a client makes it, then linted with
// every lint of zlint's default registry (RFC 5280, CA/Browser Forum TLS
// and S/MIME requirements, Mozilla, Apple, ETSI, community). A Warn,
// Error or Fatal result fails the test unless lintAllowed lists it for
// that artifact, with the reason: the README's zlint table is this list.

// lintArtifact is one certificate or CRL to lint, with what the request
// that made it chose, which some allowances depend on.
type lintArtifact struct {
	kind string
	cert *zx509.Certificate
	crl  *zx509.RevocationList
	// by: who chose what an allowance blames.
	callerSubject bool // the subject (and SANs) are the caller's
	callerHash    bool // the request named a hash that does not fit the issuer's curve
	callerCRL     bool // the CRL's validity or reasons are the caller's configuration
}

// lintAllowance lets one lint's Warn or Error result through on the
// artifacts for which applies holds.
type lintAllowance struct {
	lint    string
	reason  string
	applies func(a *lintArtifact) bool
	// withURLs: the result appears only on certificates carrying the
	// URLs of a public base URL.
	withURLs bool
	// pendingAIA: the result goes away once the daemon writes CRL
	// distribution points and AuthorityInfoAccess into what it signs
	// (public_base_url set); it need not occur in every run.
	pendingAIA bool
}

func isPCALeaf(a *lintArtifact) bool { return strings.HasPrefix(a.kind, "PCA leaf") }

func hasExt(c *zx509.Certificate, oid []int) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}

var (
	oidCRLDP = []int{2, 5, 29, 31}
	oidAIA   = []int{1, 3, 6, 1, 5, 5, 7, 1, 1}
)

// lintAllowed is every e_/w_ result zlint may report on what hsmca signs,
// and why each is not the daemon's profile's fault. Keep README.md's
// zlint table in step.
var lintAllowed = []lintAllowance{
	// What the caller put in the subject or the SANs.
	{lint: "e_subj_orgunit_in_ca_cert", reason: "the CA subject's organizational_unit, which Huawei CCM requires in every CA's distinguished_name (the CA/B Forum TLS requirements forbid OU in CA certificates)",
		applies: func(a *lintArtifact) bool { return a.callerSubject && len(a.cert.Subject.OrganizationalUnit) > 0 }},
	{lint: "e_ca_country_name_missing", reason: "an intermediate CA issued from the caller's CSR, whose subject has no country",
		applies: func(a *lintArtifact) bool { return a.callerSubject && len(a.cert.Subject.Country) == 0 }},
	{lint: "e_ca_organization_name_missing", reason: "an intermediate CA issued from the caller's CSR, whose subject has no organization",
		applies: func(a *lintArtifact) bool { return a.callerSubject && len(a.cert.Subject.Organization) == 0 }},
	{lint: "w_subject_common_name_included", reason: "the caller's common_name in a TLS server certificate (Huawei CCM requires one; the CA/B Forum TLS requirements discourage it)",
		applies: func(a *lintArtifact) bool { return a.callerSubject && isPCALeaf(a) && a.cert.Subject.CommonName != "" }},

	// What the caller chose besides names: a hash that does not fit the
	// issuer's curve, a CRL validity or revocation reasons outside the
	// CA/B Forum's lists. Huawei CCM accepts them all.
	{lint: "e_mp_ecdsa_signature_encoding_correct", reason: "the caller's signature_algorithm does not fit the issuer's curve (e.g. SHA512 with P-256); without one the hash follows the curve",
		applies: func(a *lintArtifact) bool { return a.callerHash }},
	{lint: "e_crl_next_update_invalid", reason: "the CA's crl_configuration.valid_days (7 to 30) is over the CA/B Forum's 10 days for CRLs of end-entity certificates",
		applies: func(a *lintArtifact) bool {
			return a.callerCRL && a.crl.NextUpdate.Sub(a.crl.ThisUpdate) > 10*24*time.Hour
		}},
	{lint: "e_cab_crl_has_valid_reason_code", reason: "a revocation reason the caller chose that the CA/B Forum's TLS requirements do not list (CERTIFICATE_AUTHORITY_COMPROMISE, CERTIFICATE_HOLD, ATTRIBUTE_AUTHORITY_COMPROMISE); RFC 5280 allows them",
		applies: func(a *lintArtifact) bool { return a.callerCRL && a.crl != nil }},

	// Rules of public trust programs that a private CA must not claim to
	// follow: their reserved policy identifiers state a validation of
	// the subject that hsmca never performs.
	{lint: "e_sub_cert_certificate_policies_missing", reason: "the CA/B Forum TLS requirements' certificatePolicies with a reserved policy OID (2.23.140.1.2.*), a claim of publicly-trusted validation a private CA cannot make",
		applies: isPCALeaf},
	{lint: "e_sub_cert_cert_policy_empty", reason: "as e_sub_cert_certificate_policies_missing",
		applies: isPCALeaf},
	{lint: "e_exactly_one_smime_policy", reason: "the CA/B Forum S/MIME requirements' reserved policy OID (2.23.140.1.5.*), a claim of publicly-trusted validation a private CA cannot make; on certificates the caller asks email_protection for",
		applies: isPCALeaf},
	{lint: "w_ext_subject_key_identifier_not_recommended_subscriber", reason: "RFC 5280 4.2.1.2 says end-entity certificates SHOULD carry a subjectKeyIdentifier and CMS/S/MIME signers and recipients are found by it; the CA/B Forum TLS requirements discourage it. hsmca keeps RFC 5280's rule",
		applies: isPCALeaf},

	// ISO/IEC 18013-5, whose IACA profile the DTS roots follow.
	{lint: "w_root_ca_basic_constraints_path_len_constraint_field_present", reason: "ISO/IEC 18013-5's IACA profile (and the MATTR contract) gives a DTS root pathLenConstraint 0",
		applies: func(a *lintArtifact) bool { return a.kind == "DTS root" }},

	// Where to find revocation and the issuer: the CRL distribution point
	// and AuthorityInfoAccess extensions, written only when the daemon
	// has a public_base_url. Each holds only on a certificate without the
	// extension.
	{lint: "e_sub_ca_crl_distribution_points_missing", pendingAIA: true, reason: "no cRLDistributionPoints: public_base_url is not set",
		applies: func(a *lintArtifact) bool { return !hasExt(a.cert, oidCRLDP) }},
	{lint: "e_missing_crl_distrib_point", pendingAIA: true, reason: "no cRLDistributionPoints: public_base_url is not set",
		applies: func(a *lintArtifact) bool { return !hasExt(a.cert, oidCRLDP) }},
	{lint: "w_sub_ca_aia_missing", pendingAIA: true, reason: "no AuthorityInfoAccess: public_base_url is not set",
		applies: func(a *lintArtifact) bool { return !hasExt(a.cert, oidAIA) }},
	{lint: "e_sub_cert_aia_missing", pendingAIA: true, reason: "no AuthorityInfoAccess: public_base_url is not set",
		applies: func(a *lintArtifact) bool { return !hasExt(a.cert, oidAIA) }},
	{lint: "w_sub_cert_aia_does_not_contain_issuing_ca_url", pendingAIA: true, reason: "no AuthorityInfoAccess caIssuers: public_base_url is not set",
		applies: func(a *lintArtifact) bool { return len(a.cert.IssuingCertificateURL) == 0 }},
	// What the operator set as public_base_url: here the test daemon's
	// loopback address, an internal name to the CA/B Forum's lint.
	{lint: "w_sub_cert_aia_contains_internal_names", withURLs: true, reason: "public_base_url names an internal host (the test's 127.0.0.1); a deployment's own URL decides this",
		applies: func(a *lintArtifact) bool {
			return len(a.cert.IssuingCertificateURL) > 0 && strings.Contains(a.cert.IssuingCertificateURL[0], "://127.0.0.1")
		}},
}

// lintResult is one Warn, Error or Fatal result.
type lintResult struct {
	kind, lint string
	status     lint.LintStatus
	details    string
}

func (a *lintArtifact) results() []lintResult {
	var rs *zlint.ResultSet
	if a.crl != nil {
		rs = zlint.LintRevocationList(a.crl)
	} else {
		rs = zlint.LintCertificate(a.cert)
	}
	var out []lintResult
	for name, r := range rs.Results {
		if r.Status == lint.Warn || r.Status == lint.Error || r.Status == lint.Fatal {
			out = append(out, lintResult{kind: a.kind, lint: name, status: r.Status, details: r.Details})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lint < out[j].lint })
	return out
}

// lintRun makes the artifacts through one daemon.
type lintRun struct {
	t   *testing.T
	p   *pcaEnv
	dts *dtsFixture
	all []*lintArtifact
	// withURLs: the daemon has a public base URL, so what it signs
	// carries CRL distribution points and AIA.
	withURLs bool
}

func (l *lintRun) addCertPEM(kind, certPEM string, by lintArtifact) {
	l.t.Helper()
	b, _ := pem.Decode([]byte(certPEM))
	require.NotNil(l.t, b, "%s: %s", kind, certPEM)
	c, err := zx509.ParseCertificate(b.Bytes)
	require.NoError(l.t, err, kind)
	by.kind, by.cert = kind, c
	l.all = append(l.all, &by)
}

func (l *lintRun) addCRL(kind string, der []byte, by lintArtifact) {
	l.t.Helper()
	c, err := zx509.ParseRevocationList(der)
	require.NoError(l.t, err, kind)
	by.kind, by.crl = kind, c
	l.all = append(l.all, &by)
}

func (l *lintRun) pcaCA(kind, id string, by lintArtifact) {
	l.t.Helper()
	c, _ := l.p.exportCA(id)
	l.addCertPEM(kind, c, by)
}

func (l *lintRun) pcaCert(kind, id string, by lintArtifact) {
	l.t.Helper()
	m := l.p.ok(l.p.do("POST", pcaCerts+"/"+id+"/export", nil), http.StatusOK)
	l.addCertPEM(kind, m["certificate"].(string), by)
}

func (l *lintRun) pcaCRL(kind, ca string, by lintArtifact) {
	l.t.Helper()
	r := l.p.Do("GET", pcaCAs+"/"+ca+"/crl", "", nil)
	require.Equal(l.t, http.StatusOK, r.Status, "%s: %s", kind, r.Body)
	l.addCRL(kind, r.Body, by)
}

// addDTSIntermediate is the place of the DTS intermediate CA: once the
// family issues intermediates under a managed root, make one here through
// its route and add it, like the PCA subordinates:
//
//	l.addCertPEM("DTS intermediate", certificatePem, lintArtifact{})
//
// (a CA certificate signed by another CA: issuance.SubordinateCATemplate
// gives it the certificatePolicies zlint asks of one).
func (l *lintRun) addDTSIntermediate(rootID string) {}

func lintCSR(t *testing.T, subject pkix.Name, dns ...string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := stdx509.CreateCertificateRequest(rand.Reader, &stdx509.CertificateRequest{Subject: subject, DNSNames: dns}, k)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// TestZlintProfiles lints every kind twice: without a public base URL
// (no CRL distribution point or AIA: allowed, listed) and with one, where
// those extensions are present and nothing about them may be reported.
func TestZlintProfiles(t *testing.T) {
	t.Run("without public base URL", func(t *testing.T) { lintProfiles(t, "") })
	t.Run("with public base URL", func(t *testing.T) { lintProfiles(t, apitest.SelfURL) })
}

func lintProfiles(t *testing.T, base string) {
	// The profiles do not depend on the store: one backend is enough.
	p := newPCA(t, "bolt", apitest.Options{DTS: []dts.Option{dts.IssuerAltName(testIAN)}, PublicBaseURL: base})
	l := &lintRun{t: t, p: p, dts: &dtsFixture{t: t, env: p.Env, tok: p.NewToken("t1", signer.RoleDTSProvider)}, withURLs: base != ""}
	caller := lintArtifact{callerSubject: true}
	crlOn := func(days int) map[string]any {
		return map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": days}}
	}
	day30 := map[string]any{"type": "DAY", "value": 30}

	// PCA roots, one per key family, and their CRLs.
	root := p.createRoot("Lint Root EC256", crlOn(7))
	l.pcaCA("PCA root (EC256)", root, caller)
	rsaRoot := p.createRoot("Lint Root RSA", crlOn(7), map[string]any{"key_algorithm": "RSA2048"})
	l.pcaCA("PCA root (RSA2048)", rsaRoot, caller)
	p384Root := p.createRoot("Lint Root EC384", crlOn(7), map[string]any{"key_algorithm": "EC384", "signature_algorithm": "SHA384"})
	l.pcaCA("PCA root (EC384)", p384Root, caller)
	l.pcaCRL("PCA CRL, empty (EC256 root)", root, lintArtifact{})

	// Subordinates: signed at creation, activated later, from a CSR.
	sub := p.createSub("Lint Sub EC256", root, 0, crlOn(7))
	l.pcaCA("PCA subordinate (signed at creation)", sub, caller)
	pending := p.createPending("Lint Sub Activated", crlOn(7), map[string]any{"key_algorithm": "EC384"})
	p.ok(p.do("POST", pcaCAs+"/"+pending+"/activate", map[string]any{"issuer_id": p384Root,
		"signature_algorithm": "SHA384", "validity": pcaYears(1), "path_length": 0}), http.StatusNoContent)
	l.pcaCA("PCA subordinate (activated, EC384)", pending, caller)
	rsaSub := p.createSub("Lint Sub RSA", rsaRoot, 0, crlOn(7), map[string]any{"key_algorithm": "RSA2048"})
	l.pcaCA("PCA subordinate (RSA2048)", rsaSub, caller)
	m := p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": root, "type": "INTERMEDIATE_CA",
		"csr": lintCSR(t, pkix.Name{CommonName: "Lint Intermediate from CSR"}), "validity": day30}), http.StatusOK)
	l.pcaCert("PCA subordinate (from a CSR)", m["certificate_id"].(string), caller)

	// Leaves: a daemon-generated key (EC and RSA), from a CSR, every
	// extended key usage, and under a P-384 CA without a named hash.
	leaf := p.issueLeaf(sub, "gen.lint.example.com")
	l.pcaCert("PCA leaf (generated key)", leaf, caller)
	l.pcaCert("PCA leaf (generated RSA key)", p.issueLeaf(rsaSub, "rsa.lint.example.com",
		map[string]any{"key_algorithm": "RSA2048"}), caller)
	l.pcaCert("PCA leaf (generated key, P-384 issuer)", p.issueLeaf(pending, "p384.lint.example.com"), caller)
	m = p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": sub, "validity": day30,
		"csr": lintCSR(t, pkix.Name{CommonName: "csr.lint.example.com"}, "csr.lint.example.com")}), http.StatusOK)
	csrLeaf := m["certificate_id"].(string)
	l.pcaCert("PCA leaf (from a CSR)", csrLeaf, caller)
	m = p.ok(p.do("POST", pcaCerts+"/csr", map[string]any{"issuer_id": pending, "validity": day30,
		"csr": lintCSR(t, pkix.Name{CommonName: "csr384.lint.example.com"}, "csr384.lint.example.com")}), http.StatusOK)
	l.pcaCert("PCA leaf (from a CSR, P-384 issuer)", m["certificate_id"].(string), caller)
	for _, u := range []struct {
		name string
		body map[string]any
	}{
		{"client_auth", map[string]any{"extended_key_usage": map[string]any{"client_auth": true}}},
		{"code_signing", map[string]any{"extended_key_usage": map[string]any{"code_signing": true}}},
		{"time_stamping", map[string]any{"extended_key_usage": map[string]any{"time_stamping": true}}},
		{"email_protection", map[string]any{"extended_key_usage": map[string]any{"email_protection": true},
			"subject_alternative_names": []map[string]any{{"type": "EMAIL", "value": "someone@lint.example.com"}}}},
	} {
		l.pcaCert("PCA leaf ("+u.name+")", p.issueLeaf(sub, "eku.lint.example.com", u.body), caller)
	}
	// The caller's own hash, not the curve's: the one result a request
	// can cause beside names.
	mismatch := caller
	mismatch.callerHash = true
	l.pcaCert("PCA leaf (caller's SHA512 on P-256)", p.issueLeaf(sub, "hash.lint.example.com",
		map[string]any{"signature_algorithm": "SHA512"}), mismatch)

	// CRLs with entries: every reason on the subordinate's CRL; a P-384
	// CA; a CRL valid 30 days.
	reasons := []string{"", "UNSPECIFIED", "KEY_COMPROMISE", "AFFILIATION_CHANGED", "SUPERSEDED",
		"CESSATION_OF_OPERATION", "PRIVILEGE_WITHDRAWN"}
	for i, reason := range reasons {
		id := p.issueLeaf(sub, fmt.Sprintf("r%d.lint.example.com", i))
		p.ok(p.do("POST", pcaCerts+"/"+id+"/revoke", map[string]any{"reason": reason}), http.StatusNoContent)
	}
	l.pcaCRL("PCA CRL, the CA/B Forum's reasons", sub, lintArtifact{})
	other := p.createSub("Lint Sub Reasons", root, 0, crlOn(7))
	for i, reason := range []string{"CERTIFICATE_AUTHORITY_COMPROMISE", "CERTIFICATE_HOLD", "ATTRIBUTE_AUTHORITY_COMPROMISE"} {
		id := p.issueLeaf(other, fmt.Sprintf("o%d.lint.example.com", i))
		p.ok(p.do("POST", pcaCerts+"/"+id+"/revoke", map[string]any{"reason": reason}), http.StatusNoContent)
	}
	l.pcaCRL("PCA CRL, the caller's other reasons", other, lintArtifact{callerCRL: true})
	p.ok(p.do("POST", pcaCAs+"/"+other+"/revoke", map[string]any{"reason": "KEY_COMPROMISE"}), http.StatusNoContent)
	l.pcaCRL("PCA CRL listing a subordinate CA", root, lintArtifact{})
	l.pcaCRL("PCA CRL (EC384, activated)", pending, lintArtifact{})
	l.pcaCRL("PCA CRL (RSA2048)", rsaSub, lintArtifact{})
	// A CA whose own certificate the caller had signed with SHA512 on
	// P-256: its CRLs still take the curve's hash.
	sha512Root := p.createRoot("Lint Root SHA512", crlOn(7), map[string]any{"signature_algorithm": "SHA512"})
	l.pcaCA("PCA root (caller's SHA512 on P-256)", sha512Root, lintArtifact{callerSubject: true, callerHash: true})
	l.pcaCRL("PCA CRL (P-256 CA whose hash is SHA512)", sha512Root, lintArtifact{})
	long := p.createRoot("Lint Root Long CRL", crlOn(30))
	l.pcaCRL("PCA CRL valid 30 days", long, lintArtifact{callerCRL: true})

	// DTS: a managed root, a VICAL signer it issues, its CRL before and
	// after the signer's deletion.
	f := l.dts
	dtsRoot := f.root(map[string]any{"organisationName": "Lint Inc.", "country": "NZ"})
	dtsRootID := dtsRoot["id"].(string)
	l.addCertPEM("DTS root", dtsRoot["certificatePem"].(string), lintArtifact{})
	r := f.do("POST", signerPath, map[string]any{"caId": dtsRootID})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	vical := r.Map(t)
	l.addCertPEM("DTS VICAL signer", vical["certificatePem"].(string), lintArtifact{})
	crlOf := func() []byte {
		r := f.env.Do("GET", caPath+"/"+dtsRootID+"/revocation-list", "", nil)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		return r.Body
	}
	l.addCRL("DTS CRL, empty", crlOf(), lintArtifact{})
	require.Equal(t, http.StatusNoContent, f.do("DELETE", signerPath+"/"+vical["id"].(string), nil).Status)
	l.addCRL("DTS CRL, a deleted signer", crlOf(), lintArtifact{})

	l.addDTSIntermediate(dtsRootID)

	used := map[string]bool{}
	var table []string
	for _, a := range l.all {
		for _, res := range a.results() {
			i := slices.IndexFunc(lintAllowed, func(al lintAllowance) bool { return al.lint == res.lint && al.applies(a) })
			if i < 0 {
				assert.Failf(t, "zlint result hsmca's profile causes", "%s: %s %s: %s", a.kind, res.status, res.lint, res.details)
				continue
			}
			used[res.lint] = true
			table = append(table, fmt.Sprintf("%s: %s %s", a.kind, res.status, res.lint))
		}
	}
	for _, al := range lintAllowed {
		if !used[al.lint] && !al.pendingAIA && (l.withURLs || !al.withURLs) {
			t.Errorf("allowance %s was not needed: remove it (and its README row)", al.lint)
		}
	}
	t.Logf("%d artifacts linted; allowed results:\n%s", len(l.all), strings.Join(table, "\n"))
}
