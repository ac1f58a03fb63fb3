package acme

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/hsmca/hsmca/signer"
)

// The validator: http-01 (RFC 8555 §8.3), dns-01 (§8.4) and tls-alpn-01
// (RFC 8737). Each validation is bounded by the context Challenge gives
// it; addresses come from the configured resolver.

type validator struct {
	cfg      Config
	resolver *net.Resolver
	dialer   *net.Dialer
}

func newValidator(cfg Config) *validator {
	v := &validator{cfg: cfg, resolver: net.DefaultResolver, dialer: &net.Dialer{}}
	if cfg.Resolver != "" {
		addr := cfg.Resolver
		v.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return v.dialer.DialContext(ctx, network, addr)
		}}
	}
	return v
}

// fail is a validation failure of type r.
func fail(r signer.Reason, format string, args ...any) error {
	return &signer.Error{Kind: signer.KindForbidden, Reason: r, Msg: fmt.Sprintf(format, args...)}
}

func (v *validator) validate(ctx context.Context, typ string, id Identifier, token, keyAuth string) error {
	switch typ {
	case ChallengeHTTP01:
		return v.http01(ctx, id, token, keyAuth)
	case ChallengeDNS01:
		return v.dns01(ctx, id, keyAuth)
	case ChallengeTLSALPN01:
		return v.tlsALPN01(ctx, id, keyAuth)
	}
	return fail(ReasonMalformed, "unknown challenge type")
}

// addrs resolves an identifier to the addresses to connect to.
func (v *validator) addrs(ctx context.Context, id Identifier) ([]net.IP, error) {
	if id.Type == "ip" {
		return []net.IP{net.ParseIP(id.Value)}, nil
	}
	ips, err := v.resolver.LookupIP(ctx, "ip", id.Value)
	if err != nil || len(ips) == 0 {
		return nil, fail(ReasonDNS, "no address found for %s", id.Value)
	}
	return ips, nil
}

// dialHost dials host:port, resolving host with the validator's resolver.
func (v *validator) dialHost(ctx context.Context, network, hostport string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	id := Identifier{Type: "dns", Value: host}
	if net.ParseIP(host) != nil {
		id.Type = "ip"
	}
	ips, err := v.addrs(ctx, id)
	if err != nil {
		return nil, err
	}
	var last error
	for _, ip := range ips {
		c, err := v.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

const maxHTTP01Body = 8 << 10

func hostFor(id Identifier) string {
	if id.Type == "ip" && strings.Contains(id.Value, ":") {
		return "[" + id.Value + "]"
	}
	return id.Value
}

func (v *validator) http01(ctx context.Context, id Identifier, token, keyAuth string) error {
	u := "http://" + hostFor(id)
	if v.cfg.HTTPPort != 80 {
		u += ":" + strconv.Itoa(v.cfg.HTTPPort)
	}
	u += "/.well-known/acme-challenge/" + token
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DialContext:       v.dialHost,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // RFC 8555 §8.3: the redirect target's certificate is not checked
			DisableKeepAlives: true,
		},
		CheckRedirect: v.checkRedirect,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(ReasonMalformed, "bad validation URL")
	}
	resp, err := client.Do(req)
	if err != nil {
		var se *signer.Error
		if errors.As(err, &se) {
			return se
		}
		return fail(ReasonConnection, "fetching %s: connection failed", u)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(ReasonUnauthorized, "fetching %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTP01Body))
	if err != nil {
		return fail(ReasonConnection, "fetching %s: reading the body failed", u)
	}
	if subtle.ConstantTimeCompare(bytes.TrimRight(body, " \t\r\n"), []byte(keyAuth)) != 1 {
		return fail(ReasonIncorrectResponse, "the key authorization at %s is not the expected one", u)
	}
	return nil
}

// checkRedirect follows at most 10 redirects, to http on the http-01
// port or https on the https port only (RFC 8555 §8.3).
func (v *validator) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return fail(ReasonConnection, "too many redirects")
	}
	if err := v.redirectAllowed(req.URL); err != nil {
		return err
	}
	return nil
}

func (v *validator) redirectAllowed(u *url.URL) error {
	port := u.Port()
	var want int
	switch u.Scheme {
	case "http":
		want = v.cfg.HTTPPort
		if port == "" {
			port = "80"
		}
	case "https":
		want = v.cfg.HTTPSPort
		if port == "" {
			port = "443"
		}
	default:
		return fail(ReasonConnection, "redirect to a scheme other than http or https")
	}
	if port != strconv.Itoa(want) {
		return fail(ReasonConnection, "redirect to %s port %s: only port %d is allowed", u.Scheme, port, want)
	}
	if u.User != nil {
		return fail(ReasonConnection, "redirect to a URL with user information")
	}
	return nil
}

func (v *validator) dns01(ctx context.Context, id Identifier, keyAuth string) error {
	if id.Type != "dns" {
		return fail(ReasonMalformed, "dns-01 validates DNS names only")
	}
	sum := sha256.Sum256([]byte(keyAuth))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	name := "_acme-challenge." + id.Value
	txts, err := v.resolver.LookupTXT(ctx, name)
	if err != nil {
		return fail(ReasonDNS, "no TXT record found at %s", name)
	}
	for _, t := range txts {
		if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(t)), []byte(want)) == 1 {
			return nil
		}
	}
	return fail(ReasonIncorrectResponse, "no TXT record at %s holds the expected digest", name)
}

// idPeACMEIdentifier is the acmeIdentifier extension of RFC 8737.
var idPeACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

func (v *validator) tlsALPN01(ctx context.Context, id Identifier, keyAuth string) error {
	addr := net.JoinHostPort(id.Value, strconv.Itoa(v.cfg.TLSALPNPort))
	conf := &tls.Config{NextProtos: []string{"acme-tls/1"}, InsecureSkipVerify: true} // the certificate is checked below
	if id.Type == "dns" {
		conf.ServerName = id.Value
	} else if rev, err := reverseName(id.Value); err == nil {
		conf.ServerName = rev // RFC 8738 §6
	}
	raw, err := v.dialHost(ctx, "tcp", addr)
	if err != nil {
		var se *signer.Error
		if errors.As(err, &se) {
			return se
		}
		return fail(ReasonConnection, "connecting to %s failed", addr)
	}
	conn := tls.Client(raw, conf)
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		return fail(ReasonTLS, "TLS handshake with %s failed", addr)
	}
	st := conn.ConnectionState()
	if st.NegotiatedProtocol != "acme-tls/1" || len(st.PeerCertificates) == 0 {
		return fail(ReasonTLS, "%s did not negotiate acme-tls/1", addr)
	}
	cert := st.PeerCertificates[0]
	if !certNamesOnly(cert, id) {
		return fail(ReasonIncorrectResponse, "the certificate of %s must name exactly %s", addr, id.Value)
	}
	sum := sha256.Sum256([]byte(keyAuth))
	for _, e := range cert.Extensions {
		if !e.Id.Equal(idPeACMEIdentifier) {
			continue
		}
		var got []byte
		if rest, err := asn1.Unmarshal(e.Value, &got); err != nil || len(rest) > 0 || !e.Critical {
			return fail(ReasonIncorrectResponse, "the acmeIdentifier extension of %s is malformed or not critical", addr)
		}
		if subtle.ConstantTimeCompare(got, sum[:]) != 1 {
			return fail(ReasonIncorrectResponse, "the acmeIdentifier of %s is not the expected one", addr)
		}
		return nil
	}
	return fail(ReasonIncorrectResponse, "the certificate of %s has no acmeIdentifier extension", addr)
}

// certNamesOnly reports a certificate whose only SAN is id.
func certNamesOnly(c *x509.Certificate, id Identifier) bool {
	if len(c.EmailAddresses)+len(c.URIs) > 0 {
		return false
	}
	if id.Type == "dns" {
		return len(c.IPAddresses) == 0 && len(c.DNSNames) == 1 && strings.EqualFold(c.DNSNames[0], id.Value)
	}
	return len(c.DNSNames) == 0 && len(c.IPAddresses) == 1 && c.IPAddresses[0].Equal(net.ParseIP(id.Value))
}

// reverseName is an address's in-addr.arpa or ip6.arpa name.
func reverseName(ip string) (string, error) {
	return dnsReverse(net.ParseIP(ip))
}

func dnsReverse(ip net.IP) (string, error) {
	if ip == nil {
		return "", errors.New("not an IP")
	}
	if v4 := ip.To4(); v4 != nil {
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", v4[3], v4[2], v4[1], v4[0]), nil
	}
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 72)
	for i := len(ip) - 1; i >= 0; i-- {
		b = append(b, hex[ip[i]&0xf], '.', hex[ip[i]>>4], '.')
	}
	return string(b) + "ip6.arpa", nil
}
