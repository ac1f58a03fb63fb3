package pca

import (
	"fmt"
	"github.com/hsmca/hsmca/signer"
)

// CA statuses of the CCM PCA family. EXPIRED is never stored: an ACTIVED
// CA whose certificate has run out reads as EXPIRED (see caEffective).
const (
	CAPending  = "PENDING"
	CAActived  = "ACTIVED"
	CADisabled = "DISABLED"
	CAExpired  = "EXPIRED"
	CARevoked  = "REVOKED"
	CADeleted  = "DELETED"
)

// CAStatuses lists every status a CA can show.
var CAStatuses = []string{CAPending, CAActived, CADisabled, CAExpired, CARevoked, CADeleted}

// Private certificate statuses; EXPIRED is derived like a CA's.
const (
	CertIssued  = "ISSUED"
	CertExpired = "EXPIRED"
	CertRevoked = "REVOKED"
)

// CAOp is an operation whose permission depends on a CA's status.
type CAOp string

// The operations of the CA state machine.
const (
	CAOpActivate CAOp = "activate"   // sign a PENDING CA with one of the tenant's CAs
	CAOpImport   CAOp = "import"     // install an externally signed certificate
	CAOpCSR      CAOp = "export CSR" // the CSR of a CA waiting for its certificate
	CAOpDisable  CAOp = "disable"    // stop issuing
	CAOpEnable   CAOp = "enable"     // resume issuing
	CAOpDelete   CAOp = "delete"     // at once or scheduled, depending on status
	CAOpRestore  CAOp = "restore"    // cancel a scheduled deletion
	CAOpRevoke   CAOp = "revoke"     // a subordinate, by its issuer
	CAOpIssue    CAOp = "issue from" // sign certificates (leaves, subordinates)
	CAOpExport   CAOp = "export"     // the certificate and its chain
	CAOpCRL      CAOp = "configure the CRL of"
	CAOpSignCRL  CAOp = "sign a CRL with"
	CAOpPurge    CAOp = "purge" // the janitor's end of a scheduled deletion
	CAOpOCSPOn   CAOp = "switch on the OCSP of"
	CAOpOCSPOff  CAOp = "switch off the OCSP of"
)

// caGone is the target of transitions that remove the CA and its key.
const caGone = ""

// caTransitions is the whole CA state machine: for each operation, the
// statuses it is allowed from and the status it leads to (the same status
// for operations that change nothing, caGone for removal). Everything not
// listed is refused with an error that names the current status.
var caTransitions = map[CAOp]map[string]string{
	CAOpActivate: {CAPending: CAActived},
	CAOpImport:   {CAPending: CAActived},
	CAOpCSR:      {CAPending: CAPending},
	CAOpDisable:  {CAActived: CADisabled, CAExpired: CADisabled},
	CAOpEnable:   {CADisabled: CAActived},
	CAOpDelete: {
		CAPending: caGone, CARevoked: caGone, // nothing depends on them: at once
		CADisabled: CADeleted, CAExpired: CADeleted, // scheduled, restorable
	},
	CAOpRestore: {CADeleted: CADisabled},
	CAOpRevoke:  {CAActived: CARevoked},
	CAOpIssue:   {CAActived: CAActived},
	CAOpExport: {CAActived: CAActived, CADisabled: CADisabled, CAExpired: CAExpired,
		CARevoked: CARevoked},
	CAOpCRL: {CAPending: CAPending, CAActived: CAActived, CADisabled: CADisabled,
		CAExpired: CAExpired},
	// A CA that no longer issues still answers for what it issued.
	CAOpSignCRL: {CAActived: CAActived, CADisabled: CADisabled, CAExpired: CAExpired,
		CARevoked: CARevoked},
	CAOpPurge: {CADeleted: caGone},
	// As the public service asks: an ACTIVED or DISABLED CA. Off is also
	// allowed once the CA has expired or was revoked.
	CAOpOCSPOn:  {CAActived: CAActived, CADisabled: CADisabled},
	CAOpOCSPOff: {CAActived: CAActived, CADisabled: CADisabled, CAExpired: CAExpired, CARevoked: CARevoked},
}

// CATransition returns the status a CA in status from reaches through op,
// or a wrong-state error naming from.
func CATransition(op CAOp, from string) (string, error) {
	to, ok := caTransitions[op][from]
	if !ok {
		msg := fmt.Sprintf("cannot %s a CA in status %s", op, from)
		switch {
		case op == CAOpDelete && from == CAActived:
			msg += "; disable it first"
		case op == CAOpIssue || op == CAOpActivate && from != CAPending:
			msg += "; only " + allowedFrom(op) + " allows it"
		}
		return "", &signer.Error{Kind: signer.KindWrongState, Reason: ReasonCAState, Msg: msg}
	}
	return to, nil
}

func allowedFrom(op CAOp) string {
	s := ""
	for _, st := range CAStatuses {
		if _, ok := caTransitions[op][st]; ok {
			if s != "" {
				s += ", "
			}
			s += st
		}
	}
	return s
}

// CertOp is an operation on a private certificate.
type CertOp string

// Operations on private certificates whose permission depends on status.
const (
	CertOpRevoke CertOp = "revoke"
	CertOpExport CertOp = "export"
	CertOpDelete CertOp = "delete"
)

var certTransitions = map[CertOp]map[string]string{
	CertOpRevoke: {CertIssued: CertRevoked, CertExpired: CertRevoked},
	CertOpExport: {CertIssued: CertIssued, CertExpired: CertExpired, CertRevoked: CertRevoked},
	CertOpDelete: {CertIssued: caGone, CertExpired: caGone, CertRevoked: caGone},
}

// CertTransition is CATransition for private certificates.
func CertTransition(op CertOp, from string) (string, error) {
	to, ok := certTransitions[op][from]
	if !ok {
		return "", &signer.Error{Kind: signer.KindWrongState, Reason: ReasonCertState,
			Msg: fmt.Sprintf("cannot %s a certificate in status %s", op, from)}
	}
	return to, nil
}
