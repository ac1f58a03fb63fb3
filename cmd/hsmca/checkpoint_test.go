package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// checkpointLog writes logEvents records to acme's chain and signs its
// head (the checkpoint's own record, logEvents+1), then adds extra
// records after it. The checkpoint is saved to dir/cp.json.
func checkpointLog(t *testing.T, tok *testenv.Token, dir string, extra int) signer.Checkpoint {
	t.Helper()
	cfg, err := config.Load("")
	require.NoError(t, err)
	ctx := context.Background()
	st, err := daemon.OpenStore(ctx, cfg)
	require.NoError(t, err)
	h, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	require.NoError(t, err)
	eng := signer.New(signer.Options{Store: st, HSM: h})
	cctx := signer.WithCaller(ctx, signer.Caller{Principal: "ops:test"})
	for range logEvents {
		_, _, err := eng.CreateToken(cctx, "acme", []string{signer.RoleAuditor}, nil)
		require.NoError(t, err)
	}
	cp, err := eng.CheckpointEvents(cctx, "acme")
	require.NoError(t, err)
	require.Equal(t, uint64(logEvents+1), cp.Seq)
	for range extra {
		_, _, err := eng.CreateToken(cctx, "acme", []string{signer.RoleAuditor}, nil)
		require.NoError(t, err)
	}
	require.NoError(t, eng.Close())
	require.NoError(t, st.Close())
	raw, err := json.Marshal(cp)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cp.json"), raw, 0o600))
	return *cp
}

// headTamper rewrites a chain head, as whoever rewrites the newest
// records would, so that the chain's own check passes.
type headTamper interface {
	tamperer
	setHead(seq uint64, hash string)
}

func (b *boltTamper) setHead(seq uint64, hash string) {
	raw, _ := json.Marshal(map[string]any{"seq": seq, "hash": hash})
	require.NoError(b.t, b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("tenants")).Bucket([]byte("acme")).Put([]byte("h"), raw)
	}))
}

func (r *redisTamper) setHead(seq uint64, hash string) {
	raw, _ := json.Marshal(map[string]any{"seq": seq, "hash": hash})
	require.NoError(r.t, r.rdb.Set(context.Background(), "hsmca:{acme}:evhead", raw, 0).Err())
}

// rewriteFrom rewrites records from..last (a new principal in the first,
// every hash recomputed and relinked) and the head: the chain verifies.
func rewriteFrom(t *testing.T, tm headTamper, from, last uint64) {
	prev := ""
	for seq := from; seq <= last; seq++ {
		ev := tm.get(seq)
		if seq == from {
			ev = editPrincipal(t, ev)
		} else {
			ev.PrevHash = prev
		}
		ev.Hash = store.ChainHash(ev.PrevHash, ev.Seq, ev.Time, ev.Data)
		prev = ev.Hash
		tm.del(seq)
		tm.put(seq, ev)
	}
	tm.setHead(last, prev)
}

func TestEventsVerifyCheckpoint(t *testing.T) {
	cases := []struct {
		name  string
		extra int
		from  uint64 // first rewritten record; 0: none
		want  string
	}{
		{"clean", 2, 0, ""},
		// The newest record, the checkpoint's own, rewritten with the head.
		{"newest record and head rewritten", 0, logEvents + 1,
			fmt.Sprintf("tenant acme: BROKEN at record %d: record %d contradicts the checkpoint", logEvents+1, logEvents+1)},
		// Records before the checkpoint rewritten, every later one relinked.
		{"tail rewritten through the checkpoint", 2, 3,
			fmt.Sprintf("tenant acme: BROKEN at record %d: record %d contradicts the checkpoint", logEvents+1, logEvents+1)},
		// Only records after the checkpoint: no checkpoint can see it.
		{"records after the checkpoint rewritten", 2, logEvents + 2, ""},
	}
	tok := testenv.NewToken(t)
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			var rs *testenv.Redis
			if backend == "redis" {
				rs = testenv.StartRedis(t)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					dir := isolate(t, tok)
					var rdb *redis.Client
					if backend == "redis" {
						t.Setenv("HSMCA_STORE", "redis")
						t.Setenv("HSMCA_REDIS_URL", rs.URL())
						rdb = redis.NewClient(&redis.Options{Addr: rs.Addr})
						defer rdb.Close()
						require.NoError(t, rdb.FlushAll(context.Background()).Err())
					}
					cp := checkpointLog(t, tok, dir, c.extra)
					last := uint64(logEvents + 1 + c.extra)
					if c.from > 0 {
						if backend == "redis" {
							rewriteFrom(t, &redisTamper{t: t, rdb: rdb}, c.from, last)
						} else {
							db, err := bolt.Open(filepath.Join(dir, "hsmca.db"), 0o600, nil)
							require.NoError(t, err)
							rewriteFrom(t, &boltTamper{t: t, db: db}, c.from, last)
							require.NoError(t, db.Close())
						}
					}
					// The chain's own check cannot tell: links and head agree.
					code, stdout, stderr := cli("events", "verify", "--tenant", "acme")
					require.Equal(t, 0, code, stdout+stderr)

					cpFile := filepath.Join(dir, "cp.json")
					code, stdout, stderr = cli("events", "verify", "--checkpoint", cpFile, "--key-id", cp.KeyID)
					assert.Contains(t, stdout, "1 checkpoints, signatures valid, signed by key "+cp.KeyID)
					if c.want == "" {
						require.Equal(t, 0, code, stdout+stderr)
						assert.Contains(t, stdout, fmt.Sprintf("tenant acme: chain intact through record %d and extends 1 checkpoints (the newest at record %d)", last, cp.Seq))
					} else {
						require.Equal(t, 1, code, stdout+stderr)
						assert.Contains(t, stdout, c.want)
						assert.Contains(t, stdout, "1 of 1 tenant chains BROKEN")
					}

					// The export, checked without the store: the checkpoint
					// catches the same rewrite in the copy.
					exp := filepath.Join(dir, "acme.jsonl")
					code, _, stderr = cli("events", "export", "--tenant", "acme", "--from", "1", "--out", exp)
					require.Equal(t, 0, code, stderr)
					assert.Contains(t, stderr, fmt.Sprintf("exported %d records of tenant acme", last))
					t.Setenv("HSMCA_STORE", "nonsense") // no store is opened
					code, stdout, stderr = cli("events", "verify", "--export", exp, "--checkpoint", cpFile)
					if c.want == "" {
						require.Equal(t, 0, code, stdout+stderr)
						assert.Contains(t, stdout, fmt.Sprintf("tenant acme: records 1 to %d, chain intact; 1 checkpoints matched", last))
					} else {
						require.Equal(t, 1, code, stdout+stderr)
						assert.Contains(t, stdout, fmt.Sprintf("tenant acme: BROKEN at record %d: record %d contradicts the checkpoint", cp.Seq, cp.Seq))
					}
				})
			}
		})
	}
}

func TestEventsExportFromAndTamperedCopy(t *testing.T) {
	tok := testenv.NewToken(t)
	dir := isolate(t, tok)
	cp := checkpointLog(t, tok, dir, 3)
	exp := filepath.Join(dir, "tail.jsonl")
	code, _, stderr := cli("events", "export", "--tenant", "acme", "--from", "5", "--out", exp)
	require.Equal(t, 0, code, stderr)
	raw, err := os.ReadFile(exp)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Len(t, lines, logEvents+4-4)
	// The format: data last, its bytes the hashed ones.
	var ev store.Event
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &ev))
	assert.Equal(t, uint64(5), ev.Seq)
	i := strings.Index(lines[0], `"data":`)
	require.Positive(t, i)
	data := lines[0][i+len(`"data":`) : len(lines[0])-1]
	assert.Equal(t, ev.Hash, store.ChainHash(ev.PrevHash, ev.Seq, ev.Time, []byte(data)))

	cpFile := filepath.Join(dir, "cp.json")
	code, stdout, _ := cli("events", "verify", "--export", exp, "--checkpoint", cpFile)
	require.Equal(t, 0, code, stdout)
	assert.Contains(t, stdout, fmt.Sprintf("tenant acme: records 5 to %d, chain intact; 1 checkpoints matched", logEvents+4))

	// A line sent twice (at-least-once) is fine; one edited or dropped is not.
	dup := append(append([]string{}, lines...), lines[len(lines)-2:]...)
	require.NoError(t, os.WriteFile(exp, []byte(strings.Join(dup, "\n")+"\n"), 0o600))
	code, stdout, _ = cli("events", "verify", "--export", exp, "--checkpoint", cpFile)
	require.Equal(t, 0, code, stdout)
	assert.Contains(t, stdout, "2 records came more than once")

	edited := append([]string{}, lines...)
	edited[1] = strings.Replace(edited[1], `"principal":"ops:test"`, `"principal":"ops:other"`, 1)
	require.NotEqual(t, lines[1], edited[1])
	require.NoError(t, os.WriteFile(exp, []byte(strings.Join(edited, "\n")+"\n"), 0o600))
	code, stdout, _ = cli("events", "verify", "--export", exp, "--checkpoint", cpFile)
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "BROKEN at record 6: record 6 was edited")

	cut := append(append([]string{}, lines[:1]...), lines[2:]...)
	require.NoError(t, os.WriteFile(exp, []byte(strings.Join(cut, "\n")+"\n"), 0o600))
	code, stdout, _ = cli("events", "verify", "--export", exp)
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "BROKEN at record 6: record 6 is missing")

	// Cut before the checkpoint: the copy ends too early.
	require.NoError(t, os.WriteFile(exp, []byte(strings.Join(lines[:1], "\n")+"\n"), 0o600))
	code, stdout, _ = cli("events", "verify", "--export", exp, "--checkpoint", cpFile)
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, fmt.Sprintf("the export ends at record 5, before the checkpoint at %d", cp.Seq))

	// A forged checkpoint is refused before anything is read.
	forged := cp
	forged.Hash = strings.Repeat("0", 64)
	raw, _ = json.Marshal(forged)
	require.NoError(t, os.WriteFile(cpFile, raw, 0o600))
	code, _, stderr = cli("events", "verify", "--export", exp, "--checkpoint", cpFile)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "checkpoint signature does not verify")
}
