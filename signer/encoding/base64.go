package encoding

import (
	"encoding/base64"
	"strings"
)

// alphabets are the base64 forms clients send: JOSE tooling the URL-safe
// alphabet without padding, everyone else the standard one, padded.
var alphabets = []*base64.Encoding{
	base64.StdEncoding.Strict(), base64.RawStdEncoding.Strict(),
	base64.URLEncoding.Strict(), base64.RawURLEncoding.Strict(),
}

// DecodeBase64 accepts standard and URL-safe base64, padded or not, with
// line breaks and spaces anywhere (wrapped DER, a value copied from a
// terminal). Strict decoding refuses non-zero padding bits, so one value
// has one encoding.
func DecodeBase64(s string) ([]byte, error) {
	compact := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	for _, enc := range alphabets {
		if b, err := enc.DecodeString(compact); err == nil {
			return b, nil
		}
	}
	return nil, refuse(Malformed, "is not base64")
}
