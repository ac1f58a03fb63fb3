package admins

import (
	"crypto/x509"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
)

// Limits of the profile fields, in bytes.
const (
	maxUsernameLen    = 128
	maxNameLen        = 255
	maxEmailLen       = 254
	maxDescriptionLen = 1024
)

func checkText(f *signer.FieldErrors, field, v string, required bool, max int) {
	switch {
	case strings.TrimSpace(v) == "":
		if required || v != "" {
			f.Add(field, v, "must not be empty")
		}
	case len(v) > max:
		f.Add(field, nil, "must be at most "+strconv.Itoa(max)+" bytes")
	case issuance.HasControl(v):
		f.Add(field, nil, "must not contain control characters")
	}
}

func checkUsername(f *signer.FieldErrors, v string) {
	switch {
	case v == "":
		f.Add("username", v, "must not be empty")
	case len(v) > maxUsernameLen:
		f.Add("username", nil, "must be at most "+strconv.Itoa(maxUsernameLen)+" bytes")
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		f.Add("username", v, "must not contain spaces or control characters")
	}
}

func checkEmail(f *signer.FieldErrors, v string, required bool) {
	if v == "" {
		if required {
			f.Add("email", v, "must not be empty")
		}
		return
	}
	a, err := mail.ParseAddress(v)
	if len(v) > maxEmailLen || err != nil || a.Name != "" || a.Address != v || !strings.Contains(a.Address[strings.LastIndexByte(a.Address, '@')+1:], ".") {
		f.Add("email", v, "must be a valid email address")
	}
}

func checkRole(f *signer.FieldErrors, v string) {
	if !slices.Contains(signer.PlatformRoles, v) {
		if v == "" {
			f.Add("role", v, "must not be empty; want administrator or superAdministrator")
			return
		}
		f.Add("role", v, "must be administrator or superAdministrator")
	}
}

// checkCertificate validates the certificate fields and returns the parsed
// certificate, or an error of kind not found for a certificateUuid.
func (s *Service) checkCertificate(f *signer.FieldErrors, b64, certUUID string, required bool) (*x509.Certificate, error) {
	switch {
	case b64 != "" && certUUID != "":
		f.Add("adminCertificate", nil, "give either adminCertificate or certificateUuid, not both")
	case certUUID != "":
		// Reported after the other fields validate: a 404 for the reference.
		return nil, &signer.Error{Kind: signer.KindNotFound, Msg: "Certificate " + signer.ShortID(certUUID) + " not found"}
	case b64 == "":
		if required {
			f.Add("adminCertificate", nil, "adminCertificate or certificateUuid is required")
		}
	default:
		c, err := ParseCertificate(b64)
		if err != nil {
			f.Add("adminCertificate", nil, err.Error())
			return nil, nil
		}
		if s.core.Now().After(c.NotAfter) {
			f.Add("adminCertificate", nil, "the certificate expired on "+c.NotAfter.UTC().Format(time.RFC3339))
			return nil, nil
		}
		return c, nil
	}
	return nil, nil
}
