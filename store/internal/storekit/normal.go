package storekit

// normalForm says whether b is one JSON value already in the form
// encoding/json gives a json.RawMessage it marshals: no whitespace outside
// strings, and inside them none of the characters it escapes ('<', '>',
// '&', U+2028, U+2029). It is a strict subset check: anything it is unsure
// of (control characters, nesting deeper than normalDepth) answers false,
// and NormalizeJSON then asks encoding/json, which decides validity.
func normalForm(b []byte) bool {
	s := normalScan{b: b}
	return s.value(0) && s.i == len(b)
}

// normalDepth bounds the nesting normalForm follows; deeper documents
// take encoding/json's path (with its own limit).
const normalDepth = 64

type normalScan struct {
	b []byte
	i int
}

func (s *normalScan) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *normalScan) value(depth int) bool {
	switch c := s.peek(); {
	case c == '"':
		return s.str()
	case c == '{':
		return depth < normalDepth && s.container(depth+1, '}')
	case c == '[':
		return depth < normalDepth && s.container(depth+1, ']')
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	}
	return false
}

// container reads an object (close '}') or an array (close ']'), s.i at
// its opening bracket.
func (s *normalScan) container(depth int, close byte) bool {
	s.i++
	if s.peek() == close {
		s.i++
		return true
	}
	for {
		if close == '}' {
			if s.peek() != '"' || !s.str() || s.peek() != ':' {
				return false
			}
			s.i++
		}
		if !s.value(depth) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case close:
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *normalScan) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// str reads a string (s.i at its opening quote).
func (s *normalScan) str() bool {
	b := s.b
	i := s.i + 1
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return true
		case c == '\\':
			if i+1 >= len(b) {
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return false
				}
				i += 6
			default:
				return false
			}
		case c < 0x20, c == '<', c == '>', c == '&':
			return false
		case c == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && b[i+2]&^1 == 0xA8:
			return false // U+2028 or U+2029
		default:
			i++
		}
	}
	return false
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *normalScan) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more decimal digits.
func (s *normalScan) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}
