package main

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/persistence/redis/redistest"
)

// redisClusterEnv points the app at a Redis Cluster, waiting for one replica on every write.
func redisClusterEnv(c *redistest.Cluster, prefix string) []string {
	return []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_KEYPREFIX=" + prefix,
		"APPSERVER_REDIS_CLUSTER_ADDRS=" + strings.Join(c.Addrs(), ","),
		"APPSERVER_REDIS_WAITREPLICAS=1"}
}

// TestRedisClusterFailover: one node (single-node mode) on a Redis Cluster of three
// masters and three replicas, with redis.waitReplicas 1, under clients that log in, create
// rooms and comment. kill -9 of the master that holds the user id counter (every login goes
// through it), which its supervisor restarts: once its replica has taken over and the
// restarted node is that replica's replica, the service answers again within 20 s without
// a restart of the app, and a fresh process finds every user and room a client was told
// about.
func TestRedisClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := binary(t)
	c := redistest.StartCluster(t)
	const prefix = "rcluster"
	env := redisClusterEnv(c, prefix)
	port := freePort(t)
	app := start(t, bin, port, env...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the app:\n%s", importantLines(app.log.String()))
		}
	})

	// Found before the load starts, so that the kill itself is the first thing after the
	// moment the load measures from.
	old := masterOf(t, c, prefix+":user:{nextid}")
	replica := c.ReplicaOf(old)
	if replica == nil {
		t.Fatalf("master %s has no replica", old.Addr())
	}
	load := startFailoverLoad(t, []*proc{app})
	var promoted, back time.Duration
	load.kill(20, func() {
		start := time.Now()
		old.Stop() // SIGKILL
		promoted = c.WaitPromoted(t, replica, 20*time.Second)
		// The promoted replica has no replica of its own: with waitReplicas 1 no write to
		// its slots is acknowledged until the failed node is back — as its replica — which
		// is what the supervisor (systemd, Kubernetes) restarting it does.
		old.Restart()
		c.WaitHealthy(t, 3, 20*time.Second)
		back = time.Since(start)
	})
	t.Logf("the cluster promoted the replica %v after the kill; the restarted node was its replica in sync %v after it",
		promoted.Round(time.Millisecond), back.Round(time.Millisecond))
	// A room on another master is created at once; a login needs the killed master's
	// slots (the id counter), so it measures the failover.
	t.Logf("first login by a request sent after the kill answered %v after it", load.againLogin.Round(time.Millisecond))
	if load.againLogin == 0 || load.againLogin > 20*time.Second {
		t.Errorf("logins answered again %v after the kill, want within 20 s", load.againLogin.Round(time.Millisecond))
	}
	load.checkAll(app.killAndRestart(t, bin, port, env...))
}

// masterOf is the server that is the master of key's slot.
func masterOf(t *testing.T, c *redistest.Cluster, key string) *redistest.Server {
	t.Helper()
	rc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs()})
	defer rc.Close()
	m, err := rc.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if n.Addr() == m.Options().Addr {
			return n
		}
	}
	t.Fatalf("the master of %s, %s, is not one of the cluster's servers", key, m.Options().Addr)
	return nil
}
