package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/config"
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
