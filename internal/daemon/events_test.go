package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/eventexport"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
)

// A daemon with a file sink (HSMCA_EVENTS_EXPORT_FILE) streams its
// records to it, checkpoints included, and the file verifies with the
// checkpoint; the sink's series exist from the start.
func TestDaemonExportsEventsToFile(t *testing.T) {
	tok := testenv.NewToken(t)
	testConfig(t, tok)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	t.Setenv("HSMCA_EVENTS_EXPORT_FILE", path)
	t.Setenv("HSMCA_EVENTS_EXPORT_POLL_INTERVAL", "20ms")
	cfg, err := config.Load("")
	require.NoError(t, err)
	d, _ := startDaemon(t, cfg, nil)
	waitStatus(t, "http://"+d.Addr()+"/readyz", 200, 15*time.Second)
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	for range 5 {
		_, _, err := d.Engine().CreateToken(ctx, "acme", []string{signer.RoleAuditor}, nil)
		require.NoError(t, err)
	}
	cp, err := d.Engine().CheckpointEvents(ctx, "acme")
	require.NoError(t, err)
	deadline := time.Now().Add(15 * time.Second)
	for {
		raw, _ := os.ReadFile(path)
		if strings.Count(string(raw), "\n") == int(cp.Seq) {
			break
		}
		require.True(t, time.Now().Before(deadline), "records not exported: %s", raw)
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, d.Shutdown(context.Background()))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	rep, err := signer.ReadExport(f, []signer.Checkpoint{*cp})
	require.NoError(t, err)
	require.Len(t, rep.Tenants, 1)
	assert.False(t, rep.Tenants[0].Broken, rep.Tenants[0].Problem)
	assert.Equal(t, 1, rep.Tenants[0].Checkpoints)
}

func TestExportConfigRefusals(t *testing.T) {
	tok := testenv.NewToken(t)
	testConfig(t, tok)
	t.Setenv("HSMCA_EVENTS_EXPORT_SYSLOG", "no-port")
	_, err := config.Load("")
	assert.ErrorContains(t, err, `events.export[0].address "no-port": want host:port`)
	t.Setenv("HSMCA_EVENTS_EXPORT_SYSLOG", "127.0.0.1:1")
	t.Setenv("HSMCA_EVENTS_CHECKPOINT_INTERVAL", "1s")
	_, err = config.Load("")
	assert.ErrorContains(t, err, "events.checkpoint_interval 1s: want at least 10s")
}

// hsmcad streams to Debian's rsyslog (HSMCA_EVENTS_EXPORT_SYSLOG) under
// load; rsyslog is killed and restarted mid-load, then the daemon itself
// is restarted on the same store and the load goes on. Every record of
// every tenant arrives, in order, and the received copy verifies with a
// checkpoint taken at the end.
func TestDaemonStreamsToRsyslogThroughRestarts(t *testing.T) {
	rs := testenv.StartRsyslog(t, testenv.RsyslogOptions{})
	tok := testenv.NewToken(t)
	testConfig(t, tok)
	t.Setenv("HSMCA_EVENTS_EXPORT_SYSLOG", rs.Addr)
	t.Setenv("HSMCA_EVENTS_EXPORT_POLL_INTERVAL", "20ms")
	cfg, err := config.Load("")
	require.NoError(t, err)
	tenants := []string{"acme", "globex"}
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:load"})
	load := func(d *Daemon, n int, during func(done func() int)) {
		var wg sync.WaitGroup
		var written atomic.Int64
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					if _, _, err := d.Engine().CreateToken(ctx, tenants[(w+i)%2], []string{signer.RoleAuditor}, nil); err != nil {
						t.Error(err)
						return
					}
					written.Add(1)
					time.Sleep(2 * time.Millisecond)
				}
			}()
		}
		if during != nil {
			during(func() int { return int(written.Load()) })
		}
		wg.Wait()
	}
	waitUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			require.True(t, time.Now().Before(deadline), what)
			time.Sleep(20 * time.Millisecond)
		}
	}

	d, _ := startDaemon(t, cfg, nil)
	load(d, 100, func(written func() int) {
		waitUntil("a quarter of the load", func() bool { return written() >= 100 })
		rs.Kill()
		waitUntil("half of the load", func() bool { return written() >= 200 })
		rs.Start()
	})
	require.NoError(t, d.Shutdown(context.Background()))

	d, _ = startDaemon(t, cfg, nil)
	waitStatus(t, "http://"+d.Addr()+"/readyz", 200, 15*time.Second)
	load(d, 50, nil)
	cp, err := d.Engine().CheckpointEvents(ctx, "acme")
	require.NoError(t, err)
	want := map[string]uint64{"acme": cp.Seq, "globex": 0}
	evs, err := d.Engine().ListEvents(ctx, "globex", 0, 0)
	require.NoError(t, err)
	want["globex"] = evs[len(evs)-1].Seq

	var rep *signer.ExportReport
	lines := 0
	waitUntil("every record received", func() bool {
		x := signer.NewExportChecker([]signer.Checkpoint{*cp})
		all := rs.Lines()
		lines = len(all)
		for _, line := range all {
			if ev, err := eventexport.ParseSyslog(line); err == nil {
				x.Add(ev)
			}
		}
		rep = x.Report()
		for _, tr := range rep.Tenants {
			if tr.Broken || tr.Last < want[tr.Tenant] {
				return false
			}
		}
		return len(rep.Tenants) == 2
	})
	for _, tr := range rep.Tenants {
		assert.False(t, tr.Broken, "%s: %s", tr.Tenant, tr.Problem)
		assert.Equal(t, uint64(1), tr.First)
		assert.Equal(t, want[tr.Tenant], tr.Last)
	}
	assert.Equal(t, 1, rep.Tenants[0].Checkpoints)
	t.Logf("%d records received as %d messages (%d sent again) through an rsyslog kill and a daemon restart",
		want["acme"]+want["globex"], lines, rep.Duplicates)
}
