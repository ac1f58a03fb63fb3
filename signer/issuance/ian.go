package issuance

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

var oidIssuerAltName = asn1.ObjectIdentifier{2, 5, 29, 18}

// GeneralName tags of RFC 5280 that an issuer alternative name may use.
const (
	tagRFC822Name = 1
	tagURI        = 6
)

// IssuerAltNameExtension encodes a configured issuer alternative name as
// GeneralNames with one entry: rfc822Name for an email address,
// uniformResourceIdentifier for an absolute URI. Empty gives no extension.
func IssuerAltNameExtension(v string) (*pkix.Extension, error) {
	if v == "" {
		return nil, nil
	}
	tag, err := issuerAltNameTag(v)
	if err != nil {
		return nil, err
	}
	gn := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: []byte(v)}
	der, err := asn1.Marshal([]asn1.RawValue{gn})
	if err != nil {
		return nil, err
	}
	return &pkix.Extension{Id: oidIssuerAltName, Value: der}, nil
}

// ValidIssuerAltName says whether v can be the configured issuer
// alternative name (an absolute URI or an email address, ASCII only as
// IA5String requires); empty is valid and means no extension.
func ValidIssuerAltName(v string) error {
	if v == "" {
		return nil
	}
	_, err := issuerAltNameTag(v)
	return err
}

func issuerAltNameTag(v string) (int, error) {
	for _, r := range v {
		if r < 0x21 || r > 0x7e {
			return 0, errors.New("issuer_alt_name must be printable ASCII without spaces")
		}
	}
	if strings.Contains(v, "://") || strings.HasPrefix(v, "urn:") {
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
			return 0, fmt.Errorf("issuer_alt_name %q is not an absolute URI", v)
		}
		return tagURI, nil
	}
	if a, err := mail.ParseAddress(v); err == nil && a.Address == v && a.Name == "" {
		return tagRFC822Name, nil
	}
	return 0, fmt.Errorf("issuer_alt_name %q is neither an absolute URI nor an email address", v)
}
