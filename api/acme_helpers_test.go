package api_test

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
	"github.com/hsmca/hsmca/internal/apitest"
	acmesvc "github.com/hsmca/hsmca/signer/acme"
)

// acmeEnv is a daemon (public base URL: its own) with a root and a
// subordinate of tenant t1, ACME enabled on the subordinate, and a DNS
// server on loopback that the validator asks: every name under
// acme.test has the address 127.0.0.1, and TXT records are what the
// test sets.
type acmeEnv struct {
	*pcaEnv
	root, sub       string
	dirID, dirURL   string
	dns             *testDNS
	httpPort        int
	tlsPort         int
	rootPEM, subPEM string
	dir             string // a temp dir for the clients' files
	base            string // the public base URL
	tune            []func(*acmesvc.Config)
}

// freePort is a loopback TCP port free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newACME(t *testing.T, backend string, policy map[string]any) *acmeEnv {
	return newACMEWith(t, backend, policy, apitest.Options{PublicBaseURL: apitest.SelfURL})
}

// newACMEWith is newACME on a stack started with o; tune, if any, adjusts
// the ACME service's configuration.
func newACMEWith(t *testing.T, backend string, policy map[string]any, o apitest.Options, tune ...func(*acmesvc.Config)) *acmeEnv {
	t.Helper()
	e := &acmeEnv{dns: startTestDNS(t), httpPort: freePort(t), tlsPort: freePort(t), dir: t.TempDir(), tune: tune}
	o.Configure = e.configure
	e.pcaEnv = newPCA(t, backend, o)
	crlOn := map[string]any{"crl_configuration": map[string]any{"enabled": true, "valid_days": 7}}
	e.root = e.createRoot("ACME Test Root", crlOn)
	e.sub = e.createSub("ACME Test Issuing CA", e.root, 0, crlOn)
	e.rootPEM, _ = e.exportCA(e.root)
	e.subPEM, _ = e.exportCA(e.sub)
	body := map[string]any{"ca_id": e.sub}
	if policy != nil {
		body["policy"] = policy
	}
	m := e.ok(e.do("POST", "/v1/acme/directories", body), http.StatusCreated)
	e.dirID, e.dirURL = m["id"].(string), m["directory_url"].(string)
	e.base = strings.TrimSuffix(e.dirURL, "/acme/"+e.dirID+"/directory")
	e.write("root.pem", e.rootPEM)
	e.write("sub.pem", e.subPEM)
	return e
}

// configure serves ACME with the env's validator settings.
func (e *acmeEnv) configure(o *api.Options) {
	cfg := acmesvc.Config{HTTPPort: e.httpPort, HTTPSPort: e.tlsPort, TLSALPNPort: e.tlsPort, Resolver: e.dns.addr,
		Timeout: 10 * time.Second}
	for _, f := range e.tune {
		f(&cfg)
	}
	o.ACME = acmesvc.New(o.Engine, o.PCA.(acmesvc.Issuer), cfg)
}

func (e *acmeEnv) write(name, content string) string {
	p := filepath.Join(e.dir, name)
	require.NoError(e.t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// verifyCert checks a leaf (PEM file) with openssl against the root,
// the subordinate as untrusted intermediate, and that it names the
// subordinate's CRL and certificate.
func (e *acmeEnv) verifyCert(certFile string, names ...string) *x509.Certificate {
	e.t.Helper()
	out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(e.dir, "root.pem"),
		"-untrusted", filepath.Join(e.dir, "sub.pem"), certFile).CombinedOutput()
	require.NoError(e.t, err, "openssl verify: %s", out)
	require.Contains(e.t, string(out), ": OK")
	raw, err := os.ReadFile(certFile)
	require.NoError(e.t, err)
	cert := pcaParseCert(e.t, string(raw))
	require.ElementsMatch(e.t, names, cert.DNSNames)
	require.Equal(e.t, []string{e.base + pcaCAs + "/" + e.sub + "/crl"}, cert.CRLDistributionPoints)
	require.Equal(e.t, []string{e.base + pcaCAs + "/" + e.sub + "/certificate"}, cert.IssuingCertificateURL)
	return cert
}

// testDNS answers A 127.0.0.1 for every name under acme.test, and the
// TXT records set.
type testDNS struct {
	addr string
	mu   sync.Mutex
	txt  map[string][]string // fqdn -> values
}

func startTestDNS(t *testing.T) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &testDNS{addr: pc.LocalAddr().String(), txt: map[string][]string{}}
	srv := &dns.Server{PacketConn: pc, Handler: d}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return d
}

// addTXT adds a TXT value at fqdn; removeTXT removes it.
func (d *testDNS) addTXT(fqdn, value string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[dns.Fqdn(strings.ToLower(fqdn))] = append(d.txt[dns.Fqdn(strings.ToLower(fqdn))], value)
}

func (d *testDNS) removeTXT(fqdn, value string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := dns.Fqdn(strings.ToLower(fqdn))
	d.txt[k] = slices.DeleteFunc(d.txt[k], func(v string) bool { return v == value })
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	for _, q := range r.Question {
		name := strings.ToLower(q.Name)
		if name != "acme.test." && !strings.HasSuffix(name, ".acme.test.") {
			m.Rcode = dns.RcodeNameError
			continue
		}
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
		switch q.Qtype {
		case dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
		case dns.TypeTXT:
			d.mu.Lock()
			for _, v := range d.txt[name] {
				hdr.Rrtype = dns.TypeTXT
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{v}})
			}
			d.mu.Unlock()
		case dns.TypeSOA:
			hdr.Name, hdr.Rrtype = "acme.test.", dns.TypeSOA
			m.Answer = append(m.Answer, &dns.SOA{Hdr: hdr, Ns: "ns.acme.test.", Mbox: "hostmaster.acme.test.",
				Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 0})
		case dns.TypeNS:
			hdr.Name, hdr.Rrtype = "acme.test.", dns.TypeNS
			m.Answer = append(m.Answer, &dns.NS{Hdr: hdr, Ns: "ns.acme.test."})
		}
	}
	_ = w.WriteMsg(m)
}

// requireRevoked asserts that cert is on the subordinate's CRL, as the
// public CRL route serves it (DER or PEM).
func (e *acmeEnv) requireRevoked(cert *x509.Certificate) {
	e.t.Helper()
	r := e.Do("GET", pcaCAs+"/"+e.sub+"/crl", "", nil)
	require.Equal(e.t, http.StatusOK, r.Status, "body: %s", r.Body)
	der := r.Body
	if b, _ := pem.Decode(r.Body); b != nil {
		der = b.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	require.NoError(e.t, err)
	for _, rc := range crl.RevokedCertificateEntries {
		if rc.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return
		}
	}
	e.t.Fatalf("serial %x is not on the CRL", cert.SerialNumber)
}
