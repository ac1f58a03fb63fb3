package eventexport

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"time"

	"github.com/hsmca/hsmca/store"
)

// SyslogSink sends each record as one RFC 5424 message over TCP or TLS,
// framed by octet counting (RFC 6587), so that no content can split or
// join messages:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [hsmca@32473 tenant=".." seq=".." time=".." prevHash=".." hash=".."] DATA
//
// PRI is facility 13 (log audit) with severity 6 (informational) for a
// SUCCESS and 4 (warning) otherwise; TIMESTAMP is the record's time to
// the microsecond, MSGID its operation (cut to 32 characters); the
// structured data holds the chain fields, time to the nanosecond; DATA is
// the record's content, the exact bytes its hash covers.
//
// Plain syslog has no acknowledgement. A record counts as delivered once
// it was sent Settle ago on a connection still open: the sink watches the
// connection, and a receiver that goes away closes it. What was sent in
// the last Settle before a loss is sent again, so a receiver that stores
// what it reads within Settle loses nothing.
type SyslogSink struct {
	cfg SyslogConfig

	conn     net.Conn
	lost     chan struct{} // closed when the receiver closes conn
	inflight []sent
	settled  map[string]uint64
	buf      bytes.Buffer
}

type sent struct {
	tenant string
	seq    uint64
	at     time.Time
}

// SyslogConfig configures a SyslogSink.
type SyslogConfig struct {
	Address  string      // host:port
	TLS      *tls.Config // nil: plain TCP
	Hostname string      // HOSTNAME field ("-" when empty)
	AppName  string      // APP-NAME field (default hsmca)
	Settle   time.Duration
	Timeout  time.Duration // dial and write deadline (default 10s)
}

// SDID is the structured-data id of the chain fields (32473 is the
// enterprise number RFC 5612 reserves for documentation: hsmca has none
// of its own).
const SDID = "hsmca@32473"

// NewSyslogSink makes a sink; it dials on the first send.
func NewSyslogSink(cfg SyslogConfig) *SyslogSink {
	if cfg.AppName == "" {
		cfg.AppName = "hsmca"
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "-"
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 2 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &SyslogSink{cfg: cfg, settled: map[string]uint64{}}
}

func (s *SyslogSink) dial(ctx context.Context) error {
	d := &net.Dialer{Timeout: s.cfg.Timeout, KeepAlive: 15 * time.Second}
	var c net.Conn
	var err error
	if s.cfg.TLS != nil {
		td := &tls.Dialer{NetDialer: d, Config: s.cfg.TLS}
		c, err = td.DialContext(ctx, "tcp", s.cfg.Address)
	} else {
		c, err = d.DialContext(ctx, "tcp", s.cfg.Address)
	}
	if err != nil {
		return fmt.Errorf("syslog %s: %w", s.cfg.Address, err)
	}
	lost := make(chan struct{})
	go func() {
		// A syslog receiver never writes: any read that ends means the
		// connection is gone.
		var b [512]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				close(lost)
				return
			}
		}
	}()
	s.conn, s.lost = c, lost
	return nil
}

// Send writes one message per record.
func (s *SyslogSink) Send(ctx context.Context, evs []store.Event) (int, error) {
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return 0, err
		}
	}
	select {
	case <-s.lost:
		s.drop()
		return 0, fmt.Errorf("syslog %s: the receiver closed the connection", s.cfg.Address)
	default:
	}
	s.buf.Reset()
	for _, ev := range evs {
		msg := FormatSyslog(ev, s.cfg.Hostname, s.cfg.AppName)
		s.buf.WriteString(strconv.Itoa(len(msg)))
		s.buf.WriteByte(' ')
		s.buf.Write(msg)
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	if _, err := s.conn.Write(s.buf.Bytes()); err != nil {
		s.drop()
		return 0, fmt.Errorf("syslog %s: %w", s.cfg.Address, err)
	}
	now := time.Now()
	for _, ev := range evs {
		s.inflight = append(s.inflight, sent{tenant: ev.Tenant, seq: ev.Seq, at: now})
	}
	return len(evs), nil
}

// Settled returns the records sent Settle ago or more while the
// connection stayed open.
func (s *SyslogSink) Settled(now time.Time) (map[string]uint64, error) {
	if s.conn != nil {
		select {
		case <-s.lost:
			s.drop()
			return nil, fmt.Errorf("syslog %s: the receiver closed the connection", s.cfg.Address)
		default:
		}
	}
	i := 0
	for ; i < len(s.inflight) && now.Sub(s.inflight[i].at) >= s.cfg.Settle; i++ {
		s.settled[s.inflight[i].tenant] = s.inflight[i].seq
	}
	s.inflight = s.inflight[i:]
	out := s.settled
	s.settled = map[string]uint64{}
	return out, nil
}

// Reset drops the connection and what is in flight.
func (s *SyslogSink) Reset() { s.drop() }

func (s *SyslogSink) drop() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	s.inflight = nil
}

// Close closes the connection.
func (s *SyslogSink) Close() error {
	s.drop()
	return nil
}

var sdEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`)

// FormatSyslog is the RFC 5424 message of one record, without framing.
func FormatSyslog(ev store.Event, hostname, app string) []byte {
	var rec struct {
		Operation string `json:"operation"`
		Outcome   string `json:"outcome"`
	}
	_ = json.Unmarshal(ev.Data, &rec)
	sev := 4
	if rec.Outcome == "SUCCESS" {
		sev = 6
	}
	msgid := printableASCII(rec.Operation, 32)
	if msgid == "" {
		msgid = "-"
	}
	t := ev.Time.UTC()
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 %s %s %s - %s [%s tenant=\"%s\" seq=\"%d\" time=\"%s\" prevHash=\"%s\" hash=\"%s\"] ",
		13*8+sev, t.Format("2006-01-02T15:04:05.000000Z"), printableASCII(hostname, 255), printableASCII(app, 48), msgid,
		SDID, sdEscaper.Replace(ev.Tenant), ev.Seq, t.Format(time.RFC3339Nano), sdEscaper.Replace(ev.PrevHash), sdEscaper.Replace(ev.Hash))
	b.Write(ev.Data)
	return b.Bytes()
}

// printableASCII keeps what RFC 5424 allows in a header field (33..126),
// at most n bytes.
func printableASCII(s string, n int) string {
	out := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if s[i] >= 33 && s[i] <= 126 {
			out = append(out, s[i])
		}
	}
	return string(out)
}

// ParseSyslog reads back a message made by FormatSyslog (as a receiver
// stores it, without framing), for checking a received copy.
func ParseSyslog(msg []byte) (store.Event, error) {
	var ev store.Event
	i := bytes.Index(msg, []byte("["+SDID+" "))
	if i < 0 {
		return ev, errors.New("no " + SDID + " structured data")
	}
	rest := msg[i+len(SDID)+2:]
	params := map[string]string{}
	for {
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) > 0 && rest[0] == ']' {
			rest = rest[1:]
			break
		}
		eq := bytes.IndexByte(rest, '=')
		if eq < 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
			return ev, errors.New("malformed structured data")
		}
		name := string(rest[:eq])
		rest = rest[eq+2:]
		var val []byte
		for {
			if len(rest) == 0 {
				return ev, errors.New("unterminated structured-data value")
			}
			c := rest[0]
			rest = rest[1:]
			if c == '\\' && len(rest) > 0 {
				val = append(val, rest[0])
				rest = rest[1:]
				continue
			}
			if c == '"' {
				break
			}
			val = append(val, c)
		}
		params[name] = string(val)
	}
	if len(rest) == 0 || rest[0] != ' ' {
		return ev, errors.New("no message after the structured data")
	}
	ev.Data = append([]byte(nil), rest[1:]...)
	ev.Tenant, ev.PrevHash, ev.Hash = params["tenant"], params["prevHash"], params["hash"]
	seq, err := strconv.ParseUint(params["seq"], 10, 64)
	if err != nil {
		return ev, fmt.Errorf("seq: %w", err)
	}
	ev.Seq = seq
	if ev.Time, err = time.Parse(time.RFC3339Nano, params["time"]); err != nil {
		return ev, fmt.Errorf("time: %w", err)
	}
	return ev, nil
}
