package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster as production runs one: three masters, each with one replica,
// every server fsyncing every write, a node declared failed after cluster-node-timeout
// (2 s) and its replica promoted.
type Cluster struct {
	t     testing.TB
	Nodes []*Server // as created; which are masters changes with failovers (Masters)
}

// clusterNodeTimeout is cluster-node-timeout: a master that does not answer for this long
// is failed over.
const clusterNodeTimeout = 2000 * time.Millisecond

// StartCluster starts six servers, makes them a cluster of three masters and three
// replicas with redis-cli --cluster create, and returns once every node reports
// cluster_state:ok, agrees on the slots, and every replica is in sync.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: redis-cli is not on PATH (%v); it comes with redis-server (`sudo apt-get install redis-server`)", err)
	}
	c := &Cluster{t: t}
	for range 6 {
		busPort, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		c.Nodes = append(c.Nodes, startServer(t, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout.Milliseconds())),
			// The bus port is port+10000 by default, which may be taken or out of range.
			"--cluster-port", strconv.Itoa(busPort),
			// A replica that lost its master takes over however long the link was down.
			"--cluster-replica-validity-factor", "0",
			// A master waits 5 s by default before it sends a replica its first sync.
			"--repl-diskless-sync-delay", "0",
		}, ""))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t, 3, startTimeout)
	return c
}

// Addrs lists every node's host:port (seeds for a cluster client).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, master string // master: the id of its master ("-" for a master)
	isMaster, failed bool
	slots            bool // a master serving at least one slot
}

// nodes asks the first answering live node for CLUSTER NODES.
func (c *Cluster) nodes() ([]clusterNode, error) {
	var lastErr error
	for _, srv := range c.Nodes {
		if !srv.running() {
			continue
		}
		rc := nodeClient(srv.Addr())
		txt, err := rc.ClusterNodes(context.Background()).Result()
		rc.Close()
		if err != nil {
			lastErr = err
			continue
		}
		var out []clusterNode
		for _, line := range strings.Split(strings.TrimSpace(txt), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			out = append(out, clusterNode{id: f[0], addr: addr, master: f[3],
				isMaster: strings.Contains(f[2], "master"),
				failed:   strings.Contains(f[2], "fail") && !strings.Contains(f[2], "pfail"),
				slots:    len(f) > 8})
		}
		return out, nil
	}
	return nil, fmt.Errorf("no node answers: %v", lastErr)
}

func (c *Cluster) byAddr(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// Masters returns the servers that currently serve slots as masters (a live node's view).
func (c *Cluster) Masters() []*Server {
	ns, err := c.nodes()
	if err != nil {
		return nil
	}
	var out []*Server
	for _, n := range ns {
		if n.isMaster && n.slots && !n.failed {
			if s := c.byAddr(n.addr); s != nil {
				out = append(out, s)
			}
		}
	}
	return out
}

// ReplicaOf returns the replica that master lists as online (nil if none): asked of the
// master itself, whose view of its replicas is current, unlike the cluster bus's gossip.
func (c *Cluster) ReplicaOf(master *Server) *Server {
	rc := nodeClient(master.Addr())
	info, err := rc.Info(context.Background(), "replication").Result()
	rc.Close()
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "slave") || !strings.Contains(line, "state=online") {
			continue
		}
		var ip, port string
		for _, kv := range strings.Split(strings.TrimSpace(line[strings.IndexByte(line, ':')+1:]), ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			}
		}
		if s := c.byAddr(ip + ":" + port); s != nil {
			return s
		}
	}
	return nil
}

// WaitPromoted waits until replica serves slots as a master and every live node reports
// cluster_state:ok (after its master was killed or frozen), failing the test after within.
// It returns how long that took.
func (c *Cluster) WaitPromoted(t testing.TB, replica *Server, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if slices.Contains(c.Masters(), replica) && c.allOK() {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("redistest: %s was not promoted within %v", replica.Addr(), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitHealthy waits until `masters` masters serve every slot, each with a replica in sync,
// and every live node reports cluster_state:ok, failing the test after within.
func (c *Cluster) WaitHealthy(t testing.TB, masters int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ms := c.Masters()
		ok := len(ms) == masters && c.allOK()
		for _, m := range ms {
			ok = ok && onlineReplicas(m.Addr()) >= 1
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: the cluster is not healthy (%d masters with a replica in sync, state ok everywhere) after %v", masters, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// allOK reports whether every live node says cluster_state:ok and knows every slot.
func (c *Cluster) allOK() bool {
	for _, s := range c.Nodes {
		if !s.running() || s.frozen() {
			continue
		}
		rc := nodeClient(s.Addr())
		info, err := rc.ClusterInfo(context.Background()).Result()
		rc.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return false
		}
	}
	return true
}

func nodeClient(addr string) *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second,
		ReadTimeout: time.Second, MaxRetries: -1})
}
