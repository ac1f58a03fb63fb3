// Package ocsp is hsmca's OCSP responder (RFC 6960, with RFC 5019's
// lightweight profile), shared by the families whose CAs answer for what
// they issued (pca and dts). It sits between those families and the core:
// a family declares a Source (what it says of its CAs and of the status
// of a serial number) and calls its Publisher when a CA's OCSP is switched
// on or off, when it revokes a certificate and when it purges a CA; the
// Responder answers the public requests; the package's janitor re-signs
// stored answers before their nextUpdate and rotates delegated responder
// certificates. The core knows none of this: the package registers its
// record kinds, indexes and janitor as a signer.Family.
//
// Answers are signed ahead of need and stored (shared by replicas on
// Redis): a request without a nonce is answered from the store without an
// HSM signature. The first request about a certificate signs and stores
// its answer; a revocation re-signs the stored answer at once; the
// janitor re-signs stored answers when half their validity has passed. A
// request with a nonce gets an answer signed for it alone, echoing the
// nonce, within a per-client rate; so does a request about a serial number
// the CA never issued (unknown), which is never stored.
//
// Signing key: a delegated responder (ModeDelegated, the default) has its
// own key in the HSM and a short-lived certificate from the CA
// (id-kp-OCSPSigning, id-pkix-ocsp-nocheck), rotated well before it
// expires, so that no unauthenticated request ever makes the CA's key
// sign; ModeCA signs with the CA's key itself. The mode is recorded per
// CA when its OCSP is switched on.
package ocsp

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// Record kinds of the responder, all in the platform namespace (an OCSP
// request names no tenant).
const (
	// RecordIssuer is one CA whose OCSP was switched on at least once: its
	// family, tenant and id, found by the hashes of its public key (unique
	// keys), with the delegated responder's certificate and (KeyField)
	// key. Its id is "<family>.<ca id>".
	RecordIssuer = "ocsp_issuer"
	// RecordResponse is a stored answer about one serial number of one CA
	// by one CertID hash: "<family>.<ca id>.<hash>.<serial hex>".
	RecordResponse = "ocsp_response"
)

// Indexed fields.
const (
	fieldIssuer   = "issuer"    // response: "<family>.<ca id>"
	fieldDue      = "due"       // response: when to re-sign (fixed-width epoch ms)
	fieldRotateAt = "rotate_at" // issuer: when to rotate the responder (fixed-width epoch ms, or "-")
	fieldFamily   = "family"
	fieldTenant   = "tenant"
	fieldCA       = "ca"
	never         = "-"
)

// Timing of answers and responders.
const (
	// Validity is the span from an answer's thisUpdate to its nextUpdate.
	// It bounds how long a relying party or an HTTP cache may hold a
	// "good" after a revocation.
	Validity = 24 * time.Hour
	// refreshAfter is when a stored answer is re-signed: half its
	// validity, so that one failing janitor round never lets it lapse.
	refreshAfter = Validity / 2
	// ResponderValidity is the life of a delegated responder's
	// certificate; it is replaced once two thirds of it have passed (ten
	// days before it ends).
	ResponderValidity = 30 * 24 * time.Hour
	// responderBackdate covers clocks of relying parties slightly behind.
	responderBackdate = 5 * time.Minute
	// minResponderLife: a CA so close to its end that a responder
	// certificate would live less than this signs its answers itself.
	minResponderLife = 24 * time.Hour
)

// Mode says which key signs a CA's answers.
type Mode string

const (
	// ModeDelegated signs with a responder key of the CA's algorithm in
	// the HSM, certified by the CA for ResponderValidity (the default).
	ModeDelegated Mode = "delegated"
	// ModeCA signs with the CA's own key.
	ModeCA Mode = "ca"
)

// ParseMode reads a mode name; empty is ModeDelegated.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeDelegated:
		return ModeDelegated, nil
	case ModeCA:
		return ModeCA, nil
	}
	return "", fmt.Errorf("OCSP signer %q: want delegated or ca", s)
}

// Config is what a family's Publisher is told by the daemon.
type Config struct {
	// Mode applies to CAs whose OCSP is switched on (again) from now on;
	// empty is ModeDelegated.
	Mode Mode
}

// Status is what a family says of one serial number of one of its CAs.
type Status struct {
	State     int // issuance.OCSPGood, OCSPRevoked or OCSPUnknown
	RevokedAt time.Time
	Reason    int // RFC 5280 CRLReason
}

// Issuer is what a family says of one of its CAs.
type Issuer struct {
	Tenant, ID string
	// Enabled: the CA's OCSP is switched on.
	Enabled bool
	// Answering: the CA's state lets it answer for what it issued (the
	// states in which it signs CRLs).
	Answering bool
	// KeyID and KeyAlgorithm name the CA's key in the HSM; Hash is the
	// hash of its signatures (issuance.SHA256 ...).
	KeyID, KeyAlgorithm, Hash string
	Cert                      *x509.Certificate
}

// Source is what a family answers the responder.
type Source interface {
	// OCSPIssuer reads one of the family's CAs; a CA that does not exist
	// (any more) is a signer.KindNotFound error.
	OCSPIssuer(ctx context.Context, tenant, id string) (*Issuer, error)
	// OCSPStatus says what the CA says of serial: good for a certificate
	// it issued and did not revoke, revoked (when, why), unknown for any
	// other serial.
	OCSPStatus(ctx context.Context, tenant, id string, serial *big.Int) (Status, error)
}

// Path is where the responder answers under the daemon's public base URL:
// the OCSP URL certificates carry in their AuthorityInfoAccess while
// their issuer's OCSP is on (signer.Core.PublicURL(Path)).
const Path = "/ocsp"

// Family registers the responder's records with the core: its indexes
// and its janitor, which re-signs due answers and rotates responders of
// the families that publishers returns (built on the janitor's core).
func Family(publishers func(c *signer.Core) []*Publisher) signer.Family {
	return signer.Family{
		Name: "ocsp",
		Indexes: []store.Index{
			{Kind: RecordResponse, Field: fieldIssuer},
			{Kind: RecordResponse, Field: fieldDue},
			{Kind: RecordIssuer, Field: fieldRotateAt},
		},
		Janitors: []signer.Janitor{{Name: "refresh-ocsp", Run: func(ctx context.Context, c *signer.Core) (int, error) {
			return Refresh(ctx, c, publishers(c))
		}}},
	}
}

// msField encodes epoch milliseconds so that byte order is time order.
func msField(t time.Time) string { return fmt.Sprintf("%016d", t.UnixMilli()) }

func issuerRef(family, id string) string { return family + "." + id }

func responseID(family, id string, h issuance.OCSPHash, serial *big.Int) string {
	return issuerRef(family, id) + "." + h.Name + "." + serial.Text(16)
}

// keyUnique is the unique key of an issuer record by one hash of the CA's
// public key.
func keyUnique(h issuance.OCSPHash, keyHash []byte) string {
	return "key:" + h.Name + ":" + hex.EncodeToString(keyHash)
}

// issuerUniques are the unique keys of a CA's issuer record: its key
// hash by every CertID hash the responder answers for.
func issuerUniques(cert *x509.Certificate) ([]string, error) {
	out := make([]string, 0, len(issuance.OCSPHashes))
	for _, h := range issuance.OCSPHashes {
		kh, err := issuance.OCSPKeyHash(cert, h.Hash)
		if err != nil {
			return nil, err
		}
		out = append(out, keyUnique(h, kh))
	}
	return out, nil
}

// issuerData is the stored content of an issuer record.
type issuerData struct {
	Family string `json:"family"`
	Tenant string `json:"tenant"`
	CA     string `json:"ca"`
	Mode   Mode   `json:"mode"`
	// ResponderCert is the delegated responder's certificate (DER), nil
	// in ModeCA or before the first one; its key is the record's
	// KeyField.
	ResponderCert   []byte `json:"responder_cert,omitempty"`
	ResponderKeyAlg string `json:"responder_key_algorithm,omitempty"`
}

// stored is the content of a response record. DER empty marks an answer
// withdrawn (a revocation that could not re-sign it at once): it is
// never served, and the janitor signs it again.
type stored struct {
	DER        []byte `json:"der,omitempty"`
	Status     int    `json:"status"`
	ThisUpdate int64  `json:"this_update"`
	NextUpdate int64  `json:"next_update"`
	ProducedAt int64  `json:"produced_at"`
	Hash       string `json:"hash"`
	Serial     string `json:"serial"`
}

// errGone: the CA no longer exists or no longer answers.
var errGone = errors.New("the CA does not answer")
