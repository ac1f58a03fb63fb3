package pca

import (
	"errors"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
)

// Reasons of the family's refusals. api maps each to its CCM wire code
// (api/pca_errors.go); the kind of the error gives the HTTP status.
const (
	ReasonBadParameter  signer.Reason = "pca.bad_parameter"
	ReasonBadDN         signer.Reason = "pca.bad_dn"
	ReasonBadKeyAlg     signer.Reason = "pca.bad_key_algorithm"
	ReasonBadSigAlg     signer.Reason = "pca.bad_signature_algorithm"
	ReasonBadValidity   signer.Reason = "pca.bad_validity"
	ReasonBadIP         signer.Reason = "pca.bad_ip"
	ReasonBadSANType    signer.Reason = "pca.bad_san_type"
	ReasonBadCAID       signer.Reason = "pca.bad_ca_id"
	ReasonNotFound      signer.Reason = "pca.not_found"
	ReasonCAState       signer.Reason = "pca.ca_state"    // the CA's status forbids the operation
	ReasonCertState     signer.Reason = "pca.cert_state"  // the certificate's status forbids it
	ReasonCAQuota       signer.Reason = "pca.ca_quota"    // the tenant's CA quota is used up
	ReasonCertQuota     signer.Reason = "pca.cert_quota"  // the tenant's certificate quota is used up
	ReasonPathLength    signer.Reason = "pca.path_length" // the issuer allows no such path length
	ReasonBadCSR        signer.Reason = "pca.bad_csr"     // unreadable CSR, bad signature, weak key
	ReasonBadCert       signer.Reason = "pca.bad_cert"    // an imported certificate is refused
	ReasonCRLDisabled   signer.Reason = "pca.crl_disabled"
	ReasonCAType        signer.Reason = "pca.ca_type"        // the operation does not apply to this CA type
	ReasonBusy          signer.Reason = "pca.busy"           // too many concurrent changes of one CA; retry
	ReasonExportRefused signer.Reason = "pca.export_refused" // the requested export format is not offered
	ReasonNoCRLSign     signer.Reason = "pca.no_crl_sign"    // the CA certificate cannot sign CRLs
	// ReasonNameConstraint: a name of the certificate lies outside the
	// name constraints of its issuer or of a CA above it.
	ReasonNameConstraint signer.Reason = "pca.name_constraint"
)

// refused is a field error of the family with a reason.
func refused(r signer.Reason, field string, value any, msg string) *signer.Error {
	return signer.Refused(signer.KindInvalid, r, field, value, msg)
}

// notFound is the answer for an unknown id, or one of another tenant.
func notFound(what, id string) *signer.Error {
	return &signer.Error{Kind: signer.KindNotFound, Reason: ReasonNotFound, Msg: what + " " + signer.ShortID(id) + " does not exist"}
}

// issuanceReasons are the family's reasons for the issuance rules'.
var issuanceReasons = map[issuance.Reason]signer.Reason{
	issuance.BadValue:          ReasonBadParameter,
	issuance.BadName:           ReasonBadDN,
	issuance.BadKey:            ReasonBadKeyAlg,
	issuance.BadHash:           ReasonBadSigAlg,
	issuance.BadValidity:       ReasonBadValidity,
	issuance.BadIP:             ReasonBadIP,
	issuance.BadSANType:        ReasonBadSANType,
	issuance.BadCSR:            ReasonBadCSR,
	issuance.BadPathLength:     ReasonPathLength,
	issuance.BadNameConstraint: ReasonNameConstraint,
}

// checked is err of an issuance rule as the family's refusal; any other
// error (nil included) is returned as it is.
func checked(err error) error {
	var e *issuance.Error
	if !errors.As(err, &e) {
		return err
	}
	r, ok := issuanceReasons[e.Reason]
	if !ok {
		r = ReasonBadParameter
	}
	return refused(r, e.Field, e.Value, e.Msg)
}

// unreadable is a refusal of the encoding readers of field as the
// family's: r for what does not read (ReasonBadCSR, ReasonBadCert), a key
// hsmca does not take as ReasonBadKeyAlg. The value is never shown: it
// may be anything the client pasted.
func unreadable(field string, r signer.Reason, err error) error {
	var e *encoding.Error
	if !errors.As(err, &e) {
		return err
	}
	if e.Reason == encoding.UnsupportedKey {
		r = ReasonBadKeyAlg
	}
	return refused(r, field, nil, e.Msg)
}
