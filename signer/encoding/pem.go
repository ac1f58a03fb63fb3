package encoding

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
)

// Block is one block of PEM text as ReadPEM finds it.
type Block struct {
	Type string
	// Encrypted is set by an RFC 1421 "Proc-Type: 4,ENCRYPTED" or
	// "DEK-Info" header (OpenSSL's legacy encrypted keys); the label does
	// not show it. Bytes is then empty: nothing reads such a block.
	Encrypted bool
	Bytes     []byte
}

var (
	pemBegin = []byte("-----BEGIN ")
	pemDash  = []byte("-----")
)

// maxLabel bounds a block's label: real ones are short, and a long one is
// an input crafted to be echoed.
const maxLabel = 64

// ReadPEM splits text into PEM blocks. It is more forgiving than
// encoding/pem because clients paste PEM in the forms the public services'
// own examples show: quotes around the whole text are dropped, literal
// "\n" and "\r" become line breaks, and a body on the marker lines, folded
// into one line or without any line breaks is accepted. Text outside
// blocks is ignored, as encoding/pem does.
//
// The text may be a private key: ReadPEM never makes a string of it,
// works on a copy that it clears, and leaves text unchanged. The caller
// clears the Bytes of the blocks it does not keep (ClearBlocks).
func ReadPEM(text []byte) ([]Block, error) {
	buf := normalisePEM(text)
	defer clear(buf)
	var blocks []Block
	rest := buf
	for {
		i := bytes.Index(rest, pemBegin)
		if i < 0 {
			return blocks, nil
		}
		rest = rest[i+len(pemBegin):]
		j := bytes.Index(rest, pemDash)
		if j < 0 {
			return blocks, notPEM("a BEGIN line is not closed by -----")
		}
		label := rest[:j]
		if len(label) == 0 || len(label) > maxLabel || bytes.ContainsAny(label, "\r\n-") {
			return blocks, notPEM("a BEGIN line has no valid label")
		}
		rest = rest[j+len(pemDash):]
		end := append(append([]byte("-----END "), label...), pemDash...)
		k := bytes.Index(rest, end)
		if k < 0 {
			return blocks, notPEM("a " + string(label) + " block has no END line")
		}
		b, err := decodePEMBody(rest[:k])
		if err != nil {
			return blocks, notPEM("the body of a " + string(label) + " block is not base64")
		}
		b.Type = string(label)
		blocks = append(blocks, b)
		rest = rest[k+len(end):]
	}
}

func notPEM(why string) *Error { return refuse(Malformed, "is not PEM: "+why) }

// normalisePEM returns a copy of text without surrounding whitespace and
// single quotes and with literal "\n" and "\r" escapes turned into line
// breaks.
func normalisePEM(text []byte) []byte {
	t := bytes.TrimSpace(text)
	if len(t) >= 2 && t[0] == '\'' && t[len(t)-1] == '\'' {
		t = bytes.TrimSpace(t[1 : len(t)-1])
	}
	out := make([]byte, 0, len(t))
	for i := 0; i < len(t); i++ {
		if t[i] == '\\' && i+1 < len(t) && (t[i+1] == 'n' || t[i+1] == 'r') {
			out = append(out, '\n')
			i++
			continue
		}
		out = append(out, t[i])
	}
	return out
}

// decodePEMBody reads the RFC 1421 headers, if any, and the base64 body.
func decodePEMBody(body []byte) (Block, error) {
	var b Block
	if bytes.Contains(body, []byte("Proc-Type:")) || bytes.Contains(body, []byte("DEK-Info:")) {
		var n int
		n, b.Encrypted = readHeaders(body)
		if b.Encrypted {
			// Nothing more is needed of an encrypted block: it is refused.
			return b, nil
		}
		body = body[n:]
	}
	compact := make([]byte, 0, len(body))
	defer func() { clear(compact) }()
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		compact = append(compact, c)
	}
	der := make([]byte, base64.StdEncoding.DecodedLen(len(compact)))
	n, err := base64.StdEncoding.Decode(der, compact)
	if err != nil {
		clear(der)
		return b, err
	}
	b.Bytes = der[:n]
	return b, nil
}

// readHeaders reads the "Name: value" lines that open a body, up to the
// first blank line, and returns how many bytes they take and whether they
// mark the block encrypted.
func readHeaders(body []byte) (int, bool) {
	encrypted, off := false, 0
	for seen := false; off < len(body); {
		end := bytes.IndexByte(body[off:], '\n')
		next := len(body)
		if end >= 0 {
			next = off + end + 1
		}
		l := bytes.TrimSpace(body[off:next])
		if len(l) == 0 {
			off = next
			if seen {
				break
			}
			continue
		}
		colon := bytes.IndexByte(l, ':')
		if colon < 0 {
			break
		}
		seen = true
		name, value := string(bytes.TrimSpace(l[:colon])), bytes.TrimSpace(l[colon+1:])
		if name == "DEK-Info" || name == "Proc-Type" && bytes.Contains(value, []byte("ENCRYPTED")) {
			encrypted = true
		}
		off = next
	}
	return off, encrypted
}

// ClearBlocks zeroes the decoded bytes of every block.
func ClearBlocks(blocks []Block) {
	for i := range blocks {
		clear(blocks[i].Bytes)
	}
}

// EncodePEM is der as one PEM block of type typ.
func EncodePEM(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}
