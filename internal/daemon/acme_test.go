package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
)

// The daemon wires the acme configuration into its validator: lego gets
// a certificate over http-01 from a running daemon whose http-01 port and
// resolver are set in its configuration (a loopback port and a DNS server
// on loopback answering 127.0.0.1).
func TestDaemonACMEWithLego(t *testing.T) {
	if _, err := exec.LookPath("lego"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("lego is not installed (softhsm/ensure-packages.sh lego)")
		}
		t.Skip("lego is not installed")
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())

	tok := testenv.NewToken(t)
	cfg := testConfig(t, tok)
	cfg.ACME.HTTP01Port = port
	cfg.ACME.Resolver = pc.LocalAddr().String()
	d, _ := startDaemon(t, cfg, nil)
	base := "http://" + d.Addr()
	waitStatus(t, base+"/readyz", 200, 15*time.Second)
	secret, _, err := d.Engine().CreateToken(signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"}), "t1", []string{"ca-operator"}, nil)
	require.NoError(t, err)
	post := func(path string, body any) map[string]any {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
		require.Less(t, resp.StatusCode, 300, "%s: %v", path, m)
		return m
	}
	ca := post("/v1/private-certificate-authorities", map[string]any{"type": "ROOT", "key_algorithm": "EC256",
		"signature_algorithm": "SHA256", "validity": map[string]any{"type": "YEAR", "value": 1},
		"distinguished_name": map[string]any{"common_name": "Daemon ACME Root", "country": "DE", "state": "Berlin",
			"locality": "Berlin", "organization": "hsmca tests", "organizational_unit": "PKI"}})
	dir := post("/v1/acme/directories", map[string]any{"ca_id": ca["ca_id"]})

	path := t.TempDir()
	out, err := exec.Command("lego", "--server", dir["directory_url"].(string), "--path", path, "--accept-tos",
		"--email", "ops@acme.test", "--http", "--http.port", "127.0.0.1:"+strconv.Itoa(port), "-d", "daemon.acme.test", "run").CombinedOutput()
	require.NoError(t, err, "lego: %s", out)
	_, err = os.Stat(filepath.Join(path, "certificates", "daemon.acme.test.crt"))
	require.NoError(t, err)
}
