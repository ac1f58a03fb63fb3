package issuance

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// unsafeTextRune reports the characters no subject or name may hold:
// controls (C0, DEL, C1), format characters (the bidirectional overrides
// and isolates U+202A-202E and U+2066-2069, the marks U+200E/F, zero-width
// characters, the byte order mark, soft hyphen ...), line and paragraph
// separators, and the replacement character (text that was not UTF-8).
// They make a name display as something it is not.
func unsafeTextRune(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) || r == utf8.RuneError
}

// UnsafeText reports invalid UTF-8 or a character that makes text display
// as something it is not (controls, format and bidirectional characters,
// line and paragraph separators, the replacement character).
func UnsafeText(s string) bool {
	return !utf8.ValidString(s) || strings.IndexFunc(s, unsafeTextRune) >= 0
}

// UnsafeTextMsg is the refusal of a value with UnsafeText.
const UnsafeTextMsg = "must be printable text (no control, format or bidirectional characters)"
