package eventexport_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/eventexport"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/metrics"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/redisstore"
)

func openStore(t *testing.T, backend string) store.Store {
	t.Helper()
	if backend == "redis" {
		rs := testenv.StartRedis(t)
		st, err := redisstore.Open(context.Background(), rs.URL(), redisstore.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		return st
	}
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// writeEvents appends n records to each tenant through the engine.
func writeEvents(t *testing.T, eng *signer.Core, n int, tenants ...string) {
	t.Helper()
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	for range n {
		for _, tn := range tenants {
			_, _, err := eng.CreateToken(ctx, tn, []string{signer.RoleAuditor}, nil)
			require.NoError(t, err)
		}
	}
}

func heads(t *testing.T, st store.Store, tenants ...string) map[string]uint64 {
	out := map[string]uint64{}
	for _, tn := range tenants {
		seq, _, err := st.(eventexport.EventHeader).EventHead(context.Background(), tn)
		require.NoError(t, err)
		out[tn] = seq
	}
	return out
}

// waitFor polls cond every 20ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return ""
	}
	require.NoError(t, err)
	return string(b)
}

// The file sink on both stores: every record once, in order; a restart
// resumes from the saved cursor; a line cut short by a crash is ended and
// the record written again whole; the lag metrics come back to 0.
func TestFileSinkResumesFromCursor(t *testing.T) {
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			st := openStore(t, backend)
			eng := signer.New(signer.Options{Store: st})
			defer eng.Close()
			path := filepath.Join(t.TempDir(), "events.jsonl")
			m := metrics.New("test")
			start := func() *eventexport.Exporter {
				fs, err := eventexport.NewFileSink(path)
				require.NoError(t, err)
				return eventexport.Start(eventexport.Options{Store: st, Metrics: m, Instance: "a", Poll: 20 * time.Millisecond, Batch: 7},
					[]eventexport.NamedSink{{Name: "archive", Sink: fs}})
			}
			complete := func(want map[string]uint64) func() bool {
				return func() bool {
					rep, err := signer.ReadExport(strings.NewReader(readFile(t, path)), nil)
					if err != nil {
						return false
					}
					for _, tr := range rep.Tenants {
						if tr.Last < want[tr.Tenant] {
							return false
						}
					}
					return len(rep.Tenants) == len(want)
				}
			}

			writeEvents(t, eng, 10, "acme", "globex")
			x := start()
			waitFor(t, 10*time.Second, "first records exported", complete(heads(t, st, "acme", "globex")))
			writeEvents(t, eng, 5, "acme")
			waitFor(t, 10*time.Second, "new records exported", complete(heads(t, st, "acme", "globex")))
			x.Stop()

			// Down: the backlog waits in the store; a torn line (a crash
			// mid-write) is left at the end of the file.
			writeEvents(t, eng, 20, "acme", "globex")
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteString(`{"tenant":"acme","seq":16,"ti`)
			require.NoError(t, err)
			require.NoError(t, f.Close())

			x = start()
			want := heads(t, st, "acme", "globex")
			waitFor(t, 10*time.Second, "backlog exported", complete(want))
			waitFor(t, 10*time.Second, "lag back to 0", func() bool {
				return gauge(t, m, "hsmca_event_export_lag_records") == 0
			})
			x.Stop()

			rep, err := signer.ReadExport(strings.NewReader(readFile(t, path)), nil)
			require.NoError(t, err)
			assert.Zero(t, rep.Duplicates, "the file sink writes each record once")
			assert.Equal(t, 1, rep.Unreadable, "the torn line")
			for _, tr := range rep.Tenants {
				assert.False(t, tr.Broken, "%s: %s", tr.Tenant, tr.Problem)
				assert.Equal(t, uint64(1), tr.First)
				assert.Equal(t, want[tr.Tenant], tr.Last)
			}
			assert.Equal(t, float64(want["acme"]+want["globex"]), counter(t, m, "hsmca_event_export_records_total"))
		})
	}
}

// Two exporters on one store (two replicas) share the sink's cursor: one
// exports at a time, the other takes over when it stops.
func TestSinkLeaseOneReplicaAtATime(t *testing.T) {
	st := openStore(t, "redis")
	eng := signer.New(signer.Options{Store: st})
	defer eng.Close()
	dir := t.TempDir()
	mk := func(instance string) (*eventexport.Exporter, string) {
		path := filepath.Join(dir, instance+".jsonl")
		fs, err := eventexport.NewFileSink(path)
		require.NoError(t, err)
		return eventexport.Start(eventexport.Options{Store: st, Instance: instance, Poll: 20 * time.Millisecond, Lease: 300 * time.Millisecond},
			[]eventexport.NamedSink{{Name: "shared", Sink: fs}}), path
	}
	writeEvents(t, eng, 5, "acme")
	a, pathA := mk("a")
	waitFor(t, 10*time.Second, "a exports", func() bool { return strings.Count(readFile(t, pathA), "\n") == 5 })
	b, pathB := mk("b")
	writeEvents(t, eng, 5, "acme")
	waitFor(t, 10*time.Second, "a exports more", func() bool { return strings.Count(readFile(t, pathA), "\n") == 10 })
	assert.Empty(t, readFile(t, pathB), "b waits while a holds the lease")
	a.Stop()
	writeEvents(t, eng, 5, "acme")
	waitFor(t, 10*time.Second, "b takes over from a's cursor", func() bool { return strings.Count(readFile(t, pathB), "\n") == 5 })
	b.Stop()
	assert.Contains(t, readFile(t, pathB), `"seq":11,`)
}

// rsyslog from Debian receives the stream over TCP, is killed and
// restarted while records are being written: every record arrives, in
// order per tenant (some twice: at least once), and the received copy
// verifies with a checkpoint signed at the end.
func TestSyslogToRsyslogSurvivesReceiverRestart(t *testing.T) {
	rs := testenv.StartRsyslog(t, testenv.RsyslogOptions{})
	tok := testenv.NewToken(t)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	st := openStore(t, "bolt")
	eng := signer.New(signer.Options{Store: st, HSM: h})
	defer eng.Close()
	m := metrics.New("test")
	sink := eventexport.NewSyslogSink(eventexport.SyslogConfig{Address: rs.Addr, Hostname: "hsmca-test", Settle: time.Second})
	x := eventexport.Start(eventexport.Options{Store: st, Metrics: m, Instance: "t", Poll: 20 * time.Millisecond},
		[]eventexport.NamedSink{{Name: "siem", Sink: sink}})
	defer x.Stop()

	const perWorker = 200
	tenants := []string{"acme", "globex", "initech"}
	var written atomic.Int64
	var wg sync.WaitGroup
	ctx := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:load"})
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				tn := tenants[(w+i)%len(tenants)]
				if _, _, err := eng.CreateToken(ctx, tn, []string{signer.RoleAuditor}, nil); err != nil {
					t.Error(err)
					return
				}
				written.Add(1)
				time.Sleep(5 * time.Millisecond) // a steady load, not one burst
			}
		}()
	}
	total := int64(6 * perWorker)
	waitFor(t, 30*time.Second, "a quarter of the load written, some of it delivered", func() bool {
		return written.Load() >= total/4 && counter(t, m, "hsmca_event_export_records_total") > 0
	})
	delivered := counter(t, m, "hsmca_event_export_records_total")
	received := len(rs.Lines())
	rs.Kill()
	killedAt := written.Load()
	waitFor(t, 30*time.Second, "more of the load written", func() bool { return written.Load() >= min(killedAt+total/4, total) })
	rs.Start()
	restartedAt := written.Load()
	wg.Wait()
	began := time.Now()
	cp, err := eng.CheckpointEvents(ctx, "acme")
	require.NoError(t, err)
	want := heads(t, st, tenants...)

	var rep *signer.ExportReport
	waitFor(t, 60*time.Second, "every record received", func() bool {
		x := signer.NewExportChecker([]signer.Checkpoint{*cp})
		for _, line := range rs.Lines() {
			ev, err := eventexport.ParseSyslog(line)
			if err != nil {
				continue // a line being written
			}
			x.Add(ev)
		}
		rep = x.Report()
		for _, tr := range rep.Tenants {
			if tr.Broken || tr.Last < want[tr.Tenant] {
				return false
			}
		}
		return len(rep.Tenants) == len(tenants)
	})
	caughtUp := time.Since(began)
	lines := rs.Lines()
	for _, line := range lines {
		_, err := eventexport.ParseSyslog(line)
		require.NoError(t, err, "%s", line)
	}
	records := 0
	for _, tr := range rep.Tenants {
		assert.False(t, tr.Broken, "%s: %s", tr.Tenant, tr.Problem)
		assert.Equal(t, uint64(1), tr.First, tr.Tenant)
		assert.Equal(t, want[tr.Tenant], tr.Last, tr.Tenant)
		records += tr.Records
	}
	assert.Equal(t, 1, rep.Tenants[0].Checkpoints, "acme's copy matches the checkpoint")
	assert.Positive(t, counter(t, m, "hsmca_event_export_errors_total"), "the loss of the receiver was seen")
	t.Logf("records %d (%d written before the kill, %d by the restart), %d received and %v settled before the kill, %d lines in all (%d sent again), caught up %s after the load",
		records, killedAt, restartedAt, received, delivered, len(lines), rep.Duplicates, caughtUp.Round(time.Millisecond))

	// The header and the chain fields as a SIEM sees them.
	first := string(lines[0])
	assert.Regexp(t, `^<110>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z hsmca-test hsmca - API_TOKEN_CREATE \[hsmca@32473 tenant="\w+" seq="\d+" time="[^"]+" prevHash="[0-9a-f]*" hash="[0-9a-f]{64}"\] \{`, first)
}

// TLS to rsyslog's GnuTLS driver, with a CA of the test's.
func TestSyslogOverTLSToRsyslog(t *testing.T) {
	dir := t.TempDir()
	ca := testpkiCA(t, dir)
	rs := testenv.StartRsyslog(t, testenv.RsyslogOptions{TLS: &testenv.RsyslogTLS{CAFile: ca.caFile, CertFile: ca.certFile, KeyFile: ca.keyFile}})
	st := openStore(t, "bolt")
	eng := signer.New(signer.Options{Store: st})
	defer eng.Close()
	writeEvents(t, eng, 20, "acme")
	sink := eventexport.NewSyslogSink(eventexport.SyslogConfig{Address: rs.Addr, TLS: ca.client, Settle: 200 * time.Millisecond})
	x := eventexport.Start(eventexport.Options{Store: st, Instance: "t", Poll: 20 * time.Millisecond},
		[]eventexport.NamedSink{{Name: "siem-tls", Sink: sink}})
	defer x.Stop()
	waitFor(t, 30*time.Second, "records received over TLS", func() bool { return len(rs.Lines()) >= 20 })
	xc := signer.NewExportChecker(nil)
	for _, line := range rs.Lines() {
		ev, err := eventexport.ParseSyslog(line)
		require.NoError(t, err)
		xc.Add(ev)
	}
	rep := xc.Report()
	require.Len(t, rep.Tenants, 1)
	assert.False(t, rep.Tenants[0].Broken, rep.Tenants[0].Problem)
	assert.Equal(t, uint64(20), rep.Tenants[0].Last)
}

func TestFormatSyslogEscapesAndRoundTrips(t *testing.T) {
	data := []byte(`{"id":"x","operation":"A_VERY_LONG_OPERATION_NAME_OF_MORE_THAN_32","outcome":"FAIL","resource":"line1\nline2 ] \" \\"}`)
	ev := store.Event{Tenant: "acme", Seq: 3, Time: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), PrevHash: "ab", Data: data}
	ev.Hash = store.ChainHash(ev.PrevHash, ev.Seq, ev.Time, ev.Data)
	msg := eventexport.FormatSyslog(ev, "host name", "hsmca")
	assert.True(t, strings.HasPrefix(string(msg), `<108>1 2026-01-02T03:04:05.123456Z hostname hsmca - A_VERY_LONG_OPERATION_NAME_OF_MO [hsmca@32473 tenant="acme" seq="3" time="2026-01-02T03:04:05.123456789Z" prevHash="ab" hash="`), string(msg))
	got, err := eventexport.ParseSyslog(msg)
	require.NoError(t, err)
	assert.Equal(t, ev.Hash, store.ChainHash(got.PrevHash, got.Seq, got.Time, got.Data))
	assert.Equal(t, fmt.Sprint(ev), fmt.Sprint(got))
}
