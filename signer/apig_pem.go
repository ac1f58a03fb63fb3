package signer

import (
	"bytes"
	"encoding/base64"
	"errors"
)

// pemBlock is one block of PEM text as readPEM finds it.
type pemBlock struct {
	Type string
	// Encrypted is set by an RFC 1421 "Proc-Type: 4,ENCRYPTED" header
	// (OpenSSL's legacy encrypted keys); the label does not show it.
	Encrypted bool
	Bytes     []byte
}

var (
	pemBegin = []byte("-----BEGIN ")
	pemDash  = []byte("-----")
)

// readPEM splits text into PEM blocks. It is more forgiving than
// encoding/pem because the public service's own example sends PEM wrapped
// in single quotes with literal "\n" escapes, and clients copy it: quotes
// around the whole text are dropped, literal "\n" and "\r" become line
// breaks, and a body on the marker lines or without any line breaks is
// accepted. Text outside blocks is ignored, as encoding/pem does.
//
// The text may be a private key: readPEM never makes a string of it, works
// on a copy that it clears, and the caller clears the Bytes of the blocks.
func readPEM(text []byte) ([]pemBlock, error) {
	buf := normalisePEM(text)
	defer clear(buf)
	var blocks []pemBlock
	rest := buf
	for {
		i := bytes.Index(rest, pemBegin)
		if i < 0 {
			break
		}
		rest = rest[i+len(pemBegin):]
		j := bytes.Index(rest, pemDash)
		if j < 0 {
			return blocks, errors.New("a BEGIN line is not closed by -----")
		}
		label := rest[:j]
		if len(label) == 0 || len(label) > 64 || bytes.ContainsAny(label, "\r\n-") {
			return blocks, errors.New("a BEGIN line has no valid label")
		}
		rest = rest[j+len(pemDash):]
		end := append(append([]byte("-----END "), label...), pemDash...)
		k := bytes.Index(rest, end)
		if k < 0 {
			return blocks, errors.New("a " + string(label) + " block has no END line")
		}
		b, err := decodePEMBody(rest[:k])
		if err != nil {
			return blocks, errors.New("the body of a " + string(label) + " block is not base64")
		}
		b.Type = string(label)
		blocks = append(blocks, b)
		rest = rest[k+len(end):]
	}
	return blocks, nil
}

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
func decodePEMBody(body []byte) (pemBlock, error) {
	var b pemBlock
	// Headers are "Name: value" lines up to the first blank line.
	if bytes.Contains(body, []byte("Proc-Type:")) || bytes.Contains(body, []byte("DEK-Info:")) {
		lines := bytes.Split(body, []byte("\n"))
		n := 0
		for n < len(lines) {
			l := bytes.TrimSpace(lines[n])
			if len(l) == 0 {
				if n > 0 {
					n++
					break
				}
				n++
				continue
			}
			colon := bytes.IndexByte(l, ':')
			if colon < 0 {
				break
			}
			name, value := bytes.TrimSpace(l[:colon]), bytes.TrimSpace(l[colon+1:])
			if string(name) == "Proc-Type" && bytes.Contains(value, []byte("ENCRYPTED")) {
				b.Encrypted = true
			}
			if string(name) == "DEK-Info" {
				b.Encrypted = true
			}
			n++
		}
		if b.Encrypted {
			// Nothing more is needed of an encrypted block: it is refused.
			return b, nil
		}
		body = bytes.Join(lines[n:], []byte("\n"))
		defer clear(body)
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

// clearBlocks zeroes the decoded bytes of every block.
func clearBlocks(blocks []pemBlock) {
	for i := range blocks {
		clear(blocks[i].Bytes)
	}
}
