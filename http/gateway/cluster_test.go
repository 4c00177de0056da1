package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
	"roomengine/persistence/redis"
	"roomengine/persistence/redis/redistest"
)

// feedSink is a node's room-change feed handler; the gateway needs none of it.
type feedSink struct{}

func (feedSink) Room(actors.Room)     {}
func (feedSink) RoomDeleted(string)   {}
func (feedSink) Gap()                 {}
func (feedSink) Reset(string, string) {}

// node is one in-process cluster node: its store, publisher, gateway and feed follower.
type node struct {
	name   string
	store  *redis.Store
	pub    *redis.Publisher
	sub    *redis.Subscriber
	g      *Gateway
	srv    *httptest.Server
	fol    *redis.Follower
	stopFn context.CancelFunc
	done   chan struct{}
}

type cluster struct {
	srv    *redistest.Server
	rdb    *goredis.Client
	prefix string
	nodes  []*node
}

var clusterSeq sync.Mutex
var clusterN int

func startCluster(t testing.TB, n int, pub redis.PublisherOptions) *cluster {
	t.Helper()
	clusterSeq.Lock()
	clusterN++
	prefix := fmt.Sprintf("gw%d", clusterN)
	clusterSeq.Unlock()
	cl := &cluster{srv: redistest.Start(t), prefix: prefix + ":"}
	cl.rdb = goredis.NewClient(&goredis.Options{Addr: cl.srv.Addr()})
	t.Cleanup(func() { cl.rdb.Close() })
	for i := range n {
		s, err := redis.Open(context.Background(), redis.Options{Addr: cl.srv.Addr(), KeyPrefix: prefix, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		opts := pub
		opts.Logger = quietLogger()
		nd := &node{name: fmt.Sprintf("n%d", i+1), store: s, pub: s.NewPublisher(opts)}
		nd.fol = s.NewFollower(redis.FollowerOptions{Name: "feed-" + nd.name, Logger: quietLogger()})
		nd.sub = s.NewSubscriber(redis.SubscriberOptions{Follower: nd.fol, Logger: quietLogger()})
		nd.g, nd.srv = startGateway(t, Options{Feed: nd.sub, FeedLag: nd.fol.Lag, QueueSize: 4096, HistorySize: 4096})
		head, err := s.FeedHead(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		nd.follow(head)
		t.Cleanup(func() {
			nd.stop()
			nd.sub.Close()
			_ = nd.pub.Close(context.Background())
			s.Close()
		})
		cl.nodes = append(cl.nodes, nd)
	}
	return cl
}

func (nd *node) follow(from string) {
	ctx, cancel := context.WithCancel(context.Background())
	nd.stopFn, nd.done = cancel, make(chan struct{})
	go func() {
		defer close(nd.done)
		_ = nd.fol.Run(ctx, from, feedSink{})
	}()
}

func (nd *node) stop() {
	nd.stopFn()
	<-nd.done
}

// readAll reads n frames and checks the cluster's promise on them: seqs strictly
// increasing by one (no gap, no duplicate).
func readAll(t *testing.T, c *websocket.Conn, n int) []testFrame {
	t.Helper()
	out, err := readInOrder(c, n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readInOrder is readAll for goroutines other than the test's.
func readInOrder(c *websocket.Conn, n int) ([]testFrame, error) {
	out := make([]testFrame, 0, n)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, b, err := c.Read(ctx)
		cancel()
		if err != nil {
			return out, fmt.Errorf("frame %d: %w", len(out), err)
		}
		var f testFrame
		if err := json.Unmarshal(b, &f); err != nil {
			return out, fmt.Errorf("frame %q: %w", b, err)
		}
		if k := len(out); k > 0 && f.Seq != out[k-1].Seq+1 {
			return out, fmt.Errorf("seq %d after %d", f.Seq, out[k-1].Seq)
		}
		out = append(out, f)
	}
	return out, nil
}

func TestClusterEveryNodeGetsOneOrder(t *testing.T) {
	cl := startCluster(t, 3, redis.PublisherOptions{HistoryCap: 4096})
	const perGateway, total = 2, 1000
	var conns []*websocket.Conn
	for _, nd := range cl.nodes {
		for range perGateway {
			conns = append(conns, dial(t, nd.srv, "topic=r1"))
		}
		waitSubscribers(t, nd.g, "r1", perGateway)
	}

	var wg sync.WaitGroup
	for i, nd := range cl.nodes {
		wg.Go(func() {
			for k := i; k < total; k += len(cl.nodes) {
				nd.pub.Publish(comment("r1", k))
			}
		})
	}
	results := make([][]testFrame, len(conns))
	var readers sync.WaitGroup
	for i, c := range conns {
		readers.Go(func() {
			var err error
			if results[i], err = readInOrder(c, total); err != nil {
				t.Errorf("subscriber %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	readers.Wait()
	if t.Failed() {
		n, err := cl.rdb.XLen(context.Background(), cl.prefix+"feed").Result()
		t.Logf("feed holds %d entries (%v)", n, err)
		for _, nd := range cl.nodes {
			t.Logf("%s: publisher refused %d, dropped %d; follower at %s, lag %v", nd.name, nd.pub.Refused(),
				nd.pub.Dropped(), nd.fol.LastID(), nd.fol.Lag())
		}
		return
	}
	// Each publisher's comments keep their Publish order within the one order.
	last := map[int]int{}
	for _, f := range results[0] {
		var k int
		if _, err := fmt.Sscanf(string(f.Message), `{"data":{"uid":"1","name":"a","comment":"c%d"}`, &k); err != nil {
			t.Fatalf("frame %s: %v", f.Message, err)
		}
		if prev, ok := last[k%3]; ok && k <= prev {
			t.Fatalf("publisher %d's comment %d after %d", k%3, k, prev)
		}
		last[k%3] = k
	}
	for i, r := range results[1:] {
		if !slices.EqualFunc(r, results[0], func(a, b testFrame) bool {
			return a.Seq == b.Seq && string(a.Message) == string(b.Message)
		}) {
			t.Fatalf("subscriber %d saw another order than subscriber 0", i+1)
		}
	}
}

// A client leaves node 1 and comes back with since on node 2 while pushes go on: it gets
// exactly what it missed, then the live frames, once each.
func TestClusterSinceOnAnotherNode(t *testing.T) {
	cl := startCluster(t, 3, redis.PublisherOptions{HistoryCap: 4096})
	n1, n2 := cl.nodes[0], cl.nodes[1]
	c := dial(t, n1.srv, "topic=r1")
	waitSubscribers(t, n1.g, "r1", 1)
	watcher := dial(t, n2.srv, "topic=r1") // sees everything, for the expected seqs
	waitSubscribers(t, n2.g, "r1", 1)

	for k := range 10 {
		cl.nodes[k%3].pub.Publish(comment("r1", k))
	}
	seen := readAll(t, c, 10)
	c.Close(websocket.StatusNormalClosure, "")
	waitSubscribers(t, n1.g, "r1", 0)
	for k := 10; k < 30; k++ {
		cl.nodes[k%3].pub.Publish(comment("r1", k))
	}
	// More arrive while the client reconnects: the handover must neither lose nor repeat.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := 30; k < 80; k++ {
			cl.nodes[k%3].pub.Publish(comment("r1", k))
		}
	}()
	back := dial(t, n2.srv, fmt.Sprintf("topic=r1&since=%d", seen[9].Seq))
	<-done
	all := readAll(t, watcher, 80)
	rest := readAll(t, back, 70)
	for i, f := range rest {
		if want := all[10+i]; f.Seq != want.Seq || string(f.Message) != string(want.Message) {
			t.Fatalf("frame %d after reconnecting: seq %d, want %d", i, f.Seq, want.Seq)
		}
	}
	expectSilence(t, back)
}

// expectSilence checks that no further frame arrives (a duplicate would): a fresh push
// is the next frame.
func expectSilence(t *testing.T, c *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, b, err := c.Read(ctx); err == nil {
		t.Fatalf("unexpected frame %s", b)
	}
}

// The pub/sub connections are cut while pushes flow (go-redis reconnects and resubscribes
// on its own): the node reads what it missed from the topic's history, its clients see no
// gap and no duplicate.
func TestClusterPubSubConnectionCut(t *testing.T) {
	cl := startCluster(t, 2, redis.PublisherOptions{HistoryCap: 4096})
	n2 := cl.nodes[1]
	c := dial(t, n2.srv, "topic=r1")
	waitSubscribers(t, n2.g, "r1", 1)
	const total = 300
	go func() {
		for k := range total {
			cl.nodes[k%2].pub.Publish(comment("r1", k))
		}
	}()
	first := readAll(t, c, 50)
	if err := cl.rdb.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	rest := readAll(t, c, total-50)
	if rest[0].Seq != first[49].Seq+1 {
		t.Fatalf("seq %d after %d across the cut", rest[0].Seq, first[49].Seq)
	}
	expectSilence(t, c)
}

func killClients(t *testing.T, rdb *goredis.Client, name string) int {
	t.Helper()
	killed := 0
	for line := range strings.Lines(rdb.ClientList(t.Context()).Val()) {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		for f := range strings.FieldsSeq(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok && rdb.Do(t.Context(), "CLIENT", "KILL", "ID", id).Err() == nil {
				killed++
			}
		}
	}
	return killed
}

// Interest: a node receives a topic's pushes only while it has a subscriber of it. A
// client that connects with since to node 2 (which had none) while comments flow through
// node 1 gets every frame once, in seq order — across pub/sub reconnects too; node 3,
// which never has a subscriber, receives none.
func TestClusterInterestSinceSeamAcrossPubSubReconnect(t *testing.T) {
	cl := startCluster(t, 3, redis.PublisherOptions{HistoryCap: 4096})
	n1, n2, n3 := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	watcher := dial(t, n1.srv, "topic=r1") // sees everything, for the expected frames
	waitSubscribers(t, n1.g, "r1", 1)
	for k := range 20 {
		n1.pub.Publish(comment("r1", k))
	}
	seen := readAll(t, watcher, 20)
	if n2.sub.Received() != 0 || n3.sub.Received() != 0 {
		t.Fatalf("nodes without subscribers received %d and %d pushes", n2.sub.Received(), n3.sub.Received())
	}
	const total = 400
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := 20; k < total; k++ {
			n1.pub.Publish(comment("r1", k))
			if k == 200 || k == 300 {
				_ = n1.pub.Sync(context.Background())
				_ = cl.rdb.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err()
			}
		}
	}()
	back := dial(t, n2.srv, fmt.Sprintf("topic=r1&since=%d", seen[9].Seq))
	<-done
	all := append(seen, readAll(t, watcher, total-20)...)
	rest := readAll(t, back, total-10)
	for i, f := range rest {
		if want := all[10+i]; f.Seq != want.Seq || string(f.Message) != string(want.Message) {
			t.Fatalf("frame %d on node 2: seq %d, want %d", i, f.Seq, want.Seq)
		}
	}
	expectSilence(t, back)
	if n := n3.sub.Received(); n != 0 {
		t.Fatalf("node 3, without subscribers, received %d pushes", n)
	}
	// The last subscriber leaving stops it: node 2 receives nothing more.
	back.Close(websocket.StatusNormalClosure, "")
	waitSubscribers(t, n2.g, "r1", 0)
	waitUntil(t, "node 2 to unsubscribe r1 in Redis", func() bool {
		return n2.sub.Following() == 0 && cl.rdb.PubSubNumSub(context.Background(), cl.prefix+"push:{r1}").Val()[cl.prefix+"push:{r1}"] == 1
	})
	before := n2.sub.Received()
	n1.pub.Publish(comment("r1", total))
	readAll(t, watcher, 1)
	if n := n2.sub.Received(); n != before {
		t.Fatalf("node 2 received %d pushes after its last subscriber left", n-before)
	}
}

// Deleting a topic on one node ends its subscriptions on every node: the last message
// first, then close 1000.
func TestClusterTopicDeletion(t *testing.T) {
	cl := startCluster(t, 3, redis.PublisherOptions{})
	var conns []*websocket.Conn
	for _, nd := range cl.nodes {
		conns = append(conns, dial(t, nd.srv, "topic=r1"))
		waitSubscribers(t, nd.g, "r1", 1)
	}
	cl.nodes[0].pub.Publish(newPush("r1", "r1", 5, 8, `{"roomId":"r1"}`))
	cl.nodes[0].pub.DeleteTopic("r1")
	for i, c := range conns {
		f := readFrame(t, c)
		if !strings.Contains(string(f.Message), `"type":8`) {
			t.Fatalf("node %d: frame %s, want the type 8", i+1, f.Message)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := c.Read(ctx)
		cancel()
		if code := websocket.CloseStatus(err); code != websocket.StatusNormalClosure {
			t.Fatalf("node %d: %v; want close 1000", i+1, err)
		}
	}
	// A client coming back with since on another node gets the type 8, then the close.
	late := dial(t, cl.nodes[2].srv, "topic=r1&since=1")
	if f := readFrame(t, late); !strings.Contains(string(f.Message), `"type":8`) {
		t.Fatalf("late reconnect: frame %s, want the type 8", f.Message)
	}
}

// A push whose fence is stale, or from a node whose membership lapsed, reaches nobody.
func TestClusterFencedPushesNeverReachSubscribers(t *testing.T) {
	cl := startCluster(t, 2, redis.PublisherOptions{})
	ctx := t.Context()
	cl.rdb.Set(ctx, cl.prefix+"member:{n1}", "i1|127.0.0.1:1", 0)
	cl.rdb.HSet(ctx, cl.prefix+"owner:room:{r1}", "node", "n1", "epoch", 3, "inc", "i1")
	store := cl.nodes[0].store
	n1 := store.NewPublisher(redis.PublisherOptions{Node: "n1", Incarnation: "i1", Logger: quietLogger()})
	n2 := store.NewPublisher(redis.PublisherOptions{Node: "n2", Incarnation: "i9", Logger: quietLogger()}) // no member key
	t.Cleanup(func() { _ = n1.Close(context.Background()); _ = n2.Close(context.Background()) })
	fenced := func(p actors.Push, epoch int64) actors.Push {
		p.Fence = actors.Fence{Kind: actors.KindRoom, ID: "r1", Node: "n1", Epoch: epoch}
		return p
	}
	c := dial(t, cl.nodes[1].srv, "topic=r1")
	waitSubscribers(t, cl.nodes[1].g, "r1", 1)

	n1.Publish(fenced(comment("r1", 1), 2)) // stale epoch
	n2.Publish(comment("r1", 2))            // membership gone
	waitUntil(t, "both refusals", func() bool { return n1.Refused() == 1 && n2.Refused() == 1 })
	n1.Publish(fenced(comment("r1", 3), 3))
	if f := readFrame(t, c); !strings.Contains(string(f.Message), `"comment":"c3"`) {
		t.Fatalf("first frame %s, want comment c3", f.Message)
	}
}

func TestClusterGatewayShutsDownWith1001(t *testing.T) {
	cl := startCluster(t, 1, redis.PublisherOptions{})
	nd := cl.nodes[0]
	c := dial(t, nd.srv, "topic=r1")
	waitSubscribers(t, nd.g, "r1", 1)
	nd.pub.Publish(comment("r1", 2))
	if f := readFrame(t, c); !strings.Contains(string(f.Message), `"comment":"c2"`) {
		t.Fatalf("frame %s, want comment c2", f.Message)
	}
	// The client reads on, as a real one does, so the close handshake completes.
	closed := make(chan error, 1)
	go func() {
		_, _, err := c.Read(context.Background())
		closed <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nd.g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("read after shutdown: %v; want close 1001", err)
	}
}
