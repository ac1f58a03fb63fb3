package api

import (
	"bytes"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/hsmca/hsmca/store"
)

// The signing and verification routes read and write their bodies
// without reflection: a body in the usual form is read here, and
// anything else (escapes, other names or types, errors of any kind) goes
// to encoding/json exactly as before, so that what is accepted and every
// error are the same (FuzzSignBodyIsEncodingJSONs).

// decodeSignBody is decodeBody(c, req, true) for a sign or verify body.
func decodeSignBody(c *gin.Context, req *signRequest) error {
	b, err := io.ReadAll(c.Request.Body)
	if err == nil && parseSignRequest(b, req) {
		return nil
	}
	*req = signRequest{}
	return decodeJSON(replay(b, err), req, true)
}

// replay is a body read whole again for encoding/json: what it gave,
// then the error it ended with (a body over the limit), in the same
// order as from the body.
func replay(b []byte, err error) io.Reader {
	if err != nil {
		return io.MultiReader(bytes.NewReader(b), errReader{err})
	}
	return bytes.NewReader(b)
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// parseSignRequest reads b into r when it is one JSON object whose names
// are signRequest's exactly, with strings free of escapes or null as
// values, and nothing but whitespace around: what encoding/json would
// read from it (duplicate names: the last wins; null leaves a string as
// it was and a pointer nil). ok false: b is in any other form, r may be
// partly set.
func parseSignRequest(b []byte, r *signRequest) (ok bool) {
	i, ok := jsonObject(b, skipSpace(b, 0), func(name []byte, i int) (int, bool) {
		var (
			v     []byte
			isNil bool
			ok    bool
		)
		if bytes.HasPrefix(b[i:], []byte("null")) {
			isNil, i = true, i+4
		} else if v, i, ok = plainString(b, i); !ok {
			return i, false
		}
		switch string(name) {
		case "algorithm":
			if !isNil {
				r.Algorithm = string(v)
			}
		case "format":
			if !isNil {
				r.Format = string(v)
			}
		case "digest":
			r.Digest = stringPtr(v, isNil)
		case "message":
			r.Message = stringPtr(v, isNil)
		case "signature":
			r.Signature = stringPtr(v, isNil)
		default:
			return i, false
		}
		return i, true
	})
	return ok && skipSpace(b, i) == len(b)
}

func stringPtr(v []byte, isNil bool) *string {
	if isNil {
		return nil
	}
	s := string(v)
	return &s
}

// plainString reads a JSON string at b[i] that needs no decoding: no
// escape, no control character, valid UTF-8. It returns its content and
// where it ends.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, i, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, i, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, i, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// writeSignResponse answers a signature as c.JSON(200, resp) would,
// byte for byte, without reflection.
func writeSignResponse(c *gin.Context, resp *signResponse) {
	b := make([]byte, 0, 64+len(resp.Signature)+len(resp.KeyID))
	b = appendSignResponse(b, resp)
	c.Data(http.StatusOK, "application/json; charset=utf-8", b)
}

func appendSignResponse(b []byte, resp *signResponse) []byte {
	b = append(b, `{"algorithm":`...)
	b = store.AppendJSONString(b, resp.Algorithm)
	if resp.Format != "" {
		b = append(b, `,"format":`...)
		b = store.AppendJSONString(b, resp.Format)
	}
	b = append(b, `,"keyId":`...)
	b = store.AppendJSONString(b, resp.KeyID)
	b = append(b, `,"signature":`...)
	b = store.AppendJSONString(b, resp.Signature)
	return append(b, '}')
}
