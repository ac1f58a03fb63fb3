package store

import (
	"encoding/json"
	"unicode/utf8"
)

// AppendJSONString appends s as encoding/json writes it: quoted, with
// `"`, `\`, control characters, `<`, `>`, `&`, U+2028 and U+2029 escaped
// and invalid UTF-8 replaced. A string without any of those (the usual
// one: names, ids, hashes) is copied in one step.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil {
				break // cannot happen for a string
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
