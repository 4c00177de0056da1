package main

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"roomengine/persistence/redis/redistest"
)

// TestClusterOnRedisCluster: cluster mode (cluster.enabled) on a Redis Cluster of three
// masters and three replicas. A representative subset of the cluster tests runs on it as it
// runs on one redis-server — ownership, forwarding and the push feed across nodes, call
// admission racing on two nodes, kill -9 and SIGSTOP of a node — and kill -9 of the master
// that holds the room-change feed and the due set, under clients, loses nothing
// acknowledged.
func TestClusterOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Redis Cluster and several real appserver processes")
	}
	onRedisCluster = redistest.StartCluster(t)
	t.Cleanup(func() { onRedisCluster = nil })
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"ServesAsOne", TestClusterServesAsOne},
		{"ConcurrentAcceptsAndOneOrder", TestClusterConcurrentAcceptsAndOneOrder},
		{"NodeLoss", TestClusterNodeLoss},
		{"NodeFreeze", TestClusterNodeFreeze},
		{"MasterKill", testClusterRedisMasterKill},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// testClusterRedisMasterKill: three nodes with redis.waitReplicas 1 under clients that log
// in, create rooms and comment; kill -9 of the master holding the room-change feed (every
// fenced room write ends there), restarted by its "supervisor" once its replica took over:
// the nodes serve again without a restart, and a fourth node finds every acknowledged
// user and room.
func testClusterRedisMasterKill(t *testing.T) {
	c := newTestCluster(t, 2*time.Second, "APPSERVER_REDIS_WAITREPLICAS=1")
	nodes := c.start("n1", "n2", "n3")
	procs := make([]*proc, len(nodes))
	for i, n := range nodes {
		procs[i] = n.proc
	}
	old := masterOf(t, c.rc, c.prefix+":feed")
	replica := c.rc.ReplicaOf(old)
	if replica == nil {
		t.Fatalf("master %s has no replica", old.Addr())
	}
	load := startFailoverLoad(t, procs)
	var promoted time.Duration
	load.kill(20, func() {
		start := time.Now()
		old.Stop() // SIGKILL
		promoted = c.rc.WaitPromoted(t, replica, 20*time.Second)
		old.Restart()
		c.rc.WaitHealthy(t, 3, 20*time.Second)
		t.Logf("replica promoted %v after the kill, the restarted node in sync %v after it",
			promoted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	})
	for _, n := range nodes {
		waitWithin(t, 20*time.Second, n.name+" serving after the failover", func() bool {
			a := n.do("/live/list", url.Values{"roomId": {"-1"}})
			return a.err == nil && a.code == 200
		})
		if strings.Contains(n.log.String(), "declared dead") {
			t.Errorf("%s was expelled by the failover", n.name)
		}
	}
	load.checkAll(c.startEnv("n4").proc)
	if load.again > 20*time.Second {
		t.Errorf("rooms created again %v after the kill, want within 20 s", load.again)
	}
}
