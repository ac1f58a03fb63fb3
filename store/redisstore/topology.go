package redisstore

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Topology is what the store sees of Redis, for `hsmca doctor`: no
// credentials, addresses only.
type Topology struct {
	Mode Mode
	// Masters are the server (standalone), the master the sentinels name
	// (Sentinel), or every master serving slots (Cluster, by address).
	Masters []MasterState
	// Sentinels are the configured sentinels (Sentinel mode).
	Sentinels []SentinelState
	// MasterName and DB (Sentinel mode; standalone: DB from the URL).
	MasterName string
	DB         int
	// ClusterState, SlotsAssigned and SlotsOK are CLUSTER INFO's
	// cluster_state, cluster_slots_assigned and cluster_slots_ok.
	ClusterState           string
	SlotsAssigned, SlotsOK int
}

// MasterState is one master and its replicas as its INFO replication
// says.
type MasterState struct {
	Addr string
	// Role is INFO's role: "master", or "slave" when a standalone URL
	// names a replica.
	Role string
	// Slots are the slot ranges it serves (Cluster).
	Slots    []string
	Replicas []ReplicaState
	// Err is why it could not be read ("" when it was).
	Err string
}

// ReplicaState is one replica as its master sees it.
type ReplicaState struct {
	Addr string
	// State is online once in sync (wait_bgsave, send_bulk before).
	State string
	// LagBytes is how far its acknowledged replication offset is behind
	// the master's; LagSeconds how long since it last acknowledged.
	LagBytes   int64
	LagSeconds int64
}

// SentinelState is one sentinel's view of the master.
type SentinelState struct {
	Addr string
	// Master is the address it names for the master name.
	Master string
	// Flags are its flags for the master (master, s_down, o_down...).
	Flags string
	// Replicas and Sentinels are how many replicas and other sentinels
	// it knows; Quorum the sentinels needed to agree the master is down.
	Replicas, Sentinels, Quorum int
	Err                         string
}

// Topology reads the topology: the master(s) with their replicas, and the
// sentinels or the cluster's slot coverage.
func (s *Store) Topology(ctx context.Context) (*Topology, error) {
	t := &Topology{Mode: s.conn.mode(), MasterName: s.conn.MasterName, DB: s.conn.DB}
	switch t.Mode {
	case Cluster:
		return t, s.clusterTopology(ctx, t)
	case Sentinel:
		s.sentinelTopology(ctx, t)
		addr := ""
		for _, st := range t.Sentinels {
			if st.Master != "" {
				addr = st.Master
				break
			}
		}
		t.Masters = []MasterState{masterState(ctx, s.rdb, addr)}
	default:
		addr := ""
		if o, err := redis.ParseURL(s.conn.URL); err == nil {
			addr, t.DB = o.Addr, o.DB
		}
		t.Masters = []MasterState{masterState(ctx, s.rdb, addr)}
	}
	return t, nil
}

func masterState(ctx context.Context, c redis.Cmdable, addr string) MasterState {
	m := MasterState{Addr: addr}
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		m.Err = wrap(err).Error()
		return m
	}
	fields := infoFields(info)
	m.Role = fields["role"]
	offset, _ := strconv.ParseInt(fields["master_repl_offset"], 10, 64)
	n, _ := strconv.Atoi(fields["connected_slaves"])
	for i := range n {
		kv := map[string]string{}
		for _, p := range strings.Split(fields[fmt.Sprintf("slave%d", i)], ",") {
			k, v, _ := strings.Cut(p, "=")
			kv[k] = v
		}
		r := ReplicaState{Addr: net.JoinHostPort(kv["ip"], kv["port"]), State: kv["state"]}
		if o, err := strconv.ParseInt(kv["offset"], 10, 64); err == nil {
			r.LagBytes = max(offset-o, 0)
		}
		r.LagSeconds, _ = strconv.ParseInt(kv["lag"], 10, 64)
		m.Replicas = append(m.Replicas, r)
	}
	return m
}

func infoFields(info string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

func (s *Store) sentinelTopology(ctx context.Context, t *Topology) {
	t.Sentinels = make([]SentinelState, len(s.conn.Addrs))
	var wg sync.WaitGroup
	for i, addr := range s.conn.Addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := SentinelState{Addr: addr}
			defer func() { t.Sentinels[i] = st }()
			c := redis.NewSentinelClient(&redis.Options{Addr: addr, Username: s.conn.SentinelUsername,
				Password: s.conn.SentinelPassword, TLSConfig: s.conn.TLS, DialTimeout: defaultTimeout,
				ReadTimeout: defaultTimeout, WriteTimeout: defaultTimeout, MaxRetries: -1, DialerRetries: 1, DisableIdentity: true})
			defer c.Close()
			m, err := c.Master(ctx, s.conn.MasterName).Result()
			if err != nil {
				st.Err = wrap(err).Error()
				return
			}
			// The address clients are given (during a failover, the
			// promoted replica's, before SENTINEL MASTER's switches).
			addr, err := c.GetMasterAddrByName(ctx, s.conn.MasterName).Result()
			if err != nil || len(addr) != 2 {
				st.Err = fmt.Sprintf("no master address: %v", wrap(err))
				return
			}
			st.Master = net.JoinHostPort(addr[0], addr[1])
			st.Flags = m["flags"]
			st.Replicas, _ = strconv.Atoi(m["num-slaves"])
			st.Sentinels, _ = strconv.Atoi(m["num-other-sentinels"])
			st.Quorum, _ = strconv.Atoi(m["quorum"])
		}()
	}
	wg.Wait()
}

func (s *Store) clusterTopology(ctx context.Context, t *Topology) error {
	info, err := s.cluster.ClusterInfo(ctx).Result()
	if err != nil {
		return wrap(err)
	}
	f := infoFields(info)
	t.ClusterState = f["cluster_state"]
	t.SlotsAssigned, _ = strconv.Atoi(f["cluster_slots_assigned"])
	t.SlotsOK, _ = strconv.Atoi(f["cluster_slots_ok"])
	ranges, err := s.cluster.ClusterSlots(ctx).Result()
	if err != nil {
		return wrap(err)
	}
	slots := map[string][]string{}
	for _, r := range ranges {
		if len(r.Nodes) == 0 {
			continue
		}
		rng := strconv.Itoa(r.Start)
		if r.End != r.Start {
			rng += "-" + strconv.Itoa(r.End)
		}
		slots[r.Nodes[0].Addr] = append(slots[r.Nodes[0].Addr], rng)
	}
	var mu sync.Mutex
	read := map[string]MasterState{}
	err = s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		m := masterState(ctx, c, c.Options().Addr)
		mu.Lock()
		read[m.Addr] = m
		mu.Unlock()
		return nil
	})
	if err != nil {
		return wrap(err)
	}
	for addr, rs := range slots {
		m, ok := read[addr]
		if !ok {
			m = MasterState{Addr: addr, Err: "not reached"}
		}
		m.Slots = rs
		t.Masters = append(t.Masters, m)
	}
	slices.SortFunc(t.Masters, func(a, b MasterState) int { return strings.Compare(a.Addr, b.Addr) })
	return nil
}
