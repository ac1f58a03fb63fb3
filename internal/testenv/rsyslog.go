package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Rsyslog is a Debian rsyslogd on a loopback port receiving syslog over
// TCP (imtcp, octet-counted or line framing) or TLS (the gtls netstream
// driver), writing every message as received (%rawmsg%), one per line, to
// Output.
type Rsyslog struct {
	Addr   string
	Dir    string
	Output string

	t    testing.TB
	bin  string
	conf string
	pid  string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// RsyslogTLS makes the receiver speak TLS with this server certificate
// and key (PEM files); CAFile is the CA bundle rsyslog loads with them.
type RsyslogTLS struct {
	CAFile, CertFile, KeyFile string
}

// RsyslogOptions configure StartRsyslog.
type RsyslogOptions struct {
	TLS *RsyslogTLS
}

// rsyslogdPath finds rsyslogd (in /usr/sbin, often not on a user's PATH).
func rsyslogdPath() string {
	if p, err := exec.LookPath("rsyslogd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/rsyslogd", "/sbin/rsyslogd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// StartRsyslog starts rsyslogd as the test's user and returns once it
// accepts connections; the test's cleanup kills it.
func StartRsyslog(t testing.TB, o RsyslogOptions) *Rsyslog {
	t.Helper()
	bin := rsyslogdPath()
	if bin == "" {
		Missing(t, "rsyslogd not installed (apt-get install rsyslog; softhsm/ensure-packages.sh rsyslog)")
	}
	if o.TLS != nil {
		if matches, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"); len(matches) == 0 {
			Missing(t, "rsyslog's GnuTLS driver not installed (apt-get install rsyslog-gnutls)")
		}
	}
	dir := t.TempDir()
	r := &Rsyslog{t: t, bin: bin, Dir: dir, Output: filepath.Join(dir, "received.log"),
		conf: filepath.Join(dir, "rsyslog.conf"), pid: filepath.Join(dir, "rsyslogd.pid"), log: filepath.Join(dir, "rsyslogd.out")}
	t.Cleanup(r.Kill)
	var err error
	for range 5 {
		port := FreePort(t)
		r.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		if err = os.WriteFile(r.conf, []byte(rsyslogConf(dir, port, r.Output, o.TLS)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err = r.start(); err == nil {
			return r
		}
	}
	t.Fatalf("rsyslogd: %v", err)
	return nil
}

func rsyslogConf(dir string, port int, out string, tls *RsyslogTLS) string {
	var b bytes.Buffer
	if tls != nil {
		fmt.Fprintf(&b, "global(workDirectory=%q defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=%q defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q)\n",
			dir, tls.CAFile, tls.CertFile, tls.KeyFile)
		b.WriteString("module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n")
	} else {
		fmt.Fprintf(&b, "global(workDirectory=%q)\n", dir)
		b.WriteString("module(load=\"imtcp\")\n")
	}
	// Messages of up to 64 KiB, each written as it came.
	fmt.Fprintf(&b, "global(maxMessageSize=\"64k\")\n")
	b.WriteString("template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n")
	fmt.Fprintf(&b, "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\")\n", port)
	fmt.Fprintf(&b, "action(type=\"omfile\" file=%q template=\"raw\")\n", out)
	return b.String()
}

// Start (re)starts rsyslogd on the same port after Kill.
func (r *Rsyslog) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("rsyslogd: %v", err)
	}
}

func (r *Rsyslog) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	_ = os.Remove(r.pid)
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(r.bin, "-n", "-f", r.conf, "-i", r.pid)
	cmd.Dir = r.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := startChild(cmd); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.After(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", r.Addr, 300*time.Millisecond); err == nil {
			c.Close()
			r.cmd, r.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("rsyslogd on %s exited at start: %s", r.Addr, tail(r.log))
		case <-deadline:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return fmt.Errorf("rsyslogd on %s did not accept connections: %s", r.Addr, tail(r.log))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill ends rsyslogd with SIGKILL (a crash: what it had not written is
// lost, the connections drop).
func (r *Rsyslog) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// Lines returns the messages received so far, one per line.
func (r *Rsyslog) Lines() [][]byte {
	r.t.Helper()
	f, err := os.Open(r.Output)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
	}
	return out
}
