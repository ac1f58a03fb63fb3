package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const issueCSRPEM = "-----BEGIN CERTIFICATE REQUEST-----\nMIHKMHICAQAwEDEOMAwGA1UEAwwFYmVuY2gwWTATBgcqhkjOPQIBBggqhkjOPQMB\nBwNCAAQ=\n-----END CERTIFICATE REQUEST-----\n"

var pcaIssueCSRSeeds = func() []string {
	csr, _ := json.Marshal(issueCSRPEM)
	return []string{
		`{"issuer_id":"01a241ae-f836-75da-9d3f-8dbf120ce80f","csr":` + string(csr) + `,"validity":{"type":"DAY","value":30}}`,
		` { "csr" : "a\/b\"c\\d\b\f\r\t" , "type" : "ENTITY_CERT", "signature_algorithm": "SHA256",
		   "validity" : { "type":"YEAR", "value": -0, "start_from": 1798913610000 } } ` + "\n",
		`{"validity":{"type":"DAY"},"validity":{"value":3},"csr":"x","csr":null,"issuer_id":null}`,
		`{"validity":{"value":3},"validity":null}`, `{}`, `{"validity":{}}`,
		``, `null`, `[]`, `{"csr":"x"}{}`, `{"csr":"x"} y`, `{"CSR":"x"}`, `{"csr":"\u0041"}`, `{"csr":"x",}`,
		`{"colour":"red"}`, `{"csr":5}`, `{"csr":"\xff"}`, `{"csr":"é\n"}`, `{"csr":"a` + "\t" + `"}`, `{"csr":nullx}`,
		`{"csr":"x"`, `{"csr" "x"}`, `{"csr":"x\`, `{"validity":{"value":1.5}}`, `{"validity":{"value":1e3}}`,
		`{"validity":{"value":007}}`, `{"validity":{"value":9999999999999999999}}`, `{"validity":{"value":"30"}}`,
		`{"validity":{"value":-}}`, `{"validity":{"value":+5}}`, `{"validity":{"value":30x}}`, `{"validity":[]}`,
		`{"path_length":1}`, `{"key_usages":["digitalSignature"]}`, `{"validity":{"type":"DAY","unit":1}}`,
	}
}()

// pcaIssueCSRByJSON is what pcaBody reads from b.
func pcaIssueCSRByJSON(b []byte) (pcaIssueCSRRequest, error) {
	var r pcaIssueCSRRequest
	err := decodeJSON(bytes.NewReader(b), &r, false)
	return r, err
}

// Whatever the fast path reads is what encoding/json reads, and it reads
// nothing encoding/json refuses.
func FuzzPCAIssueCSRBodyIsEncodingJSONs(f *testing.F) {
	for _, s := range pcaIssueCSRSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got pcaIssueCSRRequest
		if !parsePCAIssueCSR(b, &got) {
			return
		}
		want, err := pcaIssueCSRByJSON(b)
		require.NoError(t, err, "the fast path read a body encoding/json refuses: %q", b)
		assert.Equal(t, want, got, "%q", b)
	})
}

// The usual bodies take the fast path; every seed gets through
// pcaIssueCSRBody what pcaBody gave it, the answer to an error included.
func TestPCAIssueCSRBodyTakesTheFastPathAndKeepsJSONsAnswers(t *testing.T) {
	for _, s := range pcaIssueCSRSeeds[:6] {
		var r pcaIssueCSRRequest
		assert.True(t, parsePCAIssueCSR([]byte(s), &r), s)
	}
	var r pcaIssueCSRRequest
	require.True(t, parsePCAIssueCSR([]byte(pcaIssueCSRSeeds[0]), &r))
	assert.Equal(t, issueCSRPEM, r.CSR)
	assert.Equal(t, &pcaValidity{Type: "DAY", Value: 30}, r.Validity)

	gin.SetMode(gin.TestMode)
	read := func(s string, fast bool) (pcaIssueCSRRequest, bool, *httptest.ResponseRecorder) {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		c.Request = httptest.NewRequest("POST", "/", strings.NewReader(s))
		var req pcaIssueCSRRequest
		var ok bool
		if fast {
			ok = pcaIssueCSRBody(c, &req)
		} else {
			ok = pcaBody(c, &req, false)
		}
		return req, ok, w
	}
	for _, s := range pcaIssueCSRSeeds {
		got, gotOK, gw := read(s, true)
		want, wantOK, ww := read(s, false)
		assert.Equal(t, wantOK, gotOK, s)
		assert.Equal(t, ww.Code, gw.Code, s)
		assert.Equal(t, ww.Body.String(), gw.Body.String(), s)
		if wantOK {
			assert.Equal(t, want, got, s)
		}
	}

	// A body over the limit: the same 413 as before.
	for _, fast := range []bool{true, false} {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		c.Request = httptest.NewRequest("POST", "/", strings.NewReader(`{"csr":"`+strings.Repeat("A", 100)+`"}`))
		c.Request.Body = http.MaxBytesReader(w, c.Request.Body, 50)
		var req pcaIssueCSRRequest
		if fast {
			assert.False(t, pcaIssueCSRBody(c, &req))
		} else {
			assert.False(t, pcaBody(c, &req, false))
		}
		assert.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
		assert.Contains(t, w.Body.String(), "request body too large")
	}
}

// The answer is what c.JSON(200, gin.H{"certificate_id": id}) wrote.
func FuzzCertificateIDAnswerIsGins(f *testing.F) {
	f.Add("01a241ae-f836-75da-9d3f-8dbf120ce80f")
	f.Add("<&>\u2028\xff\"\\")
	gin.SetMode(gin.TestMode)
	f.Fuzz(func(t *testing.T, id string) {
		w1 := httptest.NewRecorder()
		c1, _ := gin.CreateTestContext(w1)
		c1.JSON(http.StatusOK, gin.H{"certificate_id": id})
		w2 := httptest.NewRecorder()
		c2, _ := gin.CreateTestContext(w2)
		writeCertificateID(c2, id)
		assert.Equal(t, w1.Code, w2.Code)
		assert.Equal(t, w1.Header().Get("Content-Type"), w2.Header().Get("Content-Type"))
		assert.Equal(t, w1.Body.String(), w2.Body.String())
	})
}

// On the wire the two answers are the same, headers included (the
// server sets the length of a JSON answer that c.Data states).
func TestCertificateIDAnswerOnTheWire(t *testing.T) {
	gin.SetMode(gin.TestMode)
	e := gin.New()
	const id = "01a241ae-f836-75da-9d3f-8dbf120ce80f"
	e.GET("/json", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"certificate_id": id}) })
	e.GET("/direct", func(c *gin.Context) { writeCertificateID(c, id) })
	srv := httptest.NewServer(e)
	defer srv.Close()
	get := func(path string) (http.Header, string) {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		var b bytes.Buffer
		_, err = b.ReadFrom(resp.Body)
		require.NoError(t, err)
		h := resp.Header.Clone()
		h.Del("Date")
		return h, b.String()
	}
	h1, b1 := get("/json")
	h2, b2 := get("/direct")
	assert.Equal(t, h1, h2)
	assert.Equal(t, b1, b2)
	assert.Equal(t, `{"certificate_id":"`+id+`"}`, b2)
}

// BenchmarkPCAIssueCSRBody: the bench's issuance body read through
// encoding/json (json) and directly (direct).
func BenchmarkPCAIssueCSRBody(b *testing.B) {
	gin.SetMode(gin.TestMode)
	body := []byte(pcaIssueCSRSeeds[0])
	for _, direct := range []bool{false, true} {
		b.Run(map[bool]string{false: "json", true: "direct"}[direct], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				c, _ := gin.CreateTestContext(w)
				c.Request = httptest.NewRequest("POST", "/", bytes.NewReader(body))
				var req pcaIssueCSRRequest
				ok := false
				if direct {
					ok = pcaIssueCSRBody(c, &req)
				} else {
					ok = pcaBody(c, &req, false)
				}
				if !ok {
					b.Fatal(w.Body.String())
				}
			}
		})
	}
}
