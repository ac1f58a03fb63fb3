package testenv

// Redis Sentinel and Redis Cluster on loopback: real redis-server and
// redis-sentinel processes on free ports, each in a temp dir, persistence
// off, killed with the test (and with this process, see startChild).

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hsmca/hsmca/internal/testpki"
)

// HAOptions secure the servers of StartSentinel and StartCluster.
type HAOptions struct {
	// TLS serves TLS only (no plain port) with certificates of a test CA
	// and requires client certificates, on client, replication, cluster
	// bus and sentinel connections alike.
	TLS bool
	// ACL turns the default user off: clients, replicas and sentinels
	// authenticate as a user with a password (and clients of the
	// sentinels as a sentinel user with a password of its own).
	ACL bool
}

// RedisAuth is what a client needs to reach the servers: empty fields
// when the servers are open.
type RedisAuth struct {
	Username, Password                 string
	SentinelUsername, SentinelPassword string
	// CAFile, CertFile and KeyFile are PEM files: the test CA, a client
	// certificate and its key. TLSConfig is the same as a tls.Config.
	CAFile, CertFile, KeyFile string
	TLSConfig                 *tls.Config
}

// haSetup is the security material shared by the nodes of one topology.
type haSetup struct {
	opts HAOptions
	auth RedisAuth
	// Node certificate files (server, and client for the node's own
	// outgoing connections).
	srvCert, srvKey, nodeCert, nodeKey string
}

func newHASetup(t testing.TB, opts HAOptions) *haSetup {
	t.Helper()
	h := &haSetup{opts: opts}
	if opts.ACL {
		h.auth.Username, h.auth.Password = "hsmca", randomHex(16)
		h.auth.SentinelUsername, h.auth.SentinelPassword = "hsmca-sentinel", randomHex(16)
	}
	if opts.TLS {
		dir := t.TempDir()
		ca := testpki.NewCA(t, "redis test CA")
		ip := []net.IP{net.ParseIP("127.0.0.1")}
		srv := ca.Issue(t, testpki.Options{CommonName: "127.0.0.1", IPs: ip, DNSNames: []string{"localhost"}, Server: true})
		node := ca.Issue(t, testpki.Options{CommonName: "redis node"})
		cli := ca.Issue(t, testpki.Options{CommonName: "hsmca"})
		h.auth.CAFile = filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(h.auth.CAFile, ca.PEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		h.srvCert, h.srvKey = srv.WriteFiles(t, dir, "server")
		h.nodeCert, h.nodeKey = node.WriteFiles(t, dir, "node")
		h.auth.CertFile, h.auth.KeyFile = cli.WriteFiles(t, dir, "client")
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		h.auth.TLSConfig = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cli.TLS()}, MinVersion: tls.VersionTLS12}
	}
	return h
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// portArgs is how a node listens on port.
func (h *haSetup) portArgs(port int) []string {
	if !h.opts.TLS {
		return []string{"--port", strconv.Itoa(port)}
	}
	return []string{"--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", h.srvCert, "--tls-key-file", h.srvKey,
		"--tls-client-cert-file", h.nodeCert, "--tls-client-key-file", h.nodeKey,
		"--tls-ca-cert-file", h.auth.CAFile, "--tls-auth-clients", "yes", "--tls-replication", "yes"}
}

// dataArgs are the arguments of a data node (master or replica).
func (h *haSetup) dataArgs(dir string, port int) []string {
	args := append([]string{"--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--logfile", "",
		// A replica's first sync starts at once (the default waits 5s for
		// more replicas to share it).
		"--repl-diskless-sync-delay", "0"}, h.portArgs(port)...)
	if h.opts.ACL {
		args = append(args, "--user", "default", "off",
			"--user", h.auth.Username, "on", ">"+h.auth.Password, "~*", "&*", "+@all",
			"--masteruser", h.auth.Username, "--masterauth", h.auth.Password)
	}
	return args
}

// client reaches one node as a test's admin.
func (h *haSetup) client(addr string, sentinel bool) *redis.Client {
	o := &redis.Options{Addr: addr, DialTimeout: 300 * time.Millisecond, ReadTimeout: 2 * time.Second,
		WriteTimeout: 2 * time.Second, MaxRetries: -1, DialerRetries: 1, DisableIdentity: true,
		PoolSize: 2, TLSConfig: h.auth.TLSConfig}
	if sentinel {
		o.Username, o.Password = h.auth.SentinelUsername, h.auth.SentinelPassword
	} else {
		o.Username, o.Password = h.auth.Username, h.auth.Password
	}
	return redis.NewClient(o)
}

// cliArgs are redis-cli's connection arguments.
func (h *haSetup) cliArgs() []string {
	var args []string
	if h.opts.TLS {
		args = append(args, "--tls", "--cacert", h.auth.CAFile, "--cert", h.auth.CertFile, "--key", h.auth.KeyFile)
	}
	if h.opts.ACL {
		args = append(args, "--user", h.auth.Username, "--pass", h.auth.Password, "--no-auth-warning")
	}
	return args
}

// HANode is one redis-server or redis-sentinel process.
type HANode struct {
	// Addr is host:port of the node's (TLS or plain) client port.
	Addr string

	name     string
	sentinel bool
	dir      string
	port     int
	bus      int
	argv     func(n *HANode) []string
	setup    *haSetup
	t        testing.TB

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	// extra are arguments after argv's (a later --replicaof wins).
	extra []string
}

func newHANode(t testing.TB, h *haSetup, name string, sentinel bool, argv func(n *HANode) []string) *HANode {
	n := &HANode{name: name, sentinel: sentinel, dir: t.TempDir(), argv: argv, setup: h, t: t}
	n.pickPorts()
	t.Cleanup(n.Kill)
	return n
}

func (n *HANode) pickPorts() {
	n.port = FreePort(n.t)
	n.bus = FreePort(n.t)
	n.Addr = fmt.Sprintf("127.0.0.1:%d", n.port)
}

// Running reports whether the process is up.
func (n *HANode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Client is an admin connection to the node; the caller closes it.
func (n *HANode) Client() *redis.Client { return n.setup.client(n.Addr, n.sentinel) }

// Kill ends the process with SIGKILL (a crash: nothing is saved, clients'
// connections drop). Start brings it back on the same port, empty.
func (n *HANode) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

// Start (re)starts the process on its port and returns once it answers
// PING.
func (n *HANode) Start() {
	n.t.Helper()
	if err := n.start(); err != nil {
		n.t.Fatal(err)
	}
}

func (n *HANode) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil
	}
	logPath := filepath.Join(n.dir, "log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	bin := "redis-server"
	if n.sentinel {
		bin = "redis-sentinel"
	}
	cmd := exec.Command(bin, append(n.argv(n), n.extra...)...)
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := startChild(cmd); err != nil {
		return fmt.Errorf("start %s %s: %w", bin, n.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c := n.Client()
	defer c.Close()
	deadline := time.After(15 * time.Second)
	for {
		// Dial first: go-redis logs every refused dial.
		err := errors.New("not listening")
		if conn, derr := net.DialTimeout("tcp", n.Addr, 300*time.Millisecond); derr == nil {
			conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = c.Ping(ctx).Err()
			cancel()
		}
		if err == nil {
			n.cmd, n.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return &nodeExitError{name: n.name, addr: n.Addr, log: tail(logPath)}
		case <-deadline:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return fmt.Errorf("%s %s on %s did not answer PING: %v: %s", bin, n.name, n.Addr, err, tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type nodeExitError struct{ name, addr, log string }

func (e *nodeExitError) Error() string {
	return fmt.Sprintf("%s on %s exited at start: %s", e.name, e.addr, e.log)
}

// startFresh starts a node that no other node knows the address of yet:
// when its port was taken meanwhile (parallel test processes), it tries
// other ports.
func (n *HANode) startFresh() error {
	var err error
	for range 5 {
		if err = n.start(); err == nil {
			return nil
		}
		var ex *nodeExitError
		if !errors.As(err, &ex) || !strings.Contains(ex.log, "in use") {
			return err
		}
		n.pickPorts()
	}
	return err
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// haBinaries checks that redis-server (and redis-sentinel or redis-cli)
// are installed.
func haBinaries(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			pkg := "redis-server"
			if b == "redis-sentinel" {
				pkg = "redis-sentinel"
			} else if b == "redis-cli" {
				pkg = "redis-tools"
			}
			Missing(t, "%s not on PATH (apt-get install %s)", b, pkg)
		}
	}
}

// startAll starts nodes in parallel (startFresh) and fails the test on the
// first error.
func startAll(t testing.TB, nodes []*HANode) {
	t.Helper()
	if err := startNodes(nodes); err != nil {
		t.Fatal(err)
	}
}

// startNodes starts nodes in parallel (startFresh).
func startNodes(nodes []*HANode) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.startFresh() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if err := waitUntil(timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

// waitUntil is waitFor returning its failure instead of ending the test.
func waitUntil(timeout time.Duration, what string, cond func() (bool, string)) error {
	end := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s: not after %s (last: %s)", what, timeout, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// Sentinel is one master, two replicas and three sentinels (quorum 2,
// down after 1s, failover timeout 5s).
type Sentinel struct {
	MasterName string
	// Data are the redis-server nodes, Data[0] the first master.
	Data []*HANode
	// Sentinels are the redis-sentinel nodes.
	Sentinels []*HANode
	// Auth reaches the nodes (data nodes with Username/Password, the
	// sentinels with SentinelUsername/SentinelPassword).
	Auth  RedisAuth
	setup *haSetup
	t     testing.TB
}

// SentinelAddrs are the sentinels' addresses.
func (s *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		out[i] = n.Addr
	}
	return out
}

// StartSentinel runs one master with two replicas (--replicaof) and three
// sentinels that know each other from their first second (their configs
// name each other and the replicas), and returns once the replicas are in
// sync and every sentinel sees the master, both replicas and the two other
// sentinels.
func StartSentinel(t testing.TB, opts ...HAOptions) *Sentinel {
	t.Helper()
	haBinaries(t, "redis-server", "redis-sentinel")
	start := time.Now()
	var o HAOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	h := newHASetup(t, o)
	s := &Sentinel{MasterName: "hsmca-test", Auth: h.auth, setup: h, t: t}
	master := newHANode(t, h, "master", false, func(n *HANode) []string { return h.dataArgs(n.dir, n.port) })
	if err := master.startFresh(); err != nil {
		t.Fatal(err)
	}
	s.Data = []*HANode{master}
	for i := range 2 {
		s.Data = append(s.Data, newHANode(t, h, fmt.Sprintf("replica%d", i+1), false, func(n *HANode) []string {
			return append(h.dataArgs(n.dir, n.port), "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
		}))
	}
	startAll(t, s.Data[1:])
	waitFor(t, 15*time.Second, "replicas in sync", func() (bool, string) {
		for _, n := range s.Data[1:] {
			if st := replicaLink(n); st != "up" {
				return false, n.name + " link " + st
			}
		}
		// The master's view too: each replica online (it has
		// acknowledged the sync).
		c := master.Client()
		defer c.Close()
		info, err := c.Info(context.Background(), "replication").Result()
		if err != nil {
			return false, err.Error()
		}
		if infoField(info, "connected_slaves") != "2" || strings.Count(info, "state=online") != 2 {
			return false, "master: " + strings.Join(strings.Fields(info), " ")
		}
		return true, ""
	})

	ids := make([]string, 3)
	for i := range ids {
		ids[i] = randomHex(20)
	}
	for i := range 3 {
		s.Sentinels = append(s.Sentinels, newHANode(t, h, fmt.Sprintf("sentinel%d", i+1), true, func(n *HANode) []string {
			return []string{s.sentinelConf(n, i, ids)}
		}))
	}
	startAll(t, s.Sentinels)
	waitFor(t, 15*time.Second, "sentinels see the master, the replicas and each other", func() (bool, string) {
		for _, n := range s.Sentinels {
			m, err := sentinelMaster(n, s.MasterName)
			if err != nil {
				return false, err.Error()
			}
			if !strings.Contains(m["flags"], "master") || strings.Contains(m["flags"], "down") ||
				m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" {
				return false, fmt.Sprintf("%s: %v", n.name, m)
			}
		}
		return true, ""
	})
	t.Logf("sentinel topology (1 master, 2 replicas, 3 sentinels) up in %s", time.Since(start).Round(time.Millisecond))
	return s
}

// sentinelConf writes the config of sentinel i (rewritten by the sentinel
// as it learns) and returns its path.
func (s *Sentinel) sentinelConf(n *HANode, i int, ids []string) string {
	h := s.setup
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("bind 127.0.0.1")
	p("dir %s", n.dir)
	if h.opts.TLS {
		p("port 0")
		p("tls-port %d", n.port)
		p("tls-cert-file %s", h.srvCert)
		p("tls-key-file %s", h.srvKey)
		p("tls-client-cert-file %s", h.nodeCert)
		p("tls-client-key-file %s", h.nodeKey)
		p("tls-ca-cert-file %s", h.auth.CAFile)
		p("tls-auth-clients yes")
		p("tls-replication yes")
	} else {
		p("port %d", n.port)
	}
	if h.opts.ACL {
		p("user default off")
		p("user %s on >%s ~* &* +@all", h.auth.SentinelUsername, h.auth.SentinelPassword)
		p("sentinel sentinel-user %s", h.auth.SentinelUsername)
		p("sentinel sentinel-pass %s", h.auth.SentinelPassword)
	}
	p("sentinel myid %s", ids[i])
	m := s.Data[0]
	p("sentinel monitor %s 127.0.0.1 %d 2", s.MasterName, m.port)
	p("sentinel down-after-milliseconds %s 1000", s.MasterName)
	p("sentinel failover-timeout %s 5000", s.MasterName)
	p("sentinel parallel-syncs %s 1", s.MasterName)
	if h.opts.ACL {
		p("sentinel auth-user %s %s", s.MasterName, h.auth.Username)
		p("sentinel auth-pass %s %s", s.MasterName, h.auth.Password)
	}
	for _, r := range s.Data[1:] {
		p("sentinel known-replica %s 127.0.0.1 %d", s.MasterName, r.port)
	}
	for j, o := range s.Sentinels {
		if j != i {
			p("sentinel known-sentinel %s 127.0.0.1 %d %s", s.MasterName, o.port, ids[j])
		}
	}
	path := filepath.Join(n.dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

func replicaLink(n *HANode) string {
	c := n.Client()
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		return err.Error()
	}
	return infoField(info, "master_link_status")
}

func sentinelMaster(n *HANode, name string) (map[string]string, error) {
	c := n.Client()
	defer c.Close()
	v, err := c.Do(context.Background(), "SENTINEL", "MASTER", name).Result()
	if err != nil {
		return nil, err
	}
	return pairs(v), nil
}

// pairs reads a reply of alternating names and values (RESP2 array or
// RESP3 map).
func pairs(v any) map[string]string {
	out := map[string]string{}
	switch x := v.(type) {
	case []any:
		for i := 0; i+1 < len(x); i += 2 {
			out[fmt.Sprint(x[i])] = fmt.Sprint(x[i+1])
		}
	case map[any]any:
		for k, val := range x {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return out
}

// MasterAddr is the master's address as the first answering sentinel
// names it.
func (s *Sentinel) MasterAddr() (string, error) {
	var errs []error
	for _, n := range s.Sentinels {
		if !n.Running() {
			continue
		}
		c := n.Client()
		addr, err := c.Do(context.Background(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName).StringSlice()
		c.Close()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1]), nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("no sentinel names the master: %w", errors.Join(errs...))
}

// Node is the data node at addr (nil if none).
func (s *Sentinel) Node(addr string) *HANode {
	for _, n := range s.Data {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// KillMaster SIGKILLs the current master and returns it.
func (s *Sentinel) KillMaster(t testing.TB) *HANode {
	t.Helper()
	addr, err := s.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}
	n := s.Node(addr)
	if n == nil {
		t.Fatalf("the sentinels name %s, not a node of this topology", addr)
	}
	n.Kill()
	return n
}

// FailoverWait is how long a test waits for a Sentinel failover or a
// cluster replica's promotion: a sentinel whose attempt fails (on a
// loaded machine, no replica answered its last INFO in time) tries again
// after twice the failover timeout (10s), and a busy CI machine has been
// seen to need more than one attempt; a cluster election that fails is
// tried again too.
const FailoverWait = 90 * time.Second

// WaitFailover waits until every running sentinel names a master other
// than old and that node answers as a master; it returns its address.
func (s *Sentinel) WaitFailover(t testing.TB, old string, timeout time.Duration) string {
	t.Helper()
	var now string
	waitFor(t, timeout, "failover away from "+old, func() (bool, string) {
		for _, n := range s.Sentinels {
			if !n.Running() {
				continue
			}
			c := n.Client()
			addr, err := c.Do(context.Background(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName).StringSlice()
			c.Close()
			if err != nil || len(addr) != 2 {
				return false, fmt.Sprint(err)
			}
			a := net.JoinHostPort(addr[0], addr[1])
			if a == old || (now != "" && a != now) {
				return false, n.name + " names " + a
			}
			now = a
		}
		node := s.Node(now)
		if node == nil || !node.Running() {
			return false, "new master " + now + " not running"
		}
		c := node.Client()
		defer c.Close()
		info, err := c.Info(context.Background(), "replication").Result()
		if err != nil || infoField(info, "role") != "master" {
			return false, fmt.Sprintf("%s not a master yet (%v)", now, err)
		}
		return true, ""
	})
	return now
}

// Cluster is three masters with one replica each (cluster-node-timeout
// 1s), made with redis-cli --cluster create.
type Cluster struct {
	// Nodes are the six redis-server nodes.
	Nodes []*HANode
	Auth  RedisAuth
	setup *haSetup
	t     testing.TB
}

// Addrs are every node's address (seeds for a cluster client).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// StartCluster runs six cluster-enabled redis-servers, joins them into
// three masters with a replica each, and returns once every node says
// cluster_state:ok and every replica is in sync. A cluster that does not
// form (a node that never joins the others' view) is torn down and built
// again on fresh ports and directories, up to three times.
func StartCluster(t testing.TB, opts ...HAOptions) *Cluster {
	t.Helper()
	haBinaries(t, "redis-server", "redis-cli")
	var o HAOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	h := newHASetup(t, o)
	const attempts = 3
	for i := 1; ; i++ {
		start := time.Now()
		c, err := startCluster(t, h)
		if err == nil {
			t.Logf("cluster (3 masters, 3 replicas) up in %s", time.Since(start).Round(time.Millisecond))
			return c
		}
		if i == attempts {
			t.Fatalf("cluster did not form in %d attempts; the last: %v", attempts, err)
		}
		t.Logf("cluster attempt %d did not form, starting it again on other ports: %v", i, err)
	}
}

// startCluster is one attempt of StartCluster; on failure it stops the
// nodes it started.
func startCluster(t testing.TB, h *haSetup) (c *Cluster, err error) {
	t.Helper()
	c = &Cluster{Auth: h.auth, setup: h, t: t}
	defer func() {
		if err != nil {
			for _, n := range c.Nodes {
				if n.Running() {
					err = fmt.Errorf("%w\n%s log:\n%s", err, n.name, tail(filepath.Join(n.dir, "log")))
				}
				n.Kill()
			}
		}
	}()
	for i := range 6 {
		c.Nodes = append(c.Nodes, newHANode(t, h, fmt.Sprintf("node%d", i+1), false, func(n *HANode) []string {
			args := append(h.dataArgs(n.dir, n.port), "--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
				"--cluster-node-timeout", "1000", "--cluster-port", strconv.Itoa(n.bus))
			if h.opts.TLS {
				args = append(args, "--tls-cluster", "yes")
			}
			return args
		}))
	}
	if err := startNodes(c.Nodes); err != nil {
		return c, err
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	args = append(args, h.cliArgs()...)
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		return c, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	return c, c.waitHealthy(t, 30*time.Second)
}

// ClusterNode is one line of CLUSTER NODES.
type ClusterNode struct {
	ID, Addr, MasterID string
	Master, Failed     bool
	// Self marks the line of the node that answered.
	Self  bool
	Slots []string
}

// Topology is CLUSTER NODES as the first running node answers it.
func (c *Cluster) Topology() ([]ClusterNode, error) {
	var errs []error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := n.Client()
		v, err := cl.ClusterNodes(context.Background()).Result()
		cl.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return parseClusterNodes(v), nil
	}
	return nil, fmt.Errorf("no node answers CLUSTER NODES: %w", errors.Join(errs...))
}

func parseClusterNodes(v string) []ClusterNode {
	var out []ClusterNode
	for _, line := range strings.Split(strings.TrimSpace(v), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		flags := strings.Split(f[2], ",")
		cn := ClusterNode{ID: f[0], Addr: addr, MasterID: f[3], Master: slices.Contains(flags, "master"),
			Failed: slices.Contains(flags, "fail") || slices.Contains(flags, "fail?"),
			Self:   slices.Contains(flags, "myself"), Slots: f[8:]}
		out = append(out, cn)
	}
	return out
}

// Masters are the addresses of the masters that serve slots, sorted.
func (c *Cluster) Masters() ([]string, error) {
	nodes, err := c.Topology()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes {
		if n.Master && !n.Failed && len(n.Slots) > 0 {
			out = append(out, n.Addr)
		}
	}
	slices.Sort(out)
	return out, nil
}

// MasterOf is the address of the master serving key's slot.
func (c *Cluster) MasterOf(key string) (string, error) {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := n.Client()
		defer cl.Close()
		slot, err := cl.ClusterKeySlot(context.Background(), key).Result()
		if err != nil {
			return "", err
		}
		ranges, err := cl.ClusterSlots(context.Background()).Result()
		if err != nil {
			return "", err
		}
		for _, r := range ranges {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				return r.Nodes[0].Addr, nil
			}
		}
		return "", fmt.Errorf("slot %d of %q is not served", slot, key)
	}
	return "", errors.New("no node running")
}

// Node is the node at addr (nil if none).
func (c *Cluster) Node(addr string) *HANode {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// KillMaster SIGKILLs the master at addr; WaitPromotion then waits for its
// replica to take over.
func (c *Cluster) KillMaster(t testing.TB, addr string) *HANode {
	t.Helper()
	n := c.Node(addr)
	if n == nil {
		t.Fatalf("%s is not a node of this cluster", addr)
	}
	n.Kill()
	return n
}

// WaitPromotion waits until the slots the master at dead served are
// served by another node (its replica, promoted) and every running node
// says cluster_state:ok; it returns the new master's address.
func (c *Cluster) WaitPromotion(t testing.TB, dead string, slots []string, timeout time.Duration) string {
	t.Helper()
	var now string
	waitFor(t, timeout, "promotion of a replica of "+dead, func() (bool, string) {
		nodes, err := c.Topology()
		if err != nil {
			return false, err.Error()
		}
		for _, n := range nodes {
			if n.Master && !n.Failed && n.Addr != dead && slices.Equal(n.Slots, slots) {
				now = n.Addr
				return c.allOK()
			}
		}
		return false, "no other master serves " + strings.Join(slots, " ")
	})
	return now
}

// SlotsOf are the slot ranges the master at addr serves now.
func (c *Cluster) SlotsOf(addr string) ([]string, error) {
	nodes, err := c.Topology()
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if n.Addr == addr {
			return n.Slots, nil
		}
	}
	return nil, fmt.Errorf("%s not in the cluster", addr)
}

// allOK says whether every running node reports cluster_state:ok and every
// running replica is in sync.
func (c *Cluster) allOK() (bool, string) {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := n.Client()
		info, err := cl.ClusterInfo(context.Background()).Result()
		if err != nil {
			cl.Close()
			return false, n.name + ": " + err.Error()
		}
		if st := infoField(info, "cluster_state"); st != "ok" {
			cl.Close()
			return false, n.name + " cluster_state " + st
		}
		repl, err := cl.Info(context.Background(), "replication").Result()
		cl.Close()
		if err != nil {
			return false, n.name + ": " + err.Error()
		}
		if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
			return false, n.name + " replica link " + infoField(repl, "master_link_status")
		}
		if infoField(repl, "role") == "master" && strings.Count(repl, "state=online") != strings.Count(repl, "state=") {
			return false, n.name + " has a replica not yet online"
		}
	}
	return true, ""
}

func (c *Cluster) waitHealthy(t testing.TB, timeout time.Duration) error {
	t.Helper()
	start, repaired := time.Now(), time.Time{}
	return waitUntil(timeout, "cluster_state:ok on every node", func() (bool, string) {
		ok, why := c.allOK()
		if !ok {
			return false, why
		}
		// Every node must also know the full topology (three masters
		// with slots, three replicas), so that clients seeded with any
		// node see the same cluster.
		for _, n := range c.Nodes {
			cl := n.Client()
			v, err := cl.ClusterNodes(context.Background()).Result()
			cl.Close()
			if err != nil {
				return false, err.Error()
			}
			masters, replicas := 0, 0
			for _, cn := range parseClusterNodes(v) {
				switch {
				case cn.Master && len(cn.Slots) > 0:
					masters++
				case !cn.Master && cn.MasterID != "-":
					replicas++
				}
			}
			if masters != 3 || replicas != 3 {
				// A node that never heard of another (its handshake
				// lost), or one left an empty master by a CLUSTER
				// REPLICATE that redis-cli sent too early: after a few
				// seconds, introduce them and send it again.
				if time.Since(start) > 3*time.Second && time.Since(repaired) > time.Second {
					repaired = time.Now()
					c.meetMissing(t)
					c.replicateEmptyMasters(t)
				}
				return false, fmt.Sprintf("%s sees %d masters, %d replicas: %s", n.name, masters, replicas,
					strings.ReplaceAll(strings.TrimSpace(v), "\n", " | "))
			}
		}
		return true, ""
	})
}

// meetMissing sends, on each running node, CLUSTER MEET for every running
// node missing from its CLUSTER NODES.
func (c *Cluster) meetMissing(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := n.Client()
		v, err := cl.ClusterNodes(ctx).Result()
		if err != nil {
			cl.Close()
			continue
		}
		known := map[string]bool{}
		for _, cn := range parseClusterNodes(v) {
			known[cn.Addr] = true
		}
		for _, m := range c.Nodes {
			if m == n || !m.Running() || known[m.Addr] {
				continue
			}
			host, port, _ := net.SplitHostPort(m.Addr)
			err := cl.Do(ctx, "CLUSTER", "MEET", host, port, m.bus).Err()
			t.Logf("cluster: %s did not know %s; CLUSTER MEET: %v", n.name, m.name, err)
		}
		cl.Close()
	}
}

// replicateEmptyMasters makes each node that calls itself a master with
// no slots the replica of a master that has none.
func (c *Cluster) replicateEmptyMasters(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	var empty []*HANode
	served := map[string]ClusterNode{} // slot-serving masters by ID
	replicated := map[string]bool{}
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := n.Client()
		v, err := cl.ClusterNodes(ctx).Result()
		cl.Close()
		if err != nil {
			continue
		}
		for _, cn := range parseClusterNodes(v) {
			switch {
			case !cn.Self:
			case cn.Master && len(cn.Slots) == 0:
				empty = append(empty, n)
			case cn.Master:
				served[cn.ID] = cn
			default:
				replicated[cn.MasterID] = true
			}
		}
	}
	ids := slices.Sorted(maps.Keys(served))
	for _, n := range empty {
		for _, id := range ids {
			if replicated[id] {
				continue
			}
			cl := n.Client()
			err := cl.Do(ctx, "CLUSTER", "REPLICATE", id).Err()
			if err != nil {
				// It has not heard of that master yet: introduce them.
				if m := c.Node(served[id].Addr); m != nil {
					host, port, _ := net.SplitHostPort(m.Addr)
					_ = cl.Do(ctx, "CLUSTER", "MEET", host, port, m.bus).Err()
				}
			}
			cl.Close()
			t.Logf("cluster: %s had no master; CLUSTER REPLICATE %s: %v", n.name, served[id].Addr, err)
			replicated[id] = true
			break
		}
	}
}

// MigrateSlot moves one hash slot to the master at to, as a resharding
// does: the target imports it, the owner marks it migrating, its keys move
// a few at a time (MIGRATE; between runs after each batch), then every
// master assigns the slot to the target. Clients meanwhile meet ASK and
// TRYAGAIN, and MOVED afterwards.
func (c *Cluster) MigrateSlot(t testing.TB, slot int, to string, between func()) {
	t.Helper()
	ctx := context.Background()
	from := ""
	nodes, err := c.Topology()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, n := range nodes {
		ids[n.Addr] = n.ID
		for _, r := range n.Slots {
			lo, hi, _ := strings.Cut(r, "-")
			if hi == "" {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil && a <= slot && slot <= b && n.Master && !n.Failed {
				from = n.Addr
			}
		}
	}
	if from == "" || ids[to] == "" {
		t.Fatalf("slot %d: no owner, or %s unknown", slot, to)
	}
	if from == to {
		t.Fatalf("slot %d is on %s already", slot, to)
	}
	src, dst := c.Node(from).Client(), c.Node(to).Client()
	defer src.Close()
	defer dst.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("migrate slot %d from %s to %s: %v", slot, from, to, err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from]).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to]).Err())
	host, port, _ := net.SplitHostPort(to)
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 2).Result()
		must(err)
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000}
		if c.setup.opts.ACL {
			args = append(args, "AUTH2", c.Auth.Username, c.Auth.Password)
		}
		args = append(args, "KEYS")
		for _, k := range keys {
			args = append(args, k)
		}
		must(src.Do(ctx, args...).Err())
		if between != nil {
			between()
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]).Err())
	for _, n := range nodes {
		if n.Master && !n.Failed && n.Addr != from && n.Addr != to {
			cl := c.Node(n.Addr).Client()
			must(cl.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]).Err())
			cl.Close()
		}
	}
}

// Describe is each data node's replication state in one line: role, the
// master it follows, link, offset and connected replicas.
func (s *Sentinel) Describe() string {
	var parts []string
	for _, n := range s.Data {
		if !n.Running() {
			parts = append(parts, n.Addr+" down")
			continue
		}
		c := n.Client()
		info, err := c.Info(context.Background(), "replication").Result()
		c.Close()
		if err != nil {
			parts = append(parts, n.Addr+" "+err.Error())
			continue
		}
		d := n.Addr + " " + infoField(info, "role")
		if infoField(info, "role") == "slave" {
			d += " of :" + infoField(info, "master_port") + " link " + infoField(info, "master_link_status") +
				" offset " + infoField(info, "slave_repl_offset")
		} else {
			d += " offset " + infoField(info, "master_repl_offset") + " replicas " + infoField(info, "connected_slaves")
		}
		parts = append(parts, d)
	}
	return strings.Join(parts, "; ")
}

// Rejoin starts a killed data node again as a replica of the current
// master, empty, as a node whose configuration the sentinels rewrote
// comes back. (Started with its first arguments instead, a replica would
// follow the first master, by now perhaps a replica itself: a chained
// replica the sentinels may promote although it lags the replica that
// acknowledged the last writes.)
func (s *Sentinel) Rejoin(t testing.TB, n *HANode) {
	t.Helper()
	addr, err := s.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	n.mu.Lock()
	n.extra = []string{"--replicaof", host, port}
	n.mu.Unlock()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
}

// Log is the node's log so far.
func (n *HANode) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "log"))
	return string(b)
}

// Pause stops the node with SIGSTOP (a hung machine: connections stay
// open, nothing answers) and returns what resumes it.
func (n *HANode) Pause() (resume func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return func() {}
	}
	pid := n.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGSTOP)
	return func() { _ = syscall.Kill(-pid, syscall.SIGCONT) }
}
