package api

import (
	"bufio"
	"net"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/hsmca/hsmca/signer"
)

// A route marked Access.Overlap runs beside its API token's check when
// the token was valid and under its rate limit at its last check through
// this process (signer.AuthenticateTokenAhead, config
// overlap_credential_check): on Redis the check is a round trip, which
// then overlaps the request's HSM signature instead of coming before it.
//
// The handler's answer waits for the check (gateWriter), and so does
// every write of the engine (signer.AwaitCredential). A check that
// refuses the request replaces whatever the handler answered with the
// answer the check alone would have given: 401 or 503 in the family's
// envelope, or 429 with Retry-After, with the headers as they were before
// the handler ran. The handler's work is discarded unseen.

// nextBeside runs the rest of the chain while the caller's credential
// is being checked, and settles the answer with the check.
func (s *server) nextBeside(c *gin.Context, f Family, p *signer.CredentialCheck) {
	g := &gateWriter{ResponseWriter: c.Writer, s: s, c: c, f: f, p: p, header: c.Writer.Header().Clone()}
	c.Writer = g
	defer func() {
		// A handler that answered nothing (or panicked) still waits.
		g.pass()
		c.Writer = g.ResponseWriter
	}()
	c.Next()
}

// refuseBeside waits for the check p and reports whether it refused the
// request; a refusal is then answered through c's writer or, with g,
// through the writer g holds, its headers first reset to those from
// before the handler ran.
func (s *server) refuseBeside(c *gin.Context, f Family, p *signer.CredentialCheck, g *gateWriter) bool {
	limit, err := p.Wait()
	if err == nil && (limit.Err != nil || limit.Wait <= 0) {
		if limit.Err != nil {
			s.throttle(c, f, signer.Caller{}, &limit) // logs the limiter's failure; admits
		}
		return false
	}
	if g != nil {
		h := g.ResponseWriter.Header()
		clear(h)
		for k, v := range g.header {
			h[k] = v
		}
		c.Writer = g.ResponseWriter
		defer func() { c.Writer = g }()
	}
	if err != nil {
		f.WriteErr(c, err)
	} else {
		s.throttle(c, f, signer.Caller{}, &limit)
	}
	c.Abort()
	return true
}

// gateWriter holds a handler's answer until its credential's check has
// answered; on a refusal it writes the refusal and drops the handler's.
type gateWriter struct {
	gin.ResponseWriter
	s      *server
	c      *gin.Context
	f      Family
	p      *signer.CredentialCheck
	header http.Header // the headers before the handler ran

	once    sync.Once
	refused bool
}

// pass waits for the check (once) and reports whether the handler's
// answer may go out.
func (g *gateWriter) pass() bool {
	g.once.Do(func() { g.refused = g.s.refuseBeside(g.c, g.f, g.p, g) })
	return !g.refused
}

func (g *gateWriter) WriteHeaderNow() {
	if g.pass() {
		g.ResponseWriter.WriteHeaderNow()
	}
}

func (g *gateWriter) Write(b []byte) (int, error) {
	if !g.pass() {
		return len(b), nil
	}
	return g.ResponseWriter.Write(b)
}

func (g *gateWriter) WriteString(v string) (int, error) {
	if !g.pass() {
		return len(v), nil
	}
	return g.ResponseWriter.WriteString(v)
}

func (g *gateWriter) Flush() {
	if g.pass() {
		g.ResponseWriter.Flush()
	}
}

func (g *gateWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !g.pass() {
		return nil, nil, http.ErrHijacked
	}
	return g.ResponseWriter.Hijack()
}
