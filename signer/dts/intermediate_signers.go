package dts

import (
	"context"
	"crypto/x509"
	"strings"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/store"
)

// VICAL signers under intermediate CA certificates (the 3-tier model):
// the create request names the intermediate (intermediateCaId, MATTR
// VII's name); the signer's certificate is then issued, or checked when
// uploaded, against the intermediate, which revokes it on its own CRL,
// and the signer's object carries the chain above its certificate
// (certificateChainPem: the intermediate's certificate, then the root's).
// A root created with useIntermediateCa issues signers only through its
// intermediates; a root without it has none.

// SignerInput is a create request of a VICAL signer: under root CAID
// (2-tier), or under intermediate IntermediateCAID, in which case CAID may
// be left out and, if given, must be that intermediate's root.
type SignerInput struct {
	CAID             *string
	IntermediateCAID *string
	BadFields        []signer.FieldError
}

// signerIssuer is the CA chain a new VICAL signer is created under.
type signerIssuer struct {
	root     *dtsRoot
	rootRec  *store.Record
	inter    *dtsIntermediate // nil: directly under the root
	interRec *store.Record
	// cert is the issuing CA's certificate when the daemon issues the
	// signer's certificate (a managed issuing CA, usable now), else nil.
	cert *x509.Certificate
}

func (i *signerIssuer) managed() bool {
	if i.inter != nil {
		return i.inter.Managed
	}
	return i.root.Managed
}

// keyID and keyAlgorithm name the issuing CA's HSM key.
func (i *signerIssuer) keyID() string {
	if i.inter != nil {
		return i.interRec.Fields[signer.KeyField]
	}
	return i.rootRec.Fields[signer.KeyField]
}

func (i *signerIssuer) keyAlgorithm() string {
	if i.inter != nil {
		return i.inter.KeyAlgorithm
	}
	return i.root.KeyAlgorithm
}

// validity is the issuing CA's.
func (i *signerIssuer) validity() (time.Time, time.Time) {
	if i.inter != nil {
		return i.inter.NotBefore, i.inter.NotAfter
	}
	return i.root.NotBefore, i.root.NotAfter
}

// subjectDefaults are the country and organisation of a signer's CSR:
// its issuing CA's.
func (i *signerIssuer) subjectDefaults() (country, org string) {
	if i.inter != nil {
		return i.inter.Country, i.inter.Organisation
	}
	return i.root.Country, i.root.Organisation
}

func (i *signerIssuer) intermediateID() string {
	if i.inter != nil {
		return i.inter.ID
	}
	return ""
}

// chain is the chain above a signer's certificate: nil under a root,
// else the intermediate's certificate and the root's.
func (i *signerIssuer) chain() [][]byte {
	if i.inter == nil {
		return nil
	}
	return [][]byte{i.inter.CertDER, i.root.CertDER}
}

// chainPEM is the PEM text of a chain, issuer first.
func chainPEM(chain [][]byte) string {
	var b strings.Builder
	for _, der := range chain {
		b.WriteString(encoding.EncodePEM("CERTIFICATE", der))
	}
	return b.String()
}

// signerIssuerFor checks a signer create request and resolves the CA
// chain it names; a managed issuing CA must be able to issue now.
func (s *Service) signerIssuerFor(ctx context.Context, tenant string, in SignerInput) (*signerIssuer, error) {
	f := signer.FieldErrors(in.BadFields)
	hasCA, hasInter := false, false
	switch {
	case hasField(in.BadFields, "caId"):
	case in.CAID == nil:
	case checkID("caId", *in.CAID, "body") != nil:
		f.Add("caId", *in.CAID, "must be a UUID")
	default:
		hasCA = true
	}
	switch {
	case hasField(in.BadFields, "intermediateCaId"):
	case in.IntermediateCAID == nil:
	case checkID("intermediateCaId", *in.IntermediateCAID, "body") != nil:
		f.Add("intermediateCaId", *in.IntermediateCAID, "must be a UUID")
	default:
		hasInter = true
	}
	if in.CAID == nil && in.IntermediateCAID == nil && !hasField(in.BadFields, "caId") && !hasField(in.BadFields, "intermediateCaId") {
		f.Add("caId", nil, "is required (or intermediateCaId)")
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	if hasInter {
		return s.intermediateIssuer(ctx, tenant, in, hasCA)
	}
	rootRec, root, err := s.getRoot(ctx, tenant, *in.CAID)
	if err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return nil, &signer.Error{Kind: signer.KindNotFound, Msg: "DTS root CA certificate " + *in.CAID + " not found",
				Fields: []signer.FieldError{{Field: "caId", Value: *in.CAID, Msg: "no such DTS root CA certificate", Location: "body"}}}
		}
		return nil, err
	}
	if root.UseIntermediateCA {
		return nil, signer.Invalid("intermediateCaId", nil,
			"is required: DTS root CA certificate "+root.ID+" issues VICAL signers through intermediate CA certificates (useIntermediateCa)")
	}
	iss := &signerIssuer{root: root, rootRec: rootRec}
	if root.Managed {
		if iss.cert, err = s.usableRoot(root); err != nil {
			return nil, err
		}
	}
	return iss, nil
}

func (s *Service) intermediateIssuer(ctx context.Context, tenant string, in SignerInput, hasCA bool) (*signerIssuer, error) {
	id := *in.IntermediateCAID
	interRec, inter, err := s.getIntermediate(ctx, tenant, "", id)
	if err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return nil, &signer.Error{Kind: signer.KindNotFound, Msg: "DTS intermediate CA certificate " + id + " not found",
				Fields: []signer.FieldError{{Field: "intermediateCaId", Value: id, Msg: "no such DTS intermediate CA certificate", Location: "body"}}}
		}
		return nil, err
	}
	if hasCA && *in.CAID != inter.CAID {
		return nil, signer.Invalid("caId", *in.CAID, "must be the DTS root CA certificate of intermediate CA certificate "+id+" ("+inter.CAID+")")
	}
	if !hasUsage(inter.Usages, UsageVICAL) {
		return nil, signer.Invalid("intermediateCaId", id, "the DTS intermediate CA certificate's usages do not include VICAL")
	}
	rootRec, root, err := s.getRoot(ctx, tenant, inter.CAID)
	if err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return nil, signer.E(signer.KindWrongState, "the DTS root CA certificate %s of intermediate CA certificate %s no longer exists", inter.CAID, id)
		}
		return nil, err
	}
	iss := &signerIssuer{root: root, rootRec: rootRec, inter: inter, interRec: interRec}
	if inter.Managed {
		if iss.cert, err = s.usableIntermediate(inter, root); err != nil {
			return nil, err
		}
	}
	return iss, nil
}

func hasUsage(usages []string, u string) bool {
	for _, x := range usages {
		if x == u {
			return true
		}
	}
	return false
}

// issuingCAOf is the CA a signer's certificate must be issued by (its
// intermediate, or its root) and the chain above the signer's
// certificate; a CA that no longer exists is a wrong state.
func (s *Service) issuingCAOf(ctx context.Context, tenant string, v *dtsSigner) (*x509.Certificate, [][]byte, string, error) {
	_, root, err := s.getRoot(ctx, tenant, v.CAID)
	if err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return nil, nil, "", signer.E(signer.KindWrongState, "the VICAL signer's DTS root CA certificate %s no longer exists", v.CAID)
		}
		return nil, nil, "", err
	}
	der, what := root.CertDER, "DTS root CA certificate"
	var chain [][]byte
	if v.IntermediateID != "" {
		_, inter, err := s.getIntermediate(ctx, tenant, "", v.IntermediateID)
		if err != nil {
			if signer.KindOf(err) == signer.KindNotFound {
				return nil, nil, "", signer.E(signer.KindWrongState, "the VICAL signer's DTS intermediate CA certificate %s no longer exists", v.IntermediateID)
			}
			return nil, nil, "", err
		}
		der, what = inter.CertDER, "DTS intermediate CA certificate"
		chain = [][]byte{inter.CertDER, root.CertDER}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, "", signer.StoreErr(err, what)
	}
	return c, chain, what, nil
}

// revocationCAOf is the CA whose CRL lists a signer's certificate once
// it is deleted (index kind and id), or "" when that CA no longer exists.
func (s *Service) revocationCAOf(ctx context.Context, tenant string, v *dtsSigner) (string, string, error) {
	kind, id := kindRootIndex, v.CAID
	var err error
	if v.IntermediateID != "" {
		kind, id = kindIntermediateIndex, v.IntermediateID
		_, _, err = s.getIntermediate(ctx, tenant, "", id)
	} else {
		_, _, err = s.getRoot(ctx, tenant, id)
	}
	switch {
	case err == nil:
		return kind, id, nil
	case signer.KindOf(err) == signer.KindNotFound:
		return "", "", nil
	}
	return "", "", err
}

// signCACRL re-signs the CRL of a root or an intermediate CA (by its
// index kind).
func (s *Service) signCACRL(ctx context.Context, tenant, indexKind, id string) (bool, error) {
	if indexKind == kindIntermediateIndex {
		return s.signIntermediateCRL(ctx, tenant, id, false)
	}
	return s.signRootCRL(ctx, tenant, id, false)
}

// signerIntermediateUsable checks, before a signer under an intermediate
// signs, that the intermediate still exists, is active and has not
// expired.
func (s *Service) signerIntermediateUsable(ctx context.Context, tenant string, v *dtsSigner) error {
	if v.IntermediateID == "" {
		return nil
	}
	_, m, err := s.getIntermediate(ctx, tenant, "", v.IntermediateID)
	if err != nil {
		if signer.KindOf(err) == signer.KindNotFound {
			return signer.E(signer.KindWrongState, "the DTS intermediate CA certificate %s of VICAL signer %s no longer exists", v.IntermediateID, v.ID)
		}
		return err
	}
	if !m.Active {
		return signer.E(signer.KindWrongState, "the DTS intermediate CA certificate %s of VICAL signer %s is not active", v.IntermediateID, v.ID)
	}
	if !s.core.Now().Before(m.NotAfter) {
		return signer.E(signer.KindWrongState, "the DTS intermediate CA certificate %s of VICAL signer %s has expired", v.IntermediateID, v.ID)
	}
	return nil
}
