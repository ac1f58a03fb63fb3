package storekit

import (
	"unicode"
	"unicode/utf8"
)

// ContainsFold reports whether strings.ToLower(needle) is a substring of
// strings.ToLower(v), without building either lower-cased string: a
// Contains filter is checked on every index key of a range, and lowering
// each key (and the needle again for each key) made a list cost its
// input's length times the keys it walks.
//
// Both sides are compared rune by rune through unicode.ToLower, the
// mapping strings.ToLower applies; a byte that is not valid UTF-8 reads as
// U+FFFD, as strings.ToLower writes it. unicode.ToLower is idempotent, so
// a needle already lower-cased gives the same answer.
func ContainsFold(v, needle string) bool {
	if needle == "" {
		return true
	}
	for i := 0; i < len(v); {
		if hasPrefixFold(v[i:], needle) {
			return true
		}
		_, w := lowerAt(v, i)
		i += w
	}
	return false
}

// hasPrefixFold reports whether s starts with needle, both lower-cased.
func hasPrefixFold(s, needle string) bool {
	i := 0
	for j := 0; j < len(needle); {
		if i >= len(s) {
			return false
		}
		rs, ws := lowerAt(s, i)
		rn, wn := lowerAt(needle, j)
		if rs != rn {
			return false
		}
		i, j = i+ws, j+wn
	}
	return true
}

// lowerAt is the lower-cased rune of s at byte i and its width in s.
func lowerAt(s string, i int) (rune, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		return rune(c), 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return unicode.ToLower(r), w
}
