package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles hsmcad and hsmca into dir and returns their paths. It runs
// `go build` from anywhere inside the module.
func Build(dir string) (daemon, cli string, err error) {
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/hsmca/hsmca/cmd/hsmcad", "github.com/hsmca/hsmca/cmd/hsmca")
	cmd.Env = os.Environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build: %v: %s", err, out)
	}
	return filepath.Join(dir, "hsmcad"), filepath.Join(dir, "hsmca"), nil
}

// Target describes the daemon under test: its binaries and the environment
// that configures it. Every run of the daemon uses the same environment, so
// each restart opens the same store and token.
type Target struct {
	Daemon string   // hsmcad binary
	CLI    string   // hsmca binary
	Env    []string // HSMCA_* and SOFTHSM2_CONF settings
	Addr   string   // the fixed listen address
	Dir    string   // where daemon logs go
}

// proc is one running hsmcad.
type proc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

var procSeq struct {
	sync.Mutex
	n int
}

func (t *Target) env() []string {
	return append(os.Environ(), t.Env...)
}

// start runs hsmcad and waits until /readyz answers 200: by then the
// start-up reconciler has run (the HSM is installed only after it).
func (t *Target) start(ctx context.Context) (*proc, error) {
	procSeq.Lock()
	procSeq.n++
	n := procSeq.n
	procSeq.Unlock()
	logf, err := os.Create(filepath.Join(t.Dir, fmt.Sprintf("hsmcad-%03d.log", n)))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(t.Daemon)
	cmd.Env = t.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start hsmcad: %w", err)
	}
	p := &proc{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("hsmcad exited during start-up (log %s): %s", logf.Name(), tail(logf.Name()))
		default:
		}
		resp, err := client.Get("http://" + t.Addr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.kill()
			return nil, fmt.Errorf("hsmcad not ready within 60s (log %s): %s", logf.Name(), tail(logf.Name()))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.log.Close()
}

func tail(path string) string {
	raw, _ := os.ReadFile(path)
	if len(raw) > 2000 {
		raw = raw[len(raw)-2000:]
	}
	return string(raw)
}

// cli runs the ops CLI against the daemon's configuration (store offline).
func (t *Target) cli(args ...string) (string, error) {
	cmd := exec.Command(t.CLI, args...)
	cmd.Env = t.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("hsmca %s: %v: %s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// Client calls the daemon's API with one token.
type Client struct {
	Base  string
	Token string
	HTTP  *http.Client
}

// Response is an answer; Err is set when none came (connection refused or
// reset: the daemon died).
type Response struct {
	Status int
	Body   []byte
	Err    error
	// RequestID is the daemon's X-Request-Id for the request.
	RequestID string
	// Began is when the request was sent (zero when it never was).
	Began time.Time
}

// Map decodes the body as an object.
func (r *Response) Map() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

func (c *Client) Do(ctx context.Context, method, path string, body any) *Response {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return &Response{Err: err}
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return &Response{Err: err}
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	began := time.Now()
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return &Response{Err: err, Began: began}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return &Response{Err: err, Began: began}
	}
	return &Response{Status: resp.StatusCode, Body: raw, RequestID: resp.Header.Get("X-Request-Id"), Began: began}
}
