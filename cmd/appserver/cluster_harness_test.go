package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"roomengine/persistence/redis/redistest"
)

// The cluster tests run real appserver processes (built with -race: nothing in the cluster
// path uses protoactor's remoting, whose races would force otherwise) on one real
// redis-server, each on loopback ports of its own — or, while onRedisCluster is set
// (TestClusterOnRedisCluster), on that Redis Cluster of three masters and three replicas.

const clusterAdminToken = "cluster-test-admin-token-0123456789abcdef"

// onRedisCluster, when set, makes newTestCluster run its nodes on that Redis Cluster.
var onRedisCluster *redistest.Cluster

// testCluster is one redis-server (or Redis Cluster) and the nodes started on it.
type testCluster struct {
	t      *testing.T
	bin    string
	redis  *redistest.Server  // nil on a Redis Cluster
	rc     *redistest.Cluster // the Redis Cluster, if the nodes run on one
	prefix string
	ttl    time.Duration
	extra  []string
	nodes  map[string]*clNode
}

// clNode is one appserver process of the cluster.
type clNode struct {
	*proc
	name string
	port int
}

func newTestCluster(t *testing.T, ttl time.Duration, extra ...string) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a redis-server and several real appserver processes")
	}
	c := &testCluster{t: t, bin: binary(t), prefix: "cl" + fmt.Sprint(time.Now().UnixNano()%1e6),
		ttl: ttl, extra: extra, nodes: map[string]*clNode{}}
	if c.rc = onRedisCluster; c.rc == nil {
		c.redis = redistest.Start(t)
	}
	return c
}

// redisEnv points a node at the cluster's Redis.
func (c *testCluster) redisEnv() []string {
	if c.rc != nil {
		return []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_KEYPREFIX=" + c.prefix,
			"APPSERVER_REDIS_CLUSTER_ADDRS=" + strings.Join(c.rc.Addrs(), ",")}
	}
	return redisEnv(c.t, c.redis, c.prefix)
}

// start runs nodes by name and waits until each is ready (a member, Redis answering).
func (c *testCluster) start(names ...string) []*clNode {
	c.t.Helper()
	out := make([]*clNode, 0, len(names))
	for _, name := range names {
		out = append(out, c.startEnv(name))
	}
	return out
}

// startEnv runs one node with env added to the cluster's extra settings.
func (c *testCluster) startEnv(name string, env ...string) *clNode {
	c.t.Helper()
	port := freePort(c.t)
	base := append(c.redisEnv(), "APPSERVER_CLUSTER_ENABLED=true",
		"APPSERVER_CLUSTER_NODE="+name, "APPSERVER_CLUSTER_MEMBERTTL="+c.ttl.String(),
		"APPSERVER_ADMIN_TOKEN="+clusterAdminToken)
	n := &clNode{proc: start(c.t, c.bin, port, append(append(base, c.extra...), env...)...), name: name, port: port}
	c.nodes[name] = n
	c.t.Cleanup(func() {
		if c.t.Failed() {
			c.t.Logf("log of %s (port %d):\n%s", name, port, importantLines(n.log.String()))
		}
	})
	return n
}

// importantLines keeps the warnings and errors of a node's log.
func importantLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// adminCluster is GET /admin/cluster on n.
type adminCluster struct {
	Node    string
	Members []struct{ Node, Addr string }
	Owner   string
}

func (n *clNode) admin(t *testing.T, roomID string) (adminCluster, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", n.base+"/admin/cluster?roomId="+url.QueryEscape(roomID), nil)
	req.Header.Set("Authorization", "Bearer "+clusterAdminToken)
	res, err := client.Do(req)
	if err != nil {
		return adminCluster{}, err
	}
	defer res.Body.Close()
	var env struct {
		Code    int
		Message string
		Data    adminCluster
	}
	if err := json.NewDecoder(res.Body).Decode(&env); err != nil {
		return adminCluster{}, err
	}
	if env.Code != 200 {
		return adminCluster{}, fmt.Errorf("admin/cluster: %d %s", env.Code, env.Message)
	}
	return env.Data, nil
}

// ownerOf names the node that acts for a room now, asked through via.
func (c *testCluster) ownerOf(via *clNode, roomID string) *clNode {
	c.t.Helper()
	info, err := via.admin(c.t, roomID)
	require.NoError(c.t, err)
	owner, ok := c.nodes[info.Owner]
	require.True(c.t, ok, "owner %q of %s is not a node of the test", info.Owner, roomID)
	return owner
}

// others are the nodes other than n.
func (c *testCluster) others(n *clNode) []*clNode {
	var out []*clNode
	for _, o := range c.nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// signal sends sig to the node's process (only ever one this test started).
func (n *clNode) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, n.cmd.Process.Signal(sig))
}

// exited waits for the node's process to end and returns its exit code.
func (n *clNode) exited(t *testing.T, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		require.NoError(t, err)
		return 0
	case <-time.After(within):
		// Kill it and let the waiting goroutine finish, so the test's cleanup does not wait
		// on the same process concurrently.
		_ = n.cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not exit within %v\n%s", n.name, within, importantLines(n.log.String()))
		return -1
	}
}

// eventually retries fn until it returns nil or d has passed, and reports how long it took.
func eventually(t *testing.T, d time.Duration, what string, fn func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < d {
		if err = fn(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, d, err)
	return 0
}

// try posts form to path and returns an error unless the envelope code is 200.
func (n *clNode) try(path string, form url.Values) (json.RawMessage, error) {
	a := n.do(path, form)
	if a.err != nil {
		return nil, a.err
	}
	if a.code != 200 {
		return nil, fmt.Errorf("%s: code %d %s", path, a.code, a.message)
	}
	return a.data, nil
}

func metricsText(t *testing.T, n *clNode) string {
	t.Helper()
	res, err := client.Get(n.base + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

// clFrame is one WebSocket frame as a client parses it.
type clFrame struct {
	Seq     uint64 `json:"seq"`
	Tag     string `json:"tag"`
	Message struct {
		Type int             `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"message"`
}

// subscriber reads a topic's frames in the background until the connection ends.
type subscriber struct {
	mu     sync.Mutex
	frames []clFrame
	closed chan struct{}
	status websocket.StatusCode // close status, once closed
	err    error
}

func subscribe(t *testing.T, n *clNode, topic string, since uint64) *subscriber {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	u := fmt.Sprintf("ws://127.0.0.1:%d/ws?topic=%s", n.port, url.QueryEscape(topic))
	if since > 0 {
		u += fmt.Sprintf("&since=%d", since)
	}
	conn, _, err := websocket.Dial(ctx, u, nil)
	require.NoError(t, err, "subscribe to %s on %s", topic, n.name)
	conn.SetReadLimit(1 << 20)
	s := &subscriber{closed: make(chan struct{})}
	t.Cleanup(func() { cancel(); conn.CloseNow() })
	go func() {
		defer close(s.closed)
		for {
			_, raw, err := conn.Read(ctx)
			if err != nil {
				s.mu.Lock()
				s.err, s.status = err, websocket.CloseStatus(err)
				s.mu.Unlock()
				return
			}
			var f clFrame
			if json.Unmarshal(raw, &f) == nil {
				s.mu.Lock()
				s.frames = append(s.frames, f)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *subscriber) snapshot() []clFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]clFrame(nil), s.frames...)
}

// waitFrames waits until cond holds for the frames received so far.
func (s *subscriber) waitFrames(t *testing.T, d time.Duration, what string, cond func([]clFrame) bool) []clFrame {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		fs := s.snapshot()
		if cond(fs) {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; frames: %s", what, d, describeFrames(fs))
		}
		select {
		case <-s.closed:
			if fs := s.snapshot(); cond(fs) {
				return fs
			}
			t.Fatalf("%s: connection closed (%v); frames: %s", what, s.err, describeFrames(s.snapshot()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitClosed waits for the server to close the connection and returns the close status.
func (s *subscriber) waitClosed(t *testing.T, d time.Duration) websocket.StatusCode {
	t.Helper()
	select {
	case <-s.closed:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.status
	case <-time.After(d):
		t.Fatalf("connection still open after %v", d)
		return -1
	}
}

func countType(fs []clFrame, typ int) int {
	n := 0
	for _, f := range fs {
		if f.Message.Type == typ {
			n++
		}
	}
	return n
}

func hasType(typ, n int) func([]clFrame) bool {
	return func(fs []clFrame) bool { return countType(fs, typ) >= n }
}

// requireStrictSeqs checks that seqs strictly increase: no frame twice, none out of order.
func requireStrictSeqs(t *testing.T, fs []clFrame, who string) {
	t.Helper()
	for i := 1; i < len(fs); i++ {
		require.Greater(t, fs[i].Seq, fs[i-1].Seq, "%s: frame %d after %d", who, fs[i].Seq, fs[i-1].Seq)
	}
}

func describeFrames(fs []clFrame) string {
	parts := make([]string, 0, len(fs))
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%d:t%d", f.Seq, f.Message.Type))
	}
	if len(parts) > 40 {
		parts = append(parts[:20], append([]string{"…"}, parts[len(parts)-20:]...)...)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
