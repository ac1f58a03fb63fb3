package testenv

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The wait for a healthy cluster mends the two ways a fresh cluster was
// seen to stay incomplete: a node that never learnt of another (here one
// made to forget it, which bars it from gossip for a minute) and a node
// left an empty master (here a replica reset and met again).
func TestClusterWaitMendsAnIncompleteCluster(t *testing.T) {
	c := StartCluster(t)
	ctx := context.Background()
	var replicas []ClusterNode
	first := c.Nodes[0].Client()
	defer first.Close()
	v, err := first.ClusterNodes(ctx).Result()
	require.NoError(t, err)
	for _, cn := range parseClusterNodes(v) {
		if !cn.Master && !cn.Self {
			replicas = append(replicas, cn)
		}
	}
	require.GreaterOrEqual(t, len(replicas), 2)
	require.NoError(t, first.Do(ctx, "CLUSTER", "FORGET", replicas[0].ID).Err())

	reset := c.Node(replicas[1].Addr)
	cl := reset.Client()
	defer cl.Close()
	require.NoError(t, cl.Do(ctx, "CLUSTER", "RESET", "HARD").Err())
	// The others drop its old identity, as an operator would.
	for _, n := range c.Nodes {
		if n != reset {
			o := n.Client()
			_ = o.Do(ctx, "CLUSTER", "FORGET", replicas[1].ID).Err()
			o.Close()
		}
	}
	host, port, _ := net.SplitHostPort(c.Nodes[0].Addr)
	require.NoError(t, cl.Do(ctx, "CLUSTER", "MEET", host, port, c.Nodes[0].bus).Err())

	require.NoError(t, c.waitHealthy(t, 30*time.Second))
}
