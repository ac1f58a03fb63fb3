package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// connWork turns a request into a closed-loop operation over one
// keep-alive HTTP/1.1 connection per worker, written and read directly.
//
// The load client shares the machine's cores with the daemon and the HSM,
// so every microsecond it spends is taken from what it measures. Go's
// http.Client costs several goroutine hand-offs per request (its
// connection's read and write loops); this client writes the request bytes
// and parses the answer on the worker's own goroutine. It speaks just what
// hsmcad answers: a status line, headers, and a body framed by
// Content-Length or chunked encoding; it reconnects when the server closes.
func connWork(base string, rq request, n int) (work, func(), error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, nil, err
	}
	if u.Scheme != "http" {
		return nil, nil, fmt.Errorf("load client: only http:// targets, got %q", base)
	}
	workers := make([]*rawConn, n)
	for i := range workers {
		workers[i] = &rawConn{addr: u.Host, rng: rand.New(rand.NewPCG(uint64(i)+1, 42))}
	}
	// The part of every request after the request line is the same.
	var tail bytes.Buffer
	fmt.Fprintf(&tail, "Host: %s\r\nUser-Agent: hsmca-bench\r\n", u.Host)
	if rq.token != "" {
		fmt.Fprintf(&tail, "Authorization: Bearer %s\r\n", rq.token)
	}
	if rq.body != nil {
		fmt.Fprintf(&tail, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(rq.body))
	}
	tail.WriteString("\r\n")
	tail.Write(rq.body)
	head := rq.method + " "
	op := func(ctx context.Context, w int) error {
		c := workers[w]
		path := rq.path(c.rng)
		status, body, err := c.roundTrip(head, path, tail.Bytes())
		if err != nil {
			return fmt.Errorf("%s %s: %w", rq.method, path, err)
		}
		if status != rq.want {
			return fmt.Errorf("%s %s: %d: %.200s", rq.method, path, status, body)
		}
		if rq.onBody != nil {
			rq.onBody(body)
		}
		return nil
	}
	closeAll := func() {
		for _, c := range workers {
			c.close()
		}
	}
	return op, closeAll, nil
}

// rawConn is one worker's connection; only its worker uses it.
type rawConn struct {
	addr string
	rng  *rand.Rand
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	body []byte
	mu   sync.Mutex // only for close at the end
}

func (c *rawConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// roundTrip sends one request and reads its answer. A request that fails
// on a connection reused from an earlier one is retried once on a fresh
// connection (the server may have closed it while idle); the body it
// returns is valid until the next call.
func (c *rawConn) roundTrip(head, path string, tail []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		fresh := c.conn == nil
		if fresh {
			conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
			if err != nil {
				return 0, nil, err
			}
			c.mu.Lock()
			c.conn = conn
			c.mu.Unlock()
			c.r = bufio.NewReaderSize(conn, 16<<10)
			c.w = bufio.NewWriterSize(conn, 4<<10)
		}
		status, keep, err := c.exchange(head, path, tail)
		if err == nil {
			if !keep {
				c.close()
			}
			return status, c.body, nil
		}
		c.close()
		if fresh || attempt > 0 {
			return 0, nil, err
		}
	}
}

func (c *rawConn) exchange(head, path string, tail []byte) (status int, keepAlive bool, err error) {
	if err := c.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return 0, false, err
	}
	c.w.WriteString(head)
	c.w.WriteString(path)
	c.w.WriteString(" HTTP/1.1\r\n")
	c.w.Write(tail)
	if err := c.w.Flush(); err != nil {
		return 0, false, err
	}
	line, err := c.line()
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("load client: bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("load client: bad status line %q", line)
	}
	length, chunked, keepAlive := -1, false, true
	for {
		h, err := c.line()
		if err != nil {
			return 0, false, err
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("load client: bad header %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, false, fmt.Errorf("load client: bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keepAlive = !bytes.EqualFold(value, []byte("close"))
		}
	}
	c.body = c.body[:0]
	switch {
	case status == 204 || status == 304 || status < 200:
		// No body, whatever the headers say (RFC 9112 6.3).
	case chunked:
		err = c.readChunked()
	case length >= 0:
		err = c.readN(length)
	default:
		// Neither: the body runs to the end of the connection.
		var b bytes.Buffer
		_, err = b.ReadFrom(c.r)
		c.body = append(c.body, b.Bytes()...)
		keepAlive = false
	}
	return status, keepAlive, err
}

// line reads one CRLF-terminated line without its terminator.
func (c *rawConn) line() ([]byte, error) {
	l, err := c.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("load client: header line too long")
		}
		return nil, err
	}
	return bytes.TrimRight(l, "\r\n"), nil
}

func (c *rawConn) readN(n int) error {
	if n > 64<<20 {
		return fmt.Errorf("load client: body of %d bytes", n)
	}
	start := len(c.body)
	c.body = append(c.body, make([]byte, n)...)
	_, err := io.ReadFull(c.r, c.body[start:])
	return err
}

func (c *rawConn) readChunked() error {
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(l, []byte(";"))
		n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 31)
		if err != nil {
			return fmt.Errorf("load client: bad chunk size %q", l)
		}
		if n == 0 {
			// Trailers, then the empty line.
			for {
				t, err := c.line()
				if err != nil {
					return err
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		if err := c.readN(int(n)); err != nil {
			return err
		}
		if crlf, err := c.line(); err != nil || len(crlf) != 0 {
			return fmt.Errorf("load client: chunk not followed by CRLF")
		}
	}
}
