// Package redisstore is the store daemon replicas share: Redis through
// go-redis, one Lua script per write, on one server, a master watched by
// Sentinel, or Redis Cluster (see Conn).
//
// Keys (P is Options.KeyPrefix, T the tenant, K the kind):
//
//	P:{T}:rec:K:<id>   hash: doc (Record JSON), ver, seq, uniq (JSON array),
//	                   ix:<field> (index.go)
//	P:{T}:uniq:K       hash: unique key -> id
//	P:{T}:seq:K        sorted set: id scored by seq (creation order)
//	P:{T}:ctr:K        last seq handed out
//	P:{T}:ix:K:<field> sorted set, all scores 0: one member per record,
//	                   storekit.EntryKey(value, seq) + id (index.go)
//	P:{T}:quota        hash: resource -> usage
//	P:{T}:intents      hash: intent id -> Intent JSON
//	P:{T}:events       sorted set: Event JSON scored by seq
//	P:{T}:evhead       JSON {seq, hash} of the last event
//	P:{:platform}:intent-tenants  set of tenants that have had intents
//	P:{:platform}:event-tenants   set of tenants that have had events
//	P:{:platform}:ixready         hash: K:<field> -> 1 for each complete index
//	P:throttle:<key>   a rate limiter's state
//
// Every key of a tenant carries the hash tag {T}, so a tenant lives in one
// cluster slot and a script can check and write all of it atomically. The
// keys of no tenant carry {:platform} (no tenant name has a ':'), so no
// script or transaction mixes them with a tenant's: where an operation
// needs both it takes two steps, ordered so that dying between them leaves
// nothing the reconciler cannot settle (PutIntent, AppendEvents). On a
// cluster the tenants spread over the masters by their slots; what must
// see all of them (index building) scans every master.
//
// Intents are global in the store contract but kept per tenant here: the
// script that commits a record must delete the record's intent in the same
// atomic step, which on a cluster it can only do for a key in the tenant's
// slot. P:{:platform}:intent-tenants lets ListIntents and DeleteIntent
// (which get no tenant) find them; PutIntent adds the tenant before it
// writes the intent so an intent is never invisible, and tenants are never
// removed from the set (a removal could race a concurrent PutIntent).
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// Options tune Open. Zero values take the defaults; a timeout given in the
// URL (dial_timeout=, read_timeout=, write_timeout=) is used when the
// option is zero.
type Options struct {
	// DialTimeout, ReadTimeout and WriteTimeout default to 500ms, so that a
	// dead server fails a request in well under a second.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize defaults to go-redis' default (10 per GOMAXPROCS; per node
	// on a cluster).
	PoolSize int
	// KeyPrefix namespaces every key (default "hsmca"); it must not
	// contain '{' or '}'.
	KeyPrefix string
	// Indexes are the secondary indexes to keep (see store.Query); Open
	// builds missing ones before it returns.
	Indexes []store.Index
	// WaitReplicas is how many replicas must have a write before the
	// store acknowledges it (WAIT, sent on the write's connection right
	// after it). Zero: in Sentinel and Cluster modes when there are
	// replicas, every online replica of the write's master (at least
	// one; see pickWait), none otherwise; NoWait: never wait.
	WaitReplicas int
	// WaitTimeout bounds the wait (default 500ms); a write that fewer
	// replicas than WaitReplicas confirm within it fails with
	// store.ErrUnavailable, and may or may not survive a failover. The
	// client's read timeout grows by it while waiting is possible.
	WaitTimeout time.Duration
}

// NoWait as Options.WaitReplicas turns waiting for replicas off.
const NoWait = -1

const defaultTimeout = 500 * time.Millisecond

// Store is a store.Store on Redis.
type Store struct {
	rdb redis.UniversalClient
	// cluster is rdb in Cluster mode (nil otherwise): what needs every
	// master (SCAN, PING, the topology) goes through it.
	cluster *redis.ClusterClient
	conn    Conn
	prefix  string
	// appendMu serialises the appends of one replica per tenant stripe, so
	// that the compare-and-set of AppendEvents only ever races other
	// replicas.
	appendMu [64]sync.Mutex
	// appendHead holds, per stripe and under its appendMu, each tenant's
	// chain head as this replica last read or wrote it (the stored JSON,
	// "" for no head): an append links its events to it and the append
	// script writes them only if the stored head is still that one.
	appendHead [64]map[string]string
	dec        *storekit.DecodeCache
	ix         storekit.Declared
	// wait is how many replicas must confirm a write (0: none), within
	// waitTimeout.
	wait        int
	waitTimeout time.Duration
	// online, when writes wait for every online replica (the default in
	// Sentinel and Cluster modes), counts each master's.
	online *onlineReplicas
	// trips groups the round trips of concurrent calls (nil on a
	// cluster: see roundTrips).
	trips *roundTrips
}

var _ store.Store = (*Store)(nil)

// Open connects to the standalone Redis at url (redis://[user:password@]
// host:port/db or rediss://...) and checks that it answers.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	return OpenConn(ctx, Conn{Mode: Standalone, URL: url}, opts)
}

// OpenConn connects to Redis in any mode (see Conn), checks that every
// master answers and builds missing indexes.
func OpenConn(ctx context.Context, c Conn, opts Options) (*Store, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = "hsmca"
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("%w: key prefix %q contains a brace", store.ErrInvalid, prefix)
	}
	ix, err := storekit.Declare(opts.Indexes)
	if err != nil {
		return nil, err
	}
	rdb, err := newClient(c, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{rdb: rdb, conn: c, prefix: prefix, dec: storekit.NewDecodeCache(), ix: ix}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		s.cluster = cc
		cc.AddHook(reloadHook{cc})
	} else {
		s.trips = &roundTrips{rdb: rdb, wait: func(ctx context.Context) (*redis.Cmd, func() error) {
			return s.waitCmd(ctx, rdb)
		}}
	}
	if err := s.Ping(ctx); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("redis store %s: %w", c, err)
	}
	if err := s.pickWait(ctx, opts); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("redis store %s: %w", c, err)
	}
	if err := s.syncIndexes(ctx); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("redis store %s: indexes: %w", c, err)
	}
	return s, nil
}

// Backend names the implementation.
func (s *Store) Backend() string { return "redis" }

// Mode is how the store reaches Redis.
func (s *Store) Mode() Mode { return s.conn.mode() }

// Close closes the connection pool.
func (s *Store) Close() error {
	s.online.stop()
	return s.rdb.Close()
}

// Ping sends PING; on a cluster, to every master (each serves a share of
// the tenants).
func (s *Store) Ping(ctx context.Context) error {
	if s.cluster != nil {
		return wrap(s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		}))
	}
	return wrap(s.rdb.Ping(ctx).Err())
}

// reloadHook has the cluster client learn the topology again after a
// command failed for want of a node: go-redis otherwise keeps sending a
// dead master's slots to it until its periodic reload, while the cluster
// has promoted a replica within seconds.
type reloadHook struct{ c *redis.ClusterClient }

func (h reloadHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.after(err)
		return err
	}
}

func (h reloadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.after(err)
		return err
	}
}

func (h reloadHook) after(err error) {
	if err != nil && errors.Is(wrap(err), store.ErrUnavailable) {
		// Asynchronous, and coalesced by go-redis.
		h.c.ReloadState(context.Background())
	}
}

// wrap classifies an error of go-redis: an error reply from the server is
// returned as is (it is a bug or a corrupt key, not an outage), except for
// the replies of a server that cannot serve right now; everything else
// (dial, timeout, closed connection or pool) is store.ErrUnavailable. A
// caller's cancellation stays a cancellation.
func wrap(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !transientReply(rerr.Error()) {
		return fmt.Errorf("redis store: %w", err)
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// transientReply tells the error replies of a server that cannot serve
// now (loading, a replica, a failover or a slot migration in progress)
// from those of a bad request.
func transientReply(msg string) bool {
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS", "MOVED ", "ASK "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	// A script touching a key of a slot being migrated away.
	return strings.Contains(msg, "non local key")
}

// Key names. Tenants and kinds are validated to contain no ':', '{' or
// '}', so the tag and the segments are unambiguous.
func (s *Store) tkey(tenant, rest string) string {
	return s.prefix + ":{" + tenant + "}:" + rest
}
func (s *Store) recKey(tenant, kind, id string) string { return s.tkey(tenant, "rec:"+kind+":"+id) }
func (s *Store) uniqKey(tenant, kind string) string    { return s.tkey(tenant, "uniq:"+kind) }
func (s *Store) seqKey(tenant, kind string) string     { return s.tkey(tenant, "seq:"+kind) }
func (s *Store) ctrKey(tenant, kind string) string     { return s.tkey(tenant, "ctr:"+kind) }
func (s *Store) quotaKey(tenant string) string         { return s.tkey(tenant, "quota") }
func (s *Store) intentsKey(tenant string) string       { return s.tkey(tenant, "intents") }
func (s *Store) eventsKey(tenant string) string        { return s.tkey(tenant, "events") }
func (s *Store) headKey(tenant string) string          { return s.tkey(tenant, "evhead") }

// platformTag is the hash tag of the keys that belong to no tenant: a
// tenant name cannot contain ':', so no tenant's keys share it, and the
// platform keys share one slot with each other only.
const platformTag = "{:platform}"

func (s *Store) pkey(rest string) string     { return s.prefix + ":" + platformTag + ":" + rest }
func (s *Store) intentTenantsKey() string    { return s.pkey("intent-tenants") }
func (s *Store) eventTenantsKey() string     { return s.pkey("event-tenants") }
func (s *Store) readyKey() string            { return s.pkey("ixready") }
func (s *Store) oldIntentTenantsKey() string { return s.prefix + ":intent-tenants" }
func (s *Store) oldEventTenantsKey() string  { return s.prefix + ":event-tenants" }

// noRetry is a command go-redis must not send again after a failure: a
// write whose reply was lost may have been applied, and running it twice
// would answer a spurious ErrExists or conflict, or count a request
// twice. (The cluster client retries timeouts and dropped connections
// within its redirect budget whatever MaxRetries says; it still follows
// MOVED and ASK, and a READONLY reply, which means nothing was written.)
type noRetry struct{ *redis.Cmd }

func (noRetry) NoRetry() bool { return true }

// write sends the commands of one acknowledged write in one round trip
// (one per master when they span a cluster's slots: go-redis splits the
// pipeline), each sent once (noRetry), in a pipeline with concurrent
// calls' commands when another round trip is in flight (roundTrips).
// It is the one way by which a
// write the store acknowledges reaches Redis, so that waiting for replicas to have it (WAIT, on the
// same connection as the write) belongs here.
func (s *Store) write(ctx context.Context, cmds ...*redis.Cmd) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.wait > 0 {
		return s.writeWait(ctx, cmds)
	}
	if s.trips != nil {
		cs := make([]redis.Cmder, len(cmds))
		for i, c := range cmds {
			cs[i] = noRetry{c}
		}
		s.trips.do(ctx, cs...)
		return firstErr(cmds)
	}
	if len(cmds) == 1 {
		_ = s.rdb.Process(ctx, noRetry{cmds[0]})
		return cmds[0].Err()
	}
	pipe := s.rdb.Pipeline()
	for _, c := range cmds {
		_ = pipe.Process(ctx, noRetry{c})
	}
	_, _ = pipe.Exec(ctx)
	return firstErr(cmds)
}

// firstErr is the first of cmds' errors.
func firstErr(cmds []*redis.Cmd) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return err
		}
	}
	return nil
}

// slotMoveWait bounds how long a write refused because its slot is
// migrating (TRYAGAIN: its keys split between two nodes, or new keys in a
// slot being imported; nothing was written) is sent again before it fails
// as unavailable.
const slotMoveWait = time.Second

// slotPause is a short random wait before trying a write again.
func slotPause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(rand.IntN(20)+5) * time.Millisecond):
		return nil
	}
}

// runScript runs a write script by its hash (by its source when the
// server lacks it) through write, and turns its reply code into an error.
func (s *Store) runScript(ctx context.Context, sc *script, keys []string, args ...any) ([]any, error) {
	var cmd *redis.Cmd
	var until time.Time
	var err error
	for {
		cmd = sc.cmd(ctx, true, keys, args)
		err = s.write(ctx, cmd)
		if isNoScript(err) {
			cmd = sc.cmd(ctx, false, keys, args)
			err = s.write(ctx, cmd)
		}
		if err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
			break
		}
		if until.IsZero() {
			until = time.Now().Add(slotMoveWait)
		} else if time.Now().After(until) {
			break
		}
		if err := slotPause(ctx); err != nil {
			return nil, err
		}
	}
	v, cerr := cmd.Result()
	if cerr != nil {
		return nil, wrap(cerr)
	}
	reply, ok := v.([]any)
	if !ok || len(reply) == 0 {
		return nil, fmt.Errorf("redis store: unexpected script reply %v", v)
	}
	if err != nil && replyCode(reply) == "OK" {
		// Written, but not confirmed by enough replicas. (A refusal
		// wrote nothing: the scripts check before they write.)
		return nil, wrap(err)
	}
	return reply, nil
}

func replyCode(reply []any) string {
	c, _ := reply[0].(string)
	return c
}

func replyDetail(reply []any) string {
	if len(reply) < 2 {
		return ""
	}
	return fmt.Sprint(reply[1])
}

// docNoSeq is a Record without its seq: the create script prepends the seq
// it allocates, so the stored doc is the complete Record JSON.
type docNoSeq struct {
	Kind    string            `json:"kind"`
	Tenant  string            `json:"tenant"`
	ID      string            `json:"id"`
	Unique  []string          `json:"unique,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
	Version uint64            `json:"version"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
	// Data is the record's data in stored form (storekit.NormalizeJSON):
	// marshal appends it last as it is, without encoding/json scanning it
	// once more (a certificate's record is a few kilobytes).
	Data json.RawMessage `json:"-"`
}

// marshal is the doc's JSON: the same object encoding/json would write,
// with "data" last.
func (d *docNoSeq) marshal() ([]byte, error) {
	head, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	if len(d.Data) == 0 || head[len(head)-1] != '}' {
		return nil, fmt.Errorf("redis store: record data missing")
	}
	out := make([]byte, 0, len(head)+len(d.Data)+8)
	out = append(out, head[:len(head)-1]...)
	out = append(out, `,"data":`...)
	out = append(out, d.Data...)
	return append(out, '}'), nil
}

func uniqJSON(uniq []string) string {
	if len(uniq) == 0 {
		return "[]" // never null: the scripts iterate it
	}
	b, _ := json.Marshal(uniq)
	return string(b)
}

func decodeDoc(doc []byte) (*store.Record, error) {
	var r store.Record
	if err := json.Unmarshal(doc, &r); err != nil {
		return nil, fmt.Errorf("redis store: corrupt record: %w", err)
	}
	return &r, nil
}

func decodeRecord(doc string) (*store.Record, error) {
	var r store.Record
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		return nil, fmt.Errorf("redis store: corrupt record: %w", err)
	}
	return &r, nil
}

// Create inserts rec; see store.Store.
func (s *Store) Create(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	data, uniq, err := storekit.CheckRecord(rec)
	if err != nil {
		return err
	}
	if err := storekit.CheckOpts(opts, true); err != nil {
		return err
	}
	guard := opts.Guard
	if err := s.checkWriteGuard(rec.Tenant, guard); err != nil {
		return err
	}
	var event json.RawMessage
	if opts.Event != nil {
		norm, err := storekit.NormalizeEvents(rec.Tenant, []json.RawMessage{opts.Event})
		if err != nil {
			return err
		}
		event = norm[0]
	}
	now := storekit.Now()
	d := docNoSeq{Kind: rec.Kind, Tenant: rec.Tenant, ID: rec.ID, Unique: uniq,
		Fields: rec.Fields, Data: data, Version: 1, Created: now, Updated: now}
	doc, err := d.marshal()
	if err != nil {
		return err
	}
	res, limit := "", int64(0)
	if opts.Quota != nil {
		res, limit = opts.Quota.Resource, opts.Quota.Limit
	}
	t, k := rec.Tenant, rec.Kind
	keys := []string{s.recKey(t, k, rec.ID), s.uniqKey(t, k), s.seqKey(t, k), s.ctrKey(t, k), s.quotaKey(t), s.intentsKey(t)}
	args := []any{rec.ID, string(doc), uniqJSON(uniq), res, limit, opts.Intent}
	keys, args = s.indexEntries(keys, args, rec)
	for _, u := range uniq {
		args = append(args, u)
	}
	var reply []any
	switch {
	case event != nil:
		reply, err = s.createWithEvent(ctx, t, guard, keys, args, event)
	case guard != nil:
		gk, ga := s.guardArgs(t, guard)
		reply, err = s.runScript(ctx, createGuardedScript, append(gk, keys...), append(ga, args...)...)
	default:
		reply, err = s.runScript(ctx, createScript, keys, args...)
	}
	if err != nil {
		return err
	}
	switch replyCode(reply) {
	case "OK":
	case "GUARD":
		return storekit.GuardFailed(guard)
	case "EXISTS":
		if d := replyDetail(reply); d != "id" {
			return fmt.Errorf("%w: %s %s unique key %q", store.ErrExists, k, t, d)
		}
		return fmt.Errorf("%w: %s %s/%s", store.ErrExists, k, t, rec.ID)
	case "QUOTA":
		return fmt.Errorf("%w: %s %s: %s of %d", store.ErrQuotaExceeded, t, res, replyDetail(reply), limit)
	default:
		return fmt.Errorf("redis store: unexpected create reply %v", reply)
	}
	seq, ok := reply[1].(int64)
	if !ok {
		return fmt.Errorf("redis store: unexpected create reply %v", reply)
	}
	rec.Unique, rec.Data = uniq, data
	rec.Seq, rec.Version, rec.Created, rec.Updated = uint64(seq), 1, now, now
	return nil
}

// Get returns one record.
func (s *Store) Get(ctx context.Context, kind, tenant, id string) (*store.Record, error) {
	if err := storekit.CheckRef(kind, tenant, id); err != nil {
		return nil, err
	}
	doc, err := s.rdb.HGet(ctx, s.recKey(tenant, kind, id), "doc").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s %s/%s", store.ErrNotFound, kind, tenant, id)
	}
	if err != nil {
		return nil, wrap(err)
	}
	return s.dec.Decode(kind+"\x00"+tenant+"\x00"+id, doc, decodeDoc)
}

// GetByUnique returns the record holding a unique key.
func (s *Store) GetByUnique(ctx context.Context, kind, tenant, key string) (*store.Record, error) {
	if err := storekit.CheckRef(kind, tenant, key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// One round trip: every API request looks its token up this way.
	cmd := getByUniqueScript.Run(ctx, s.rdb, []string{s.uniqKey(tenant, kind)}, key, s.recKey(tenant, kind, ""))
	if nonLocal(cmd.Err()) {
		return s.getByUniqueInTwo(ctx, kind, tenant, key)
	}
	return s.uniqueAnswer(ctx, kind, tenant, key, cmd)
}

// nonLocal is the refusal of a script that read a key of a slot being
// migrated, gone from the node already (see getByUniqueScript).
func nonLocal(err error) bool { return err != nil && strings.Contains(err.Error(), "non local key") }

// getByUniqueInTwo is GetByUnique in two commands, each redirected on its
// own while the tenant's slot migrates.
func (s *Store) getByUniqueInTwo(ctx context.Context, kind, tenant, key string) (*store.Record, error) {
	id, err := s.rdb.HGet(ctx, s.uniqKey(tenant, kind), key).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s %s unique key %q", store.ErrNotFound, kind, tenant, key)
	}
	if err != nil {
		return nil, wrap(err)
	}
	rec, err := s.Get(ctx, kind, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s %s unique key %q", store.ErrNotFound, kind, tenant, key)
	}
	return rec, err
}

// uniqueAnswer turns getByUniqueScript's reply into the record.
func (s *Store) uniqueAnswer(ctx context.Context, kind, tenant, key string, cmd *redis.Cmd) (*store.Record, error) {
	v, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s %s unique key %q", store.ErrNotFound, kind, tenant, key)
	}
	if err != nil {
		return nil, wrap(err)
	}
	switch v := v.(type) {
	case string:
		// The same record may be cached under its id by Get: the key is
		// the unique key's, so the two never mix.
		return s.dec.Decode(kind+"\x00"+tenant+"\x01"+key, []byte(v), decodeDoc)
	case []any:
		// The key names a record the node does not have: gone, or (a
		// slot migrating) moved on already; Get finds it if it is.
		if id, ok := v[0].(string); ok && len(v) == 1 {
			rec, err := s.Get(ctx, kind, tenant, id)
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("%w: %s %s unique key %q", store.ErrNotFound, kind, tenant, key)
			}
			return rec, err
		}
	}
	return nil, fmt.Errorf("redis store: unexpected unique-key reply %v", v)
}

// GetByUniqueThrottled sends the unique-key lookup and the rate-limit
// count in one pipeline: one round trip instead of two for the credential
// check of every request. When the server has lost a script (a restart,
// SCRIPT FLUSH), that part is sent again through the call that loads it.
func (s *Store) GetByUniqueThrottled(ctx context.Context, kind, tenant, key string, t store.ThrottleRequest) (*store.Record, store.ThrottleResult, error) {
	if err := storekit.CheckRef(kind, tenant, key); err != nil {
		return nil, store.ThrottleResult{}, err
	}
	if err := store.CheckThrottle(t.Key, t.Rate, t.Burst); err != nil {
		return nil, store.ThrottleResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, store.ThrottleResult{}, err
	}
	// A plain pipeline: on a cluster the two commands may go to two
	// masters, and go-redis splits it.
	get := getByUniqueScript.cmd(ctx, true, []string{s.uniqKey(tenant, kind)}, []any{key, s.recKey(tenant, kind, "")})
	thr := throttleScript.cmd(ctx, true, []string{s.throttleKey(t.Key)}, []any{throttleInterval(t.Rate), t.Burst})
	if s.trips != nil {
		s.trips.do(ctx, get, noRetry{thr})
	} else {
		pipe := s.rdb.Pipeline()
		_ = pipe.Process(ctx, get)
		_ = pipe.Process(ctx, noRetry{thr})
		_, _ = pipe.Exec(ctx)
	}
	var tr store.ThrottleResult
	if isNoScript(thr.Err()) {
		// Only the part the server could not run is sent again (Run
		// loads the script), so the request is counted once.
		tr.Wait, tr.Err = s.Throttle(ctx, t.Key, t.Rate, t.Burst)
	} else if v, err := thr.Int64(); err != nil {
		tr.Err = wrap(err)
	} else {
		tr.Wait = time.Duration(v) * time.Microsecond
	}
	if isNoScript(get.Err()) {
		rec, err := s.GetByUnique(ctx, kind, tenant, key)
		return rec, tr, err
	}
	if nonLocal(get.Err()) {
		rec, err := s.getByUniqueInTwo(ctx, kind, tenant, key)
		return rec, tr, err
	}
	rec, err := s.uniqueAnswer(ctx, kind, tenant, key, get)
	return rec, tr, err
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Update replaces rec if its version is current; see store.Store.
func (s *Store) Update(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	data, uniq, err := storekit.CheckRecord(rec)
	if err != nil {
		return err
	}
	if err := storekit.CheckOpts(opts, false); err != nil {
		return err
	}
	if err := storekit.NoEvent(opts); err != nil {
		return err
	}
	// Seq and Created never change, so they can be read before the script;
	// the script's version and seq check makes sure they belong to the
	// record it replaces.
	cur, err := s.Get(ctx, rec.Kind, rec.Tenant, rec.ID)
	if err != nil {
		return err
	}
	t, k := rec.Tenant, rec.Kind
	if cur.Version != rec.Version {
		return fmt.Errorf("%w: %s %s/%s is at version %d, not %d", store.ErrVersionConflict, k, t, rec.ID, cur.Version, rec.Version)
	}
	stored := *rec
	stored.Unique, stored.Data = uniq, data
	stored.Seq, stored.Created = cur.Seq, cur.Created
	stored.Version, stored.Updated = cur.Version+1, storekit.Now()
	doc, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	reply, err := s.runIndexed(ctx, updateScript, t, k, func(fields []string) ([]string, []any) {
		keys := s.ixKeys([]string{s.recKey(t, k, rec.ID), s.uniqKey(t, k), s.intentsKey(t)}, t, k, fields)
		args := []any{rec.ID, strconv.FormatUint(cur.Version, 10), strconv.FormatUint(cur.Seq, 10),
			string(doc), uniqJSON(uniq), opts.Intent, len(fields)}
		for _, f := range fields {
			args = append(args, f)
		}
		args = s.indexPairs(args, rec)
		for _, u := range uniq {
			args = append(args, u)
		}
		return keys, args
	})
	if err != nil {
		return err
	}
	switch replyCode(reply) {
	case "OK":
		*rec = stored
		return nil
	case "NOTFOUND":
		return fmt.Errorf("%w: %s %s/%s", store.ErrNotFound, k, t, rec.ID)
	case "CONFLICT":
		return fmt.Errorf("%w: %s %s/%s changed since version %d", store.ErrVersionConflict, k, t, rec.ID, rec.Version)
	case "EXISTS":
		return fmt.Errorf("%w: %s %s unique key %q", store.ErrExists, k, t, replyDetail(reply))
	}
	return fmt.Errorf("redis store: unexpected update reply %v", reply)
}

// Delete removes a record; see store.Store.
func (s *Store) Delete(ctx context.Context, kind, tenant, id string, opts store.WriteOpts) error {
	if err := storekit.CheckRef(kind, tenant, id); err != nil {
		return err
	}
	if err := storekit.CheckOpts(opts, true); err != nil {
		return err
	}
	if err := storekit.NoEvent(opts); err != nil {
		return err
	}
	res := ""
	if opts.Quota != nil {
		res = opts.Quota.Resource
	}
	reply, err := s.runIndexed(ctx, deleteScript, tenant, kind, func(fields []string) ([]string, []any) {
		keys := s.ixKeys([]string{s.recKey(tenant, kind, id), s.uniqKey(tenant, kind), s.seqKey(tenant, kind),
			s.quotaKey(tenant), s.intentsKey(tenant)}, tenant, kind, fields)
		args := []any{id, res, opts.Intent, len(fields)}
		for _, f := range fields {
			args = append(args, f)
		}
		return keys, args
	})
	if err != nil {
		return err
	}
	switch replyCode(reply) {
	case "OK":
		return nil
	case "NOTFOUND":
		return fmt.Errorf("%w: %s %s/%s", store.ErrNotFound, kind, tenant, id)
	}
	return fmt.Errorf("redis store: unexpected delete reply %v", reply)
}

// loadDocs reads the docs of ids in one round trip; records deleted since
// the ids were read are left out.
func (s *Store) loadDocs(ctx context.Context, tenant, kind string, ids []string) ([]store.Record, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, s.recKey(tenant, kind, id), "doc")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrap(err)
	}
	out := make([]store.Record, 0, len(ids))
	for _, c := range cmds {
		doc, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, wrap(err)
		}
		r, err := decodeRecord(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}

// List answers a query; see store.Query for which queries the seq index
// and the declared indexes serve. The rest read the kind's records.
func (s *Store) List(ctx context.Context, q store.Query) (*store.Page, error) {
	plan, err := storekit.CheckQuery(q)
	if err != nil {
		return nil, err
	}
	page, err := s.list(ctx, q, plan)
	return storekit.Finish(q, plan, page), err
}

func (s *Store) list(ctx context.Context, q store.Query, plan storekit.Plan) (*store.Page, error) {
	seqKey := s.seqKey(q.Tenant, q.Kind)
	if plan.Mode == storekit.OffsetMode && q.SortBy == "" && len(q.Filters) == 0 {
		return s.offsetBySeq(ctx, q, seqKey)
	}
	indexed := func(f string) bool { return s.ix.Has(q.Kind, f) }
	if page, ok, err := storekit.IndexedList(q, plan, indexed, &redisIndex{s: s, ctx: ctx, tenant: q.Tenant, kind: q.Kind}); ok || err != nil {
		return page, err
	}
	if plan.Mode == storekit.OffsetMode {
		ids, err := s.rdb.ZRange(ctx, seqKey, 0, -1).Result()
		if err != nil {
			return nil, wrap(err)
		}
		var all []store.Record
		// Bounded pipelines keep one reply from growing without limit.
		for chunk := range slices.Chunk(ids, 1000) {
			recs, err := s.loadDocs(ctx, q.Tenant, q.Kind, chunk)
			if err != nil {
				return nil, err
			}
			all = append(all, recs...)
		}
		return storekit.OffsetPage(all, q), nil
	}
	page, err := storekit.CursorPage(q, plan, func(from uint64, resume bool, n int) ([]store.Record, uint64, bool, error) {
		by := &redis.ZRangeBy{Min: "-inf", Max: "+inf", Count: int64(n)}
		var cmd *redis.ZSliceCmd
		if q.Desc {
			if resume {
				by.Max = "(" + strconv.FormatUint(from, 10)
			}
			cmd = s.rdb.ZRevRangeByScoreWithScores(ctx, seqKey, by)
		} else {
			if resume {
				by.Min = "(" + strconv.FormatUint(from, 10)
			}
			cmd = s.rdb.ZRangeByScoreWithScores(ctx, seqKey, by)
		}
		zs, err := cmd.Result()
		if err != nil {
			return nil, 0, false, wrap(err)
		}
		ids := make([]string, len(zs))
		for i, z := range zs {
			ids[i], _ = z.Member.(string)
		}
		recs, err := s.loadDocs(ctx, q.Tenant, q.Kind, ids)
		if err != nil {
			return nil, 0, false, err
		}
		var last uint64
		if len(zs) > 0 {
			last = uint64(zs[len(zs)-1].Score)
		}
		return recs, last, len(zs) == n, nil
	})
	if err != nil {
		return nil, err
	}
	if len(q.Filters) == 0 {
		n, err := s.rdb.ZCard(ctx, seqKey).Result()
		if err != nil {
			return nil, wrap(err)
		}
		page.Total = int(n)
	}
	return page, nil
}

// offsetBySeq answers offset paging in creation order without filters
// from the seq index: the page's ids by rank and the count in one round
// trip, then only the page's records.
func (s *Store) offsetBySeq(ctx context.Context, q store.Query, seqKey string) (*store.Page, error) {
	stop := int64(-1)
	if q.Limit > 0 {
		stop = int64(q.Offset + q.Limit - 1)
	}
	pipe := s.rdb.Pipeline()
	rng := pipe.ZRangeArgs(ctx, redis.ZRangeArgs{Key: seqKey, Start: int64(q.Offset), Stop: stop, Rev: q.Desc})
	card := pipe.ZCard(ctx, seqKey)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap(err)
	}
	page := &store.Page{Total: int(card.Val()), Records: []store.Record{}}
	for chunk := range slices.Chunk(rng.Val(), 1000) {
		recs, err := s.loadDocs(ctx, q.Tenant, q.Kind, chunk)
		if err != nil {
			return nil, err
		}
		page.Records = append(page.Records, recs...)
	}
	return page, nil
}

// CountRecords counts the records of a kind in a tenant.
func (s *Store) CountRecords(ctx context.Context, kind, tenant string) (int64, error) {
	if err := storekit.CheckName("kind", kind); err != nil {
		return 0, err
	}
	if err := storekit.CheckName("tenant", tenant); err != nil {
		return 0, err
	}
	n, err := s.rdb.ZCard(ctx, s.seqKey(tenant, kind)).Result()
	return n, wrap(err)
}

func checkQuotaRef(tenant, resource string) error {
	if err := storekit.CheckName("tenant", tenant); err != nil {
		return err
	}
	return storekit.CheckKey("quota resource", resource)
}

// ReserveQuota adds n to a counter if the result stays within limit.
func (s *Store) ReserveQuota(ctx context.Context, tenant, resource string, n, limit int64) error {
	if err := checkQuotaRef(tenant, resource); err != nil {
		return err
	}
	if n < 0 {
		return storekit.Invalid("negative quota reservation")
	}
	reply, err := s.runScript(ctx, reserveScript, []string{s.quotaKey(tenant)}, resource, n, limit)
	if err != nil {
		return err
	}
	if replyCode(reply) == "QUOTA" {
		return fmt.Errorf("%w: %s %s: %s + %d over %d", store.ErrQuotaExceeded, tenant, resource, replyDetail(reply), n, limit)
	}
	return nil
}

// ReleaseQuota subtracts n, never below zero.
func (s *Store) ReleaseQuota(ctx context.Context, tenant, resource string, n int64) error {
	if err := checkQuotaRef(tenant, resource); err != nil {
		return err
	}
	if n < 0 {
		return storekit.Invalid("negative quota release")
	}
	_, err := s.runScript(ctx, releaseScript, []string{s.quotaKey(tenant)}, resource, n)
	return err
}

// QuotaUsage reads a counter (0 when never set).
func (s *Store) QuotaUsage(ctx context.Context, tenant, resource string) (int64, error) {
	if err := checkQuotaRef(tenant, resource); err != nil {
		return 0, err
	}
	n, err := s.rdb.HGet(ctx, s.quotaKey(tenant), resource).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, wrap(err)
}

// SetQuotaUsage overwrites a counter.
func (s *Store) SetQuotaUsage(ctx context.Context, tenant, resource string, n int64) error {
	if err := checkQuotaRef(tenant, resource); err != nil {
		return err
	}
	if n < 0 {
		return storekit.Invalid("negative quota usage")
	}
	return wrap(s.write(ctx, redis.NewCmd(ctx, "hset", s.quotaKey(tenant), resource, n)))
}

// PutIntent stores (or replaces) an intent.
func (s *Store) PutIntent(ctx context.Context, in *store.Intent) error {
	cp, err := storekit.CheckIntent(in, storekit.Now())
	if err != nil {
		return err
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	// Two writes: the set of tenants is a platform key and the intent a
	// key of the tenant's slot, and on a cluster no one step can write
	// both. Tenant first: a listed tenant without intents is harmless, an
	// intent of an unlisted tenant would be invisible to the reconciler.
	// Dying between the two leaves the tenant listed and no intent, and
	// the caller, without an answer, has made no HSM object to settle.
	if err := s.write(ctx, redis.NewCmd(ctx, "sadd", s.intentTenantsKey(), cp.Tenant)); err != nil {
		return wrap(err)
	}
	return wrap(s.write(ctx, redis.NewCmd(ctx, "hset", s.intentsKey(cp.Tenant), cp.ID, b)))
}

// tenantSet reads a set of tenants, together with the same set under the
// untagged name of earlier versions (P:intent-tenants, P:event-tenants),
// which a store they wrote, or their replicas during a rolling upgrade,
// may still fill; the tenants listed there stay visible.
func (s *Store) tenantSet(ctx context.Context, key, old string) ([]string, error) {
	pipe := s.rdb.Pipeline()
	cur, prev := pipe.SMembers(ctx, key), pipe.SMembers(ctx, old)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap(err)
	}
	out := cur.Val()
	for _, t := range prev.Val() {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// DeleteIntent removes an intent from whichever tenant holds it.
func (s *Store) DeleteIntent(ctx context.Context, id string) error {
	if err := storekit.CheckKey("intent id", id); err != nil {
		return err
	}
	tenants, err := s.tenantSet(ctx, s.intentTenantsKey(), s.oldIntentTenantsKey())
	if err != nil {
		return err
	}
	if len(tenants) == 0 {
		return nil
	}
	cmds := make([]*redis.Cmd, len(tenants))
	for i, t := range tenants {
		cmds[i] = redis.NewCmd(ctx, "hdel", s.intentsKey(t), id)
	}
	return wrap(s.write(ctx, cmds...))
}

// ListIntents returns every intent, oldest first.
func (s *Store) ListIntents(ctx context.Context) ([]store.Intent, error) {
	tenants, err := s.tenantSet(ctx, s.intentTenantsKey(), s.oldIntentTenantsKey())
	if err != nil {
		return nil, err
	}
	out := []store.Intent{}
	if len(tenants) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(tenants))
	for i, t := range tenants {
		cmds[i] = pipe.HVals(ctx, s.intentsKey(t))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap(err)
	}
	for _, c := range cmds {
		for _, v := range c.Val() {
			var in store.Intent
			if err := json.Unmarshal([]byte(v), &in); err != nil {
				return nil, fmt.Errorf("redis store: corrupt intent: %w", err)
			}
			out = append(out, in)
		}
	}
	storekit.SortIntents(out)
	return out, nil
}

type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// maxAppendAttempts bounds the optimistic retries of AppendEvents when
// other replicas keep winning the race for a tenant's chain head.
const maxAppendAttempts = 100

// AppendEvents appends to a tenant's chain; see store.Store.
//
// The hash needs SHA-256, which Redis scripts do not offer, so the chain is
// linked here, to the head this replica last read or wrote, and the
// append script writes the events with the new head only if the stored
// head is still that one (one round trip); otherwise it answers the
// stored head, and the events are linked again to it. Events and head
// share the tenant's slot, so the script is valid on a cluster.
func (s *Store) AppendEvents(ctx context.Context, tenant string, data []json.RawMessage) ([]store.Event, error) {
	evs, _, err := s.appendEvents(ctx, tenant, data, nil)
	return evs, err
}

// EventsWithCreate: Create takes WriteOpts.Event (createWithEvent).
func (s *Store) EventsWithCreate() {}

// EventCreateAlone: a Create with an event holds the tenant's chain for
// its round trip, apart from the grouped appends (store.EventCreateAlone).
func (s *Store) EventCreateAlone() {}

// AppendEventsIf is AppendEvents under guards (store.GuardedEvents): the
// script that appends checks each guard's record version first, in the
// tenant's slot, and appends nothing when one fails; the events of the
// failed guards are then left out and the rest linked again.
func (s *Store) AppendEventsIf(ctx context.Context, tenant string, data []json.RawMessage, guards []*store.Guard) ([]store.Event, []int, error) {
	check := storekit.CheckEventGuards
	if s.CredentialGuards() {
		check = storekit.CheckCredentialGuards
	}
	if err := check(tenant, len(data), guards); err != nil {
		return nil, nil, err
	}
	return s.appendEvents(ctx, tenant, data, guards)
}

// checkWriteGuard validates a Create's guard: a credential guard (another
// tenant's record, a rate limit, a chain) where the store takes them.
func (s *Store) checkWriteGuard(tenant string, g *store.Guard) error {
	if s.CredentialGuards() {
		return storekit.CheckCredentialGuards(tenant, 1, []*store.Guard{g})
	}
	return storekit.CheckGuard(tenant, g)
}

// guardArgs are the KEYS and ARGV of a create's guard chain (guardFn):
// the number of guards first in ARGV; none for a nil guard.
func (s *Store) guardArgs(tenant string, guard *store.Guard) ([]string, []any) {
	args := []any{0}
	var keys []string
	n := 0
	for g := guard; g != nil; g = g.And {
		k, a := s.guardOne(tenant, g)
		keys, args = append(keys, k[:]...), append(args, a[:]...)
		n++
	}
	args[0] = n
	return keys, args
}

// guardOne is one guard's KEYS (its record, its rate-limit key or the
// record again) and ARGV (version, interval or 0, burst) for guardFn.
func (s *Store) guardOne(tenant string, g *store.Guard) ([2]string, [3]any) {
	t := tenant
	if g.Tenant != "" {
		t = g.Tenant
	}
	rk, ver := s.recKey(t, g.Kind, g.ID), strconv.FormatUint(g.Version, 10)
	if r := g.Throttle; r != nil {
		return [2]string{rk, s.throttleKey(r.Key)}, [3]any{ver, throttleInterval(r.Rate), r.Burst}
	}
	return [2]string{rk, rk}, [3]any{ver, 0, 0}
}

// CredentialGuards: AppendEventsIf and Create take guards on other
// tenants' records and rate limits (store.CredentialGuards), except on a
// cluster, where those keys may live on other masters than the tenant's.
func (s *Store) CredentialGuards() bool { return s.cluster == nil }

// GuardChecks: CheckGuard works, except on a cluster (its script cannot
// reach keys on several masters; store.GuardChecker).
func (s *Store) GuardChecks() bool { return s.cluster == nil }

// CheckGuard checks g and its chain alone, as a guarded write would:
// held when each guarded record is at its version and each rate limit
// admits one request, counted then; nothing is counted when a guard
// fails (store.GuardChecker). One script: atomic.
func (s *Store) CheckGuard(ctx context.Context, tenant string, g *store.Guard) (bool, error) {
	if !s.GuardChecks() {
		return false, fmt.Errorf("%w: a cluster checks no credential guards", store.ErrInvalid)
	}
	if g == nil {
		return false, fmt.Errorf("%w: no guard to check", store.ErrInvalid)
	}
	if err := storekit.CheckCredentialGuards(tenant, 1, []*store.Guard{g}); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	keys, args := s.guardArgs(tenant, g)
	// Counted once: never retried by the client, and sent again only
	// when the server did not know the script (it ran nothing).
	cmd := checkGuardScript.cmd(ctx, true, keys, args)
	s.process(ctx, cmd)
	if isNoScript(cmd.Err()) {
		cmd = checkGuardScript.cmd(ctx, false, keys, args)
		s.process(ctx, cmd)
	}
	v, err := cmd.Int64()
	if err != nil {
		return false, wrap(err)
	}
	return v == 1, nil
}

// process sends one command that must not be retried, in a shared
// pipeline when one is in flight (roundTrips).
func (s *Store) process(ctx context.Context, cmd *redis.Cmd) {
	if s.trips != nil {
		s.trips.do(ctx, noRetry{cmd})
		return
	}
	_ = s.rdb.Process(ctx, noRetry{cmd})
}

func (s *Store) appendEvents(ctx context.Context, tenant string, data []json.RawMessage, guards []*store.Guard) ([]store.Event, []int, error) {
	norm, err := storekit.NormalizeEvents(tenant, data)
	if err != nil {
		return nil, nil, err
	}
	if len(norm) == 0 {
		return []store.Event{}, nil, nil
	}
	// Unless the append is known to have written or not, the head is read
	// again by the next one.
	heads, raw, known, unlock := s.lockChain(tenant)
	defer unlock()

	// pos[j] is the index in data of norm[j]: guards fail one by one.
	pos := make([]int, len(norm))
	for j := range pos {
		pos[j] = j
	}
	var dropped []int
	headKey, eventsKey := s.headKey(tenant), s.eventsKey(tenant)
	for attempt := 0; attempt < maxAppendAttempts; attempt++ {
		if !known {
			if raw, err = s.readHead(ctx, headKey); err != nil {
				return nil, nil, err
			}
			known = true
		}
		if len(norm) == 0 {
			// Every guard failed: nothing to write, the head stands.
			heads[tenant] = raw
			return []store.Event{}, dropped, nil
		}
		h, err := s.chainHead(ctx, tenant, raw)
		if err != nil {
			return nil, nil, err
		}
		evs := storekit.ChainEvents(tenant, h.Seq, h.Hash, norm, storekit.Now())
		last := evs[len(evs)-1]
		hb, err := json.Marshal(head{Seq: last.Seq, Hash: last.Hash})
		if err != nil {
			return nil, nil, err
		}
		keys := []string{headKey, eventsKey}
		args := make([]any, 0, 3+2*len(evs))
		args = append(args, raw, string(hb))
		script := appendEventsScript
		if guards != nil {
			script = appendEventsIfScript
			args = append(args, 0)
			n := 0
			for j, at := range pos {
				for g := guards[at]; g != nil; g = g.And {
					k, a := s.guardOne(tenant, g)
					keys, args = append(keys, k[:]...), append(append(args, j), a[:]...)
					n++
				}
			}
			args[2] = n
		}
		for i := range evs {
			eb, err := storekit.MarshalEvent(&evs[i])
			if err != nil {
				return nil, nil, err
			}
			args = append(args, evs[i].Seq, string(eb))
		}
		// runScript waits for replicas after the script, and reports an
		// append written but not confirmed as an error: it is never
		// appended again.
		reply, err := s.runScript(ctx, script, keys, args...)
		if err != nil {
			return nil, nil, err
		}
		switch replyCode(reply) {
		case "OK":
			heads[tenant] = string(hb)
			return evs, dropped, nil
		case "STALE":
			// Another replica appended (or the head is gone): link to
			// the stored head.
			raw = replyDetail(reply)
		case "GUARD":
			// Nothing written, the head checked: leave out the events
			// whose guards failed and link the rest again at once.
			failed := map[int]bool{}
			for _, v := range reply[1:] {
				j, err := strconv.Atoi(fmt.Sprint(v))
				if err != nil || j < 0 || j >= len(norm) {
					return nil, nil, fmt.Errorf("redis store: unexpected append reply %v", reply)
				}
				failed[j] = true
			}
			keepN, keepP := norm[:0:0], pos[:0:0]
			for j := range norm {
				if failed[j] {
					dropped = append(dropped, pos[j])
					continue
				}
				keepN, keepP = append(keepN, norm[j]), append(keepP, pos[j])
			}
			norm, pos = keepN, keepP
			slices.Sort(dropped)
			continue
		default:
			return nil, nil, fmt.Errorf("redis store: unexpected append reply %v", reply)
		}
		if err := staleBackoff(ctx, attempt); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, contended(tenant)
}

// lockChain takes the append lock of tenant's stripe and returns the
// stripe's heads (held until unlock) and the head of tenant this replica
// last wrote or read, if known. The caller puts the head back once it
// knows it again: until then the next append reads it.
func (s *Store) lockChain(tenant string) (heads map[string]string, raw string, known bool, unlock func()) {
	i := stripe(tenant)
	mu := &s.appendMu[i]
	mu.Lock()
	if s.appendHead[i] == nil {
		s.appendHead[i] = map[string]string{}
	}
	heads = s.appendHead[i]
	raw, known = heads[tenant]
	delete(heads, tenant)
	return heads, raw, known, mu.Unlock
}

// readHead reads a chain's stored head ("" for none).
func (s *Store) readHead(ctx context.Context, headKey string) (string, error) {
	b, err := s.rdb.Get(ctx, headKey).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", nil
	case err != nil:
		return "", wrap(err)
	}
	return b, nil
}

// chainHead decodes a stored head. The empty head starts the chain (or
// the server lost its data): the tenant is listed before its first event
// exists, so that a tenant with events is always listed; EventTenants
// skips one whose append never completed. (A write of its own: the set is
// a platform key, outside the tenant's slot and the script.)
func (s *Store) chainHead(ctx context.Context, tenant, raw string) (head, error) {
	var h head
	if raw == "" {
		if err := s.write(ctx, redis.NewCmd(ctx, "sadd", s.eventTenantsKey(), tenant)); err != nil {
			return h, wrap(err)
		}
		return h, nil
	}
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		return h, fmt.Errorf("redis store: corrupt event head: %w", err)
	}
	return h, nil
}

// staleBackoff waits a little before the third and later attempts on a
// chain whose head other replicas keep moving.
func staleBackoff(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(rand.IntN(5)+1) * time.Millisecond):
		return nil
	}
}

func contended(tenant string) error {
	return fmt.Errorf("%w: event chain of %s: too much contention", store.ErrUnavailable, tenant)
}

// createWithEvent runs Create's script with an event appended to the
// tenant's chain in the same step (createEventScript): linked here, like
// AppendEvents', under the tenant's append lock, to the head this
// replica knows, and linked again when the script finds another. The
// reply is the create's; a refusal wrote nothing, neither the record nor
// the event.
func (s *Store) createWithEvent(ctx context.Context, tenant string, guard *store.Guard, keys []string, args []any, event json.RawMessage) ([]any, error) {
	heads, raw, known, unlock := s.lockChain(tenant)
	defer unlock()
	headKey, eventsKey := s.headKey(tenant), s.eventsKey(tenant)
	gk, ga := s.guardArgs(tenant, guard)
	k := append([]string{headKey, eventsKey}, gk...)
	k = append(k, keys...)
	for attempt := 0; attempt < maxAppendAttempts; attempt++ {
		if !known {
			var err error
			if raw, err = s.readHead(ctx, headKey); err != nil {
				return nil, err
			}
			known = true
		}
		h, err := s.chainHead(ctx, tenant, raw)
		if err != nil {
			return nil, err
		}
		ev := storekit.ChainEvents(tenant, h.Seq, h.Hash, []json.RawMessage{event}, storekit.Now())[0]
		hb, err := json.Marshal(head{Seq: ev.Seq, Hash: ev.Hash})
		if err != nil {
			return nil, err
		}
		eb, err := storekit.MarshalEvent(&ev)
		if err != nil {
			return nil, err
		}
		a := make([]any, 0, 4+len(ga)+len(args))
		a = append(a, raw, string(hb), ev.Seq, string(eb))
		a = append(a, ga...)
		reply, err := s.runScript(ctx, createEventScript, k, append(a, args...)...)
		if err != nil {
			// Written or not: the next append reads the head.
			return nil, err
		}
		switch replyCode(reply) {
		case "OK":
			heads[tenant] = string(hb)
			return reply, nil
		case "STALE":
			raw = replyDetail(reply)
		default:
			// Refused after the head was checked: it stands.
			heads[tenant] = raw
			return reply, nil
		}
		if err := staleBackoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
	return nil, contended(tenant)
}

func stripe(tenant string) int {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	return int(h.Sum32() % 64)
}

// ListEvents returns up to limit events after afterSeq, oldest first.
func (s *Store) ListEvents(ctx context.Context, tenant string, afterSeq uint64, limit int) ([]store.Event, error) {
	if err := storekit.CheckName("tenant", tenant); err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, storekit.Invalid("negative limit")
	}
	vals, err := s.rdb.ZRangeByScore(ctx, s.eventsKey(tenant), &redis.ZRangeBy{
		Min: "(" + strconv.FormatUint(afterSeq, 10), Max: "+inf", Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, wrap(err)
	}
	out := make([]store.Event, len(vals))
	for i, v := range vals {
		if err := json.Unmarshal([]byte(v), &out[i]); err != nil {
			return nil, fmt.Errorf("redis store: corrupt event: %w", err)
		}
	}
	return out, nil
}

// EventHead returns the sequence number and hash of the newest event of
// a tenant's chain (0 and "" before the first). The verifier compares it
// with the last record it read, which exposes a deletion at the end.
func (s *Store) EventHead(ctx context.Context, tenant string) (uint64, string, error) {
	if err := storekit.CheckName("tenant", tenant); err != nil {
		return 0, "", err
	}
	b, err := s.rdb.Get(ctx, s.headKey(tenant)).Bytes()
	if errors.Is(err, redis.Nil) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", wrap(err)
	}
	var h head
	if err := json.Unmarshal(b, &h); err != nil {
		return 0, "", fmt.Errorf("redis store: corrupt event head: %w", err)
	}
	return h.Seq, h.Hash, nil
}

// EventTenants lists the tenants that have at least one event.
func (s *Store) EventTenants(ctx context.Context) ([]string, error) {
	tenants, err := s.tenantSet(ctx, s.eventTenantsKey(), s.oldEventTenantsKey())
	if err != nil {
		return nil, err
	}
	out := []string{}
	if len(tenants) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(tenants))
	for i, t := range tenants {
		cmds[i] = pipe.Exists(ctx, s.headKey(t))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap(err)
	}
	for i, c := range cmds {
		if c.Val() == 1 {
			out = append(out, tenants[i])
		}
	}
	slices.Sort(out)
	return out, nil
}

// Throttle runs the limiter as one script, so that racing replicas each
// see the other's requests.
func (s *Store) Throttle(ctx context.Context, key string, rate float64, burst int64) (time.Duration, error) {
	if err := store.CheckThrottle(key, rate, burst); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	keys, args := []string{s.throttleKey(key)}, []any{throttleInterval(rate), burst}
	cmd := throttleScript.cmd(ctx, true, keys, args)
	if err := s.rdb.Process(ctx, noRetry{cmd}); isNoScript(err) {
		cmd = throttleScript.cmd(ctx, false, keys, args)
		_ = s.rdb.Process(ctx, noRetry{cmd})
	}
	v, err := cmd.Int64()
	if err != nil {
		return 0, wrap(err)
	}
	return time.Duration(v) * time.Microsecond, nil
}

// throttleKey is a limiter's key. A limiter is one key used alone (one
// script), so its slot does not matter; without a shared tag the limiters
// spread over a cluster's masters.
func (s *Store) throttleKey(key string) string { return s.prefix + ":throttle:" + key }

// throttleInterval is the script's cell interval in microseconds.
func throttleInterval(rate float64) int64 { return max(storekit.Interval(rate).Microseconds(), 1) }
