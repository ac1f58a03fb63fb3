package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/testenv"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/keys"
	"github.com/hsmca/hsmca/store"
)

// logEvents is how many records writeLog puts in tenant acme's chain.
const logEvents = 6

// writeLog appends events through the engine to the configured store:
// logEvents for acme (token creations and failed key reads) and one for
// globex. The engine has no HSM, so the key reads fail, which is still an
// event.
func writeLog(t *testing.T) {
	t.Helper()
	cfg, err := config.Load("")
	require.NoError(t, err)
	ctx := context.Background()
	st, err := daemon.OpenStore(ctx, cfg)
	require.NoError(t, err)
	eng := signer.New(signer.Options{Store: st})
	keyAPI := keys.New(eng)
	cctx := signer.WithCaller(ctx, signer.Caller{Tenant: "acme", Principal: "ops:test"})
	for i := range logEvents {
		if i%2 == 0 {
			_, _, err := eng.CreateToken(cctx, "acme", []string{signer.RoleAuditor}, nil)
			require.NoError(t, err)
		} else {
			_, err := keyAPI.Get(cctx, "acme", fmt.Sprintf("missing-%d", i))
			require.Error(t, err)
		}
	}
	_, _, err = eng.CreateToken(cctx, "globex", []string{signer.RoleSigner}, nil)
	require.NoError(t, err)
	require.NoError(t, eng.Close())
	require.NoError(t, st.Close())
}

// tamperer edits acme's chain behind the store's back, the way someone
// with access to the bolt file or the Redis server could.
type tamperer interface {
	get(seq uint64) store.Event
	put(pos uint64, ev store.Event) // store ev at the free position pos
	del(pos uint64)
}

type boltTamper struct {
	t  *testing.T
	db *bolt.DB
}

func (b *boltTamper) bucket(tx *bolt.Tx) *bolt.Bucket {
	return tx.Bucket([]byte("tenants")).Bucket([]byte("acme")).Bucket([]byte("e"))
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func (b *boltTamper) get(seq uint64) store.Event {
	var ev store.Event
	require.NoError(b.t, b.db.View(func(tx *bolt.Tx) error {
		return json.Unmarshal(b.bucket(tx).Get(seqKey(seq)), &ev)
	}))
	return ev
}

func (b *boltTamper) put(pos uint64, ev store.Event) {
	raw, err := json.Marshal(ev)
	require.NoError(b.t, err)
	require.NoError(b.t, b.db.Update(func(tx *bolt.Tx) error { return b.bucket(tx).Put(seqKey(pos), raw) }))
}

func (b *boltTamper) del(pos uint64) {
	require.NoError(b.t, b.db.Update(func(tx *bolt.Tx) error { return b.bucket(tx).Delete(seqKey(pos)) }))
}

type redisTamper struct {
	t   *testing.T
	rdb *redis.Client
}

const redisEvents = "hsmca:{acme}:events"

func (r *redisTamper) member(pos uint64) string {
	vals, err := r.rdb.ZRangeByScore(context.Background(), redisEvents,
		&redis.ZRangeBy{Min: fmt.Sprint(pos), Max: fmt.Sprint(pos)}).Result()
	require.NoError(r.t, err)
	require.Len(r.t, vals, 1)
	return vals[0]
}

func (r *redisTamper) get(seq uint64) store.Event {
	var ev store.Event
	require.NoError(r.t, json.Unmarshal([]byte(r.member(seq)), &ev))
	return ev
}

func (r *redisTamper) put(pos uint64, ev store.Event) {
	raw, err := json.Marshal(ev)
	require.NoError(r.t, err)
	require.NoError(r.t, r.rdb.ZAdd(context.Background(), redisEvents, redis.Z{Score: float64(pos), Member: string(raw)}).Err())
}

func (r *redisTamper) del(pos uint64) {
	require.NoError(r.t, r.rdb.ZRem(context.Background(), redisEvents, r.member(pos)).Err())
}

// editPrincipal rewrites who did it in a record's data.
func editPrincipal(t *testing.T, ev store.Event) store.Event {
	var rec signer.EventRecord
	require.NoError(t, json.Unmarshal(ev.Data, &rec))
	rec.Principal = "ops:someone-else"
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	ev.Data = data
	return ev
}

func TestEventsVerify(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, tm tamperer)
		want   string // the BROKEN line for acme; empty for a clean log
	}{
		{"clean", func(*testing.T, tamperer) {}, ""},
		{"edited", func(t *testing.T, tm tamperer) {
			ev := editPrincipal(t, tm.get(3))
			tm.del(3)
			tm.put(3, ev)
		}, "tenant acme: BROKEN at record 3: record 3 was edited: its hash does not match its content"},
		{"edited and rehashed", func(t *testing.T, tm tamperer) {
			ev := editPrincipal(t, tm.get(3))
			ev.Hash = store.ChainHash(ev.PrevHash, ev.Seq, ev.Time, ev.Data)
			tm.del(3)
			tm.put(3, ev)
		}, "tenant acme: BROKEN at record 4: record 4 does not link to record 3: record 3 was rewritten"},
		{"deleted", func(t *testing.T, tm tamperer) {
			tm.del(4)
		}, "tenant acme: BROKEN at record 4: record 4 is missing: it was deleted"},
		{"newest deleted", func(t *testing.T, tm tamperer) {
			tm.del(logEvents)
		}, fmt.Sprintf("tenant acme: BROKEN at record %d: record %d is missing: the newest record was deleted", logEvents, logEvents)},
		{"reordered", func(t *testing.T, tm tamperer) {
			two, three := tm.get(2), tm.get(3)
			tm.del(2)
			tm.del(3)
			tm.put(2, three)
			tm.put(3, two)
		}, "tenant acme: BROKEN at record 2: record 2 is out of place: records were reordered"},
	}
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			tok := testenv.NewToken(t)
			var rs *testenv.Redis
			if backend == "redis" {
				rs = testenv.StartRedis(t)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					dir := isolate(t, tok)
					var tm tamperer
					if backend == "redis" {
						t.Setenv("HSMCA_STORE", "redis")
						t.Setenv("HSMCA_REDIS_URL", rs.URL())
						rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
						defer rdb.Close()
						require.NoError(t, rdb.FlushAll(context.Background()).Err())
						writeLog(t)
						tm = &redisTamper{t: t, rdb: rdb}
						c.tamper(t, tm)
					} else {
						writeLog(t)
						db, err := bolt.Open(filepath.Join(dir, "hsmca.db"), 0o600, nil)
						require.NoError(t, err)
						c.tamper(t, &boltTamper{t: t, db: db})
						require.NoError(t, db.Close())
					}

					code, stdout, stderr := cli("events", "verify")
					if c.want == "" {
						require.Equal(t, 0, code, stdout+stderr)
						assert.Contains(t, stdout, fmt.Sprintf("tenant acme: %d records, chain intact; head record %d, hash ", logEvents, logEvents))
						assert.Contains(t, stdout, "tenant globex: 1 records, chain intact")
						assert.Contains(t, stdout, "verified 7 records in 2 tenant chains: all intact")
						return
					}
					require.Equal(t, 1, code, stdout+stderr)
					assert.Contains(t, stdout, c.want)
					assert.Contains(t, stdout, "tenant globex: 1 records, chain intact", "other tenants are still checked")
					assert.Contains(t, stdout, "1 of 2 tenant chains BROKEN")

					// One tenant alone: globex is intact, acme is not.
					code, stdout, _ = cli("events", "verify", "--tenant", "globex")
					assert.Equal(t, 0, code)
					assert.NotContains(t, stdout, "acme")
					code, stdout, _ = cli("events", "verify", "--tenant", "acme")
					assert.Equal(t, 1, code)
					assert.Equal(t, 1, strings.Count(stdout, "BROKEN at"))
				})
			}
		})
	}
}

func TestEventsVerifyUsage(t *testing.T) {
	tok := testenv.NewToken(t)
	isolate(t, tok)
	code, _, stderr := cli("events", "verify", "--tenant", "a", "--all")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "not both")
	code, _, stderr = cli("events", "verify", "--tenant", "bad name")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "not a tenant name")
	code, _, stderr = cli("events", "verify")
	assert.Equal(t, 2, code, "no store file: nothing is created")
	assert.Contains(t, stderr, "no store at")
}
