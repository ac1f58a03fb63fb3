package api

import (
	"bytes"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/hsmca/hsmca/store"
)

// An issuance from a CSR reads its body without reflection when it is in
// the usual form (the issuer, the CSR, a validity; strings with the
// simple escapes a PEM in JSON has); anything else goes to encoding/json
// exactly as pcaBody reads it, so that what is accepted and every error
// are the same (FuzzPCAIssueCSRBodyIsEncodingJSONs).

// pcaIssueCSRBody is pcaBody(c, req, false) for an issuance from a CSR.
func pcaIssueCSRBody(c *gin.Context, req *pcaIssueCSRRequest) bool {
	b, err := io.ReadAll(c.Request.Body)
	if err == nil && parsePCAIssueCSR(b, req) {
		return true
	}
	*req = pcaIssueCSRRequest{}
	return pcaBodyAnswer(c, decodeJSON(replay(b, err), req, false), false)
}

// parsePCAIssueCSR reads b into r when it is one JSON object whose names
// are among issuer_id, csr, type, signature_algorithm (strings or null)
// and validity (an object of type, value and start_from, or null), with
// integers of at most 18 digits, strings free of \u escapes, control
// characters and invalid UTF-8, and nothing but whitespace around: what
// encoding/json would read from it (duplicate names: the last string
// wins, a second validity object is read into the first; null leaves a
// string or an integer as it was and makes validity nil). ok false: b is
// in any other form, r may be partly set.
func parsePCAIssueCSR(b []byte, r *pcaIssueCSRRequest) (ok bool) {
	var scratch []byte
	i, ok := jsonObject(b, skipSpace(b, 0), func(name []byte, i int) (int, bool) {
		var dst *string
		switch string(name) {
		case "issuer_id":
			dst = &r.IssuerID
		case "csr":
			dst = &r.CSR
		case "type":
			dst = &r.Type
		case "signature_algorithm":
			dst = &r.SignatureAlgorithm
		case "validity":
			if bytes.HasPrefix(b[i:], []byte("null")) {
				r.Validity = nil
				return i + 4, true
			}
			if r.Validity == nil {
				r.Validity = &pcaValidity{}
			}
			return parseValidity(b, i, r.Validity, &scratch)
		default:
			return i, false
		}
		return jsonStringInto(b, i, dst, &scratch)
	})
	return ok && skipSpace(b, i) == len(b)
}

func parseValidity(b []byte, i int, v *pcaValidity, scratch *[]byte) (int, bool) {
	return jsonObject(b, i, func(name []byte, i int) (int, bool) {
		switch string(name) {
		case "type":
			return jsonStringInto(b, i, &v.Type, scratch)
		case "value":
			return jsonInt64Into(b, i, &v.Value)
		case "start_from":
			return jsonInt64Into(b, i, &v.StartFrom)
		}
		return i, false
	})
}

// jsonObject reads the object at b[i], calling member with each name (an
// escape-free string) and where its value begins; member returns where
// the value ends. It returns where the object ends.
func jsonObject(b []byte, i int, member func(name []byte, i int) (int, bool)) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		name, j, ok := plainString(b, i)
		if !ok {
			return i, false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		if i, ok = member(name, skipSpace(b, i+1)); !ok {
			return i, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// jsonStringInto reads the string or null at b[i] into *dst (null leaves
// it as it was). Of the escapes it decodes all but \u.
func jsonStringInto(b []byte, i int, dst *string, scratch *[]byte) (int, bool) {
	if bytes.HasPrefix(b[i:], []byte("null")) {
		return i + 4, true
	}
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	out := (*scratch)[:0]
	ascii, escaped := true, false
	start := i + 1
	for j := start; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			raw := b[start:j]
			if !ascii && !utf8.Valid(raw) {
				return i, false
			}
			if escaped {
				*dst = string(out)
				*scratch = out
			} else {
				*dst = string(raw)
			}
			return j + 1, true
		case c == '\\':
			if j+1 >= len(b) {
				return i, false
			}
			var d byte
			switch b[j+1] {
			case '"', '\\', '/':
				d = b[j+1]
			case 'b':
				d = '\b'
			case 'f':
				d = '\f'
			case 'n':
				d = '\n'
			case 'r':
				d = '\r'
			case 't':
				d = '\t'
			default:
				return i, false
			}
			if !escaped {
				out = append(out, b[start:j]...)
				escaped = true
			}
			out = append(out, d)
			j++
		case c < 0x20:
			return i, false
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			if escaped {
				out = append(out, c)
			}
		}
	}
	return i, false
}

// jsonInt64Into reads the integer or null at b[i] into *dst (null leaves
// it as it was): an optional minus and at most 18 digits, no leading
// zero, no fraction or exponent.
func jsonInt64Into(b []byte, i int, dst *int64) (int, bool) {
	if bytes.HasPrefix(b[i:], []byte("null")) {
		return i + 4, true
	}
	j, neg := i, false
	if j < len(b) && b[j] == '-' {
		neg = true
		j++
	}
	d0 := j
	var n int64
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		n = n*10 + int64(b[j]-'0')
		j++
	}
	digits := j - d0
	if digits == 0 || digits > 18 || (digits > 1 && b[d0] == '0') {
		return i, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return i, false
	}
	if neg {
		n = -n
	}
	*dst = n
	return j, true
}

// writeCertificateID answers {"certificate_id": id} as c.JSON would,
// byte for byte, without reflection.
func writeCertificateID(c *gin.Context, id string) {
	b := make([]byte, 0, 24+len(id))
	b = append(b, `{"certificate_id":`...)
	b = store.AppendJSONString(b, id)
	c.Data(http.StatusOK, "application/json; charset=utf-8", append(b, '}'))
}
