package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsmca/hsmca/internal/testenv"
)

// Store backends of the bench beyond bolt and one Redis: Redis Sentinel
// (a master, two replicas, three sentinels) with writes waiting for one
// replica (WAIT, the default) and without, and a Redis Cluster of three
// masters with a replica each (writes waiting for one replica).
const (
	StoreSentinel       = "sentinel"
	StoreSentinelNoWait = "sentinel-nowait"
	StoreCluster        = "cluster"
)

// KnownStores are the backends `hsmca bench --stores` takes.
var KnownStores = []string{"bolt", "redis", StoreSentinel, StoreSentinelNoWait, StoreCluster}

// haStore reports whether backend is a replicated Redis topology: the
// bench measures issuance and signing on them (what WAIT and the cluster
// client add), not the read rows.
func haStore(backend string) bool {
	return backend == StoreSentinel || backend == StoreSentinelNoWait || backend == StoreCluster
}

// haTB lets the bench start the test suite's Redis topologies (they take a
// testing.TB): failures become an error, cleanups run at close, temporary
// directories live under the bench's work directory. The embedded TB is
// nil: the topology helpers call only the methods below.
type haTB struct {
	testing.TB
	dir      string
	mu       sync.Mutex
	n        int
	cleanups []func()
}

type haFailure struct{ msg string }

func (t *haTB) Helper()                   {}
func (t *haTB) Name() string              { return "bench" }
func (t *haTB) Logf(string, ...any)       {}
func (t *haTB) Log(...any)                {}
func (t *haTB) Failed() bool              { return false }
func (t *haTB) Fatal(args ...any)         { panic(haFailure{fmt.Sprint(args...)}) }
func (t *haTB) Fatalf(f string, a ...any) { panic(haFailure{fmt.Sprintf(f, a...)}) }
func (t *haTB) Errorf(f string, a ...any) { panic(haFailure{fmt.Sprintf(f, a...)}) }
func (t *haTB) Skipf(f string, a ...any)  { panic(haFailure{fmt.Sprintf(f, a...)}) }
func (t *haTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}
func (t *haTB) TempDir() string {
	t.mu.Lock()
	t.n++
	d := filepath.Join(t.dir, fmt.Sprintf("node%03d", t.n))
	t.mu.Unlock()
	if err := os.MkdirAll(d, 0o700); err != nil {
		panic(haFailure{err.Error()})
	}
	return d
}

func (t *haTB) close() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// startHAStore starts the topology of backend under dir and returns the
// daemon's store settings (YAML under store:) and what stops it.
func startHAStore(backend, dir string) (yaml string, stop func(), err error) {
	t := &haTB{dir: dir}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(haFailure)
			if !ok {
				panic(r)
			}
			t.close()
			err = fmt.Errorf("%s topology: %s", backend, f.msg)
		}
	}()
	var b strings.Builder
	// The replicas share the bench's cores: a write may wait longer than
	// the 500ms default for their acknowledgement, which would count as an
	// error row rather than as its cost.
	b.WriteString("  backend: redis\n  redis:\n    wait_timeout: 5s\n")
	switch backend {
	case StoreSentinel, StoreSentinelNoWait:
		s := testenv.StartSentinel(t)
		fmt.Fprintf(&b, "    mode: sentinel\n    master_name: %q\n    addrs: [%s]\n", s.MasterName, quoteAll(s.SentinelAddrs()))
		if backend == StoreSentinelNoWait {
			b.WriteString("    wait_replicas: 0\n")
		}
	case StoreCluster:
		c := testenv.StartCluster(t)
		fmt.Fprintf(&b, "    mode: cluster\n    addrs: [%s]\n", quoteAll(c.Addrs()))
	default:
		return "", nil, fmt.Errorf("unknown store %q", backend)
	}
	return b.String(), t.close, nil
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// SingleStores are the stores of the list that are not replicated
// topologies (the targets are checked on them).
func SingleStores(stores []string) []string {
	var out []string
	for _, s := range stores {
		if !haStore(s) {
			out = append(out, s)
		}
	}
	return out
}

// ReplicationCost writes what waiting for a replica (sentinel against
// sentinel-nowait) and the cluster (against one Redis) add to issuance and
// signing: p50 latency and daemon CPU per operation at each concurrency.
func ReplicationCost(w io.Writer, rows []Result, concurrency []int) {
	find := func(store, op string, c int) *Result {
		for i := range rows {
			if rows[i].Store == store && rows[i].Op == op && rows[i].Concurrency == c {
				return &rows[i]
			}
		}
		return nil
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	header := false
	for _, pair := range [][2]string{{StoreSentinel, StoreSentinelNoWait}, {StoreCluster, "redis"}} {
		for _, op := range []string{OpIssue, OpSign} {
			for _, c := range concurrency {
				a, b := find(pair[0], op, c), find(pair[1], op, c)
				if a == nil || b == nil || a.Ops == 0 || b.Ops == 0 {
					continue
				}
				if !header {
					fmt.Fprintln(w, "\nReplication costs (p50 and daemon CPU per operation, against the store without it):")
					header = true
				}
				fmt.Fprintf(w, "- %s vs %s: %s at %d: p50 %s ms vs %s ms (%+.0f µs), CPU %.0f vs %.0f µs/op, %.0f vs %.0f ops/s\n",
					pair[0], pair[1], op, c, ms(a.P50), ms(b.P50), us(a.P50-b.P50),
					us(a.CPUPerOp), us(b.CPUPerOp), a.OpsPerSec(), b.OpsPerSec())
			}
		}
	}
}
