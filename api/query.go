package api

import (
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
	pcasvc "github.com/hsmca/hsmca/signer/pca"
)

// Query parameters. Every parameter a handler reads goes through one of
// the readers below, which bound it before the engine sees it: a length
// (in characters), a character class, and for numbers a range. A value
// out of bounds answers 400 in the route's family envelope, before any
// store read, and is not echoed back when it is long or not plain text.
// Parameters a route does not know are ignored, as the public services
// do; a known one given twice is refused rather than silently read once;
// the whole query string is bounded by maxQueryBytes.

// maxQueryBytes bounds a request's raw query string. The longest query a
// route reads (APIG's list: six filters at their bounds, percent-encoded)
// is well under it.
const maxQueryBytes = 2048

// maxEchoed is the longest value an error answer shows.
const maxEchoed = 64

// charClass is what characters a parameter may hold.
type charClass int

const (
	// textChars: printable UTF-8 text (a name or common-name filter): no
	// control characters and no format characters (bidi overrides,
	// zero-width characters).
	textChars charClass = iota
	// wordChars: ASCII letters, digits, '_' and '-' (enumerations, ids,
	// opaque cursors).
	wordChars
	// timeChars: an RFC 3339 time: ASCII letters, digits, ':', '.', '+', '-'.
	timeChars
	// operationChars: an event operation name or prefix: ASCII letters,
	// digits, '_', '*' and space.
	operationChars
)

func (k charClass) allows(r rune) bool {
	isWord := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
	switch k {
	case textChars:
		return r != utf8.RuneError && !unicode.IsControl(r) && !unicode.Is(unicode.Cf, r)
	case wordChars:
		return isWord || r == '_' || r == '-'
	case timeChars:
		return isWord || r == ':' || r == '.' || r == '+' || r == '-'
	case operationChars:
		return isWord || r == '_' || r == '*' || r == ' '
	}
	return false
}

func (k charClass) describe() string {
	switch k {
	case textChars:
		return "printable text"
	case wordChars:
		return "letters, digits, '_' and '-'"
	case timeChars:
		return "an RFC 3339 time"
	case operationChars:
		return "letters, digits, '_' and '*'"
	}
	return "valid"
}

// param is one query parameter's bounds.
type param struct {
	name  string
	max   int // characters
	class charClass
}

// Bounds shared by several routes.
var (
	pcaNameParam    = param{"name", 64, textChars} // CCM: name is 1-64 characters
	pcaStatusParam  = param{"status", 16, wordChars}
	pcaTypeParam    = param{"type", 16, wordChars}
	pcaSortKeyParam = param{"sort_key", 32, wordChars}
	pcaSortDirParam = param{"sort_dir", 8, wordChars}
	// Cursors of the native and DTS lists are short base64url or decimal
	// strings.
	cursorParam = param{"cursor", 128, wordChars}
)

// maxNumberChars bounds a numeric parameter: the digits of a signed
// 64-bit integer and its sign.
const maxNumberChars = 20

// badQuery is the engine's invalid-field error for a query parameter,
// with the code family f answers a bad parameter with.
func badQuery(f Family, name string, value any, msg string) error {
	e := signer.Invalid(name, value, msg)
	e.Fields[0].Location = "query"
	switch f.Name {
	case pca.Name:
		e.Reason = pcasvc.ReasonBadParameter
	}
	return e
}

// shown is v as an error answer may echo it: nil when it is long or not
// plain text.
func shown(v string) any {
	if len(v) > maxEchoed || !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool { return !textChars.allows(r) }) >= 0 {
		return nil
	}
	return v
}

// queryParam reads p: "" when absent or empty. ok is false when the
// value broke p's bounds; family f's 400 is then written.
func queryParam(c *gin.Context, f Family, p param) (v string, ok bool) {
	if v, ok = queryOnce(c, f, p.name); !ok || v == "" {
		return v, ok
	}
	// A rune is at most 4 bytes: a longer value is refused before it is
	// counted.
	if len(v) > 4*p.max || utf8.RuneCountInString(v) > p.max {
		f.WriteErr(c, badQuery(f, p.name, nil, "must be at most "+strconv.Itoa(p.max)+" characters"))
		return "", false
	}
	if !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool { return !p.class.allows(r) }) >= 0 {
		f.WriteErr(c, badQuery(f, p.name, shown(v), "must be "+p.class.describe()))
		return "", false
	}
	return v, true
}

// queryOnce reads a parameter given at most once.
func queryOnce(c *gin.Context, f Family, name string) (string, bool) {
	vs := c.QueryArray(name)
	switch len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	}
	f.WriteErr(c, badQuery(f, name, nil, "must be given at most once"))
	return "", false
}

// queryParams reads several parameters; ok is false at the first that
// broke its bounds.
func queryParams(c *gin.Context, f Family, ps ...param) (map[string]string, bool) {
	out := make(map[string]string, len(ps))
	for _, p := range ps {
		v, ok := queryParam(c, f, p)
		if !ok {
			return nil, false
		}
		out[p.name] = v
	}
	return out, true
}

// queryInt reads an integer parameter: def when absent or empty; a value
// that is not an integer in lo..hi answers 400 with msg.
func queryInt(c *gin.Context, f Family, name string, def, lo, hi int, msg string) (int, bool) {
	v, ok := queryOnce(c, f, name)
	if !ok {
		return 0, false
	}
	if v == "" {
		return def, true
	}
	if len(v) > maxNumberChars {
		f.WriteErr(c, badQuery(f, name, nil, msg))
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		f.WriteErr(c, badQuery(f, name, shown(v), msg))
		return 0, false
	}
	return n, true
}

// admitQuery refuses a query string over maxQueryBytes with 400 in family
// f's envelope (the Huawei families' bad-parameter code), before the
// route's handler or authentication reads anything. 400 rather than 414:
// it is the answer every client of the families already handles for a
// bad parameter.
func admitQuery(c *gin.Context, f Family) bool {
	if len(c.Request.URL.RawQuery) <= maxQueryBytes {
		return true
	}
	writeStatus(c, f, http.StatusBadRequest, "BadRequest",
		"the query string exceeds "+strconv.Itoa(maxQueryBytes)+" bytes")
	return false
}
