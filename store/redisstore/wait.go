package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hsmca/hsmca/store"
)

// defaultWaitTimeout bounds the wait for replicas when Options leave it.
const defaultWaitTimeout = 500 * time.Millisecond

func waitTimeoutOf(opts Options) time.Duration {
	if opts.WaitTimeout > 0 {
		return opts.WaitTimeout
	}
	return defaultWaitTimeout
}

// mayWait tells whether the store may wait for replicas: the client's
// read timeout must then leave room for WAIT's own timeout, since a
// pipeline is read within the client's read timeout.
func mayWait(c Conn, opts Options) bool {
	switch {
	case opts.WaitReplicas > 0:
		return true
	case opts.WaitReplicas < 0:
		return false
	}
	return c.mode() != Standalone
}

// pickWait settles how many replicas a write waits for: the option when
// given; else, in Sentinel and Cluster modes when there are replicas (the
// master has one or the sentinels know one, a replica rejoining after a
// failover counts; on a cluster some master has one), every replica of
// the write's master that is online, and at least one; none otherwise.
//
// Every online replica, not one: the sentinels (and a cluster's replicas)
// promote the replica whose last reported offset is highest, and under
// load that report can predate the last writes, so a replica that lacks a
// write acknowledged by its sibling can be promoted. Waiting for all of
// them leaves no such replica. A replica that is not online (syncing,
// disconnected) is not waited for; it has the lowest offset.
func (s *Store) pickWait(ctx context.Context, opts Options) error {
	s.waitTimeout = waitTimeoutOf(opts)
	if opts.WaitReplicas != 0 || !mayWait(s.conn, opts) {
		s.wait = max(opts.WaitReplicas, 0)
		return nil
	}
	o := &onlineReplicas{s: s, counts: map[string]int{}, kick: make(chan struct{}, 1), done: make(chan struct{}),
		hold: time.Duration(holdFall.Load())}
	has, err := o.refresh(ctx)
	if err != nil {
		return fmt.Errorf("replication state: %w", err)
	}
	if !has && s.conn.mode() == Sentinel {
		t := &Topology{}
		s.sentinelTopology(ctx, t)
		for _, st := range t.Sentinels {
			if st.Replicas > 0 {
				has = true
			}
		}
	}
	if has {
		s.wait = 1
		s.online = o
		go o.run()
	}
	return nil
}

// onlineReplicas keeps, per master, how many replicas are online: read at
// open, every second, and at once after a write fell short.
//
// A count that falls takes effect only after holdFall: in a failover the
// old master's replicas leave it one by one (the promoted one first), and
// a master the sentinels wrongly think dead keeps taking writes until it
// is told to follow the new one; were writes then to wait for the one
// replica it has left, that replica's acknowledgement would answer
// success for writes the failover throws away. Held, they answer 503.
// In Sentinel mode a fall the sentinels vouch for (they name this master,
// see it up and no failover) takes effect at once (sentinelsTrustMaster).
type onlineReplicas struct {
	s      *Store
	mu     sync.Mutex
	counts map[string]int // master address ("" in Sentinel mode) -> online replicas
	peaks  map[string]peak
	kick   chan struct{}
	done   chan struct{}
	once   sync.Once
	hold   time.Duration // holdFall at open
}

// peak is the highest count of a master within holdFall, and when it was
// last seen.
type peak struct {
	n  int
	at time.Time
}

// refreshEvery is how often the online replicas are counted again.
const refreshEvery = time.Second

// holdFall is how long writes keep waiting for as many replicas as were
// online, after fewer are (read by each store at open; tests shorten it).
var holdFall atomic.Int64

func init() { holdFall.Store(int64(10 * time.Second)) }

// refresh counts the online replicas of every master; has reports whether
// some master has a replica (online or not).
func (o *onlineReplicas) refresh(ctx context.Context) (has bool, err error) {
	counts := map[string]int{}
	var mu sync.Mutex
	check := func(ctx context.Context, addr string, c redis.Cmdable) error {
		m := masterState(ctx, c, "")
		if m.Err != "" {
			return errors.New(m.Err)
		}
		n := 0
		for _, r := range m.Replicas {
			if r.State == "online" {
				n++
			}
		}
		mu.Lock()
		defer mu.Unlock()
		counts[addr] = n
		if len(m.Replicas) > 0 {
			has = true
		}
		return nil
	}
	if o.s.cluster != nil {
		err = o.s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return check(ctx, c.Options().Addr, c)
		})
	} else {
		err = check(ctx, "", o.s.rdb)
	}
	now := time.Now()
	o.mu.Lock()
	if o.peaks == nil {
		o.peaks = map[string]peak{}
	}
	var fell []string
	for addr, n := range counts {
		o.counts[addr] = n
		switch p := o.peaks[addr]; {
		case n >= p.n || now.Sub(p.at) > o.hold:
			o.peaks[addr] = peak{n: n, at: now}
		default:
			fell = append(fell, addr)
		}
	}
	o.mu.Unlock()
	// In Sentinel mode a replica lost while the sentinels agree the
	// master is sound (the one they name, not down, no failover) lowers
	// the count at once: after a real failover the writes need not wait
	// for the old master to come back.
	if len(fell) > 0 && o.s.conn.mode() == Sentinel && o.s.sentinelsTrustMaster(ctx) {
		o.mu.Lock()
		for _, addr := range fell {
			o.peaks[addr] = peak{n: o.counts[addr], at: now}
		}
		o.mu.Unlock()
	}
	return has, err
}

// sentinelsTrustMaster reports whether a majority of the sentinels answer,
// every one that answers names the master this store writes to (same run
// id), and none sees it down or failing over.
func (s *Store) sentinelsTrustMaster(ctx context.Context) bool {
	info, err := s.rdb.Info(ctx, "server").Result()
	if err != nil {
		return false
	}
	runID := infoFields(info)["run_id"]
	if runID == "" {
		return false
	}
	answered := 0
	for _, addr := range s.conn.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr, Username: s.conn.SentinelUsername,
			Password: s.conn.SentinelPassword, TLSConfig: s.conn.TLS, DialTimeout: defaultTimeout,
			ReadTimeout: defaultTimeout, WriteTimeout: defaultTimeout, MaxRetries: -1, DialerRetries: 1, DisableIdentity: true})
		m, err := c.Master(ctx, s.conn.MasterName).Result()
		c.Close()
		if err != nil {
			continue
		}
		answered++
		flags := m["flags"]
		if m["runid"] != runID || strings.Contains(flags, "down") || strings.Contains(flags, "failover") {
			return false
		}
	}
	return answered >= len(s.conn.Addrs)/2+1
}

func (o *onlineReplicas) run() {
	t := time.NewTicker(refreshEvery)
	defer t.Stop()
	for {
		select {
		case <-o.done:
			return
		case <-t.C:
		case <-o.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), refreshEvery)
		_, _ = o.refresh(ctx)
		cancel()
	}
}

// stop ends the refreshing (nil: nothing to stop).
func (o *onlineReplicas) stop() {
	if o != nil {
		o.once.Do(func() { close(o.done) })
	}
}

// need is how many replicas a write to the master at addr waits for.
func (o *onlineReplicas) need(addr string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.counts[addr]
	if p, ok := o.peaks[addr]; ok && time.Since(p.at) <= o.hold {
		n = max(n, p.n)
	}
	return max(n, 1)
}

// shortfall asks for a count at once: a write fell short, the replicas
// may have changed (a failover, a replica lost).
func (o *onlineReplicas) shortfall() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// needFor is how many replicas a write sent through c waits for.
func (s *Store) needFor(c redis.Cmdable) int {
	if s.online == nil {
		return s.wait
	}
	addr := ""
	if node, ok := c.(*redis.Client); ok && s.cluster != nil {
		addr = node.Options().Addr
	}
	return s.online.need(addr)
}

// WaitsForAllOnline reports whether writes wait for every online replica
// of their master (at least one) rather than a fixed number.
func (s *Store) WaitsForAllOnline() bool { return s.online != nil }

// WaitReplicas is how many replicas must confirm a write before the store
// acknowledges it (0: none), and within how long.
func (s *Store) WaitReplicas() (int, time.Duration) { return s.wait, s.waitTimeout }

// errFewReplicas is the error of a write that too few replicas confirmed.
func (s *Store) errFewReplicas(got int64, need int) error {
	if s.online != nil {
		s.online.shortfall()
	}
	return fmt.Errorf("%w: redis store: the write reached %d of %d replicas within %s; it may or may not survive a failover",
		store.ErrUnavailable, got, need, s.waitTimeout)
}

// pipeWait sends cmds on one connection of c followed by WAIT, so that the
// WAIT covers them (WAIT waits for the connection's own last write); with
// asking, each is preceded by ASKING (a slot being imported by c). The
// commands keep their own errors; the error returned is the wait's.
func (s *Store) pipeWait(ctx context.Context, c redis.Cmdable, cmds []*redis.Cmd, asking bool) error {
	pipe := c.Pipeline()
	for _, cmd := range cmds {
		if asking {
			_ = pipe.Process(ctx, noRetry{redis.NewCmd(ctx, "asking")})
		}
		_ = pipe.Process(ctx, noRetry{cmd})
	}
	w, verdict := s.waitCmd(ctx, c)
	_ = pipe.Process(ctx, noRetry{w})
	_, _ = pipe.Exec(ctx)
	return verdict()
}

// waitCmd is the WAIT that follows writes sent through c, and the reading
// of its answer: nil when enough replicas confirmed them.
func (s *Store) waitCmd(ctx context.Context, c redis.Cmdable) (*redis.Cmd, func() error) {
	need := s.needFor(c)
	w := redis.NewCmd(ctx, "wait", need, s.waitTimeout.Milliseconds())
	return w, func() error {
		n, err := w.Int64()
		if err != nil {
			return fmt.Errorf("%w: redis store: waiting for replicas: %w", store.ErrUnavailable, err)
		}
		if n < int64(need) {
			return s.errFewReplicas(n, need)
		}
		return nil
	}
}

// writeWait is Store.write when writes wait for replicas. The error is
// the first command's error, else the wait's.
func (s *Store) writeWait(ctx context.Context, cmds []*redis.Cmd) error {
	if s.cluster != nil {
		return s.clusterWriteWait(ctx, cmds)
	}
	var werr error
	if s.trips != nil {
		cs := make([]redis.Cmder, len(cmds))
		for i, c := range cmds {
			cs[i] = noRetry{c}
		}
		werr = s.trips.doWait(ctx, cs...)
	} else {
		werr = s.pipeWait(ctx, s.rdb, cmds, false)
	}
	if err := firstErr(cmds); err != nil {
		return err
	}
	return werr
}

// clusterWriteWait sends each command to its key's master with a WAIT
// behind it on the same connection (the cluster client would send a
// keyless WAIT to any node). A node's client does not follow redirects:
// a MOVED command (nothing written) is sent again once the slot map is
// loaded again, an ASK one to the importing master with ASKING; for up
// to slotMoveWait.
func (s *Store) clusterWriteWait(ctx context.Context, cmds []*redis.Cmd) error {
	pending := cmds
	var until time.Time
	var werr error
	for {
		var order []*redis.Client
		groups := map[*redis.Client][]*redis.Cmd{}
		for _, c := range pending {
			node, err := s.cluster.MasterForKey(ctx, firstKey(c))
			if err != nil {
				c.SetErr(err)
				return err
			}
			if _, ok := groups[node]; !ok {
				order = append(order, node)
			}
			groups[node] = append(groups[node], c)
		}
		var moved []*redis.Cmd
		for _, node := range order {
			m, err := s.sendWait(ctx, node, groups[node], false)
			if err != nil {
				return err
			}
			if m.werr != nil && werr == nil {
				werr = m.werr
			}
			moved = append(moved, m.moved...)
		}
		if len(moved) == 0 {
			return werr
		}
		s.cluster.ReloadState(ctx)
		if until.IsZero() {
			until = time.Now().Add(slotMoveWait)
		} else if time.Now().After(until) {
			return moved[0].Err()
		}
		if err := slotPause(ctx); err != nil {
			return err
		}
		for _, c := range moved {
			c.SetErr(nil)
		}
		pending = moved
	}
}

type sent struct {
	moved []*redis.Cmd // to send again (MOVED: not written)
	werr  error        // the wait's error, when a command was written
}

// sendWait sends cmds to node (see clusterWriteWait); err is a command's
// own error.
func (s *Store) sendWait(ctx context.Context, node *redis.Client, cmds []*redis.Cmd, asking bool) (sent, error) {
	var out sent
	werr := s.pipeWait(ctx, node, cmds, asking)
	written := false
	for _, c := range cmds {
		err := c.Err()
		switch {
		case err == nil:
			written = true
		case strings.HasPrefix(err.Error(), "MOVED "):
			out.moved = append(out.moved, c)
		case strings.HasPrefix(err.Error(), "ASK ") && !asking:
			f := strings.Fields(err.Error())
			target := s.masterAt(ctx, f[len(f)-1])
			if target == nil {
				out.moved = append(out.moved, c)
				continue
			}
			c.SetErr(nil)
			m, err := s.sendWait(ctx, target, []*redis.Cmd{c}, true)
			if err != nil {
				return out, err
			}
			if m.werr != nil && out.werr == nil {
				out.werr = m.werr
			}
			out.moved = append(out.moved, m.moved...)
		case strings.HasPrefix(err.Error(), "ASK "):
			out.moved = append(out.moved, c)
		default:
			// A node's client is outside the cluster client's hooks:
			// learn the topology again after an outage here too.
			reloadHook{s.cluster}.after(err)
			return out, err
		}
	}
	if written && out.werr == nil {
		out.werr = werr
	}
	return out, nil
}

// masterAt finds the cluster master at addr (nil: none known).
func (s *Store) masterAt(ctx context.Context, addr string) *redis.Client {
	var mu sync.Mutex
	var found *redis.Client
	_ = s.cluster.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		if c.Options().Addr == addr {
			mu.Lock()
			found = c
			mu.Unlock()
		}
		return nil
	})
	return found
}

// firstKey is the first key of a write command: EVAL/EVALSHA's after the
// key count, otherwise the first argument.
func firstKey(c *redis.Cmd) string {
	args := c.Args()
	name := strings.ToLower(fmt.Sprint(args[0]))
	if (name == "evalsha" || name == "eval") && len(args) > 3 {
		return fmt.Sprint(args[3])
	}
	if len(args) > 1 {
		return fmt.Sprint(args[1])
	}
	return ""
}
