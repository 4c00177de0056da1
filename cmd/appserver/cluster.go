package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	nethttp "net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"roomengine/actors"
	"roomengine/config"
	apihttp "roomengine/http"
	"roomengine/http/console"
	"roomengine/http/peer"
	redisstore "roomengine/persistence/redis"
)

// errExpelled ends serve when the cluster declared this node dead (it was frozen or cut off
// from Redis past cluster.memberTTL): the process exits non-zero for its supervisor to
// start it again as a new member. It never acts under its old membership again.
var errExpelled = errors.New("cluster membership lapsed: this node was declared dead and stops")

// peerGrace is how long a node that left keeps answering its peers "ask again".
const peerGrace = 500 * time.Millisecond

// peerDialTimeout is how long reaching another node may take before it counts as gone.
const peerDialTimeout = time.Second

// clusterNode is what cluster mode adds to a node: its membership, the shared push feed,
// the listener of the other nodes' requests and the goroutines that follow the cluster.
type clusterNode struct {
	cfg        *config.Config
	log        *slog.Logger
	store      *redisstore.Store
	member     *redisstore.Member
	publisher  *redisstore.Publisher
	subscriber *redisstore.Subscriber
	follower   *redisstore.Follower
	feedFrom   string
	client     *peer.Client
	signer     *peer.Signer // nil without cluster.secret (loopback only)
	tls        *tls.Config  // nil without cluster.tls
	peerLn     net.Listener
	peerSrv    *nethttp.Server

	// pushRefused counts pushes the feed refused (stale fence, lapsed membership).
	pushRefused prometheus.Counter

	cancel   context.CancelFunc // ends the follower and the membership renewal
	done     sync.WaitGroup
	expelled chan struct{}
}

// joinCluster listens for the other nodes, joins the membership and prepares the feed. The
// feed position is read before the engine loads the rooms, so no change between the two is
// missed (a change seen twice is applied twice, to the same result).
func joinCluster(ctx context.Context, cfg *config.Config, store actors.Store, log *slog.Logger) (*clusterNode, error) {
	rs, ok := store.(*redisstore.Store)
	if !ok {
		return nil, errors.New("cluster mode needs store: redis")
	}
	ln, err := net.Listen("tcp", cfg.Cluster.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("config: cluster.bindAddr: cannot listen on %s: %v", cfg.Cluster.BindAddr, listenReason(err))
	}
	addr := advertised(cfg.Cluster.AdvertiseAddr, cfg.Cluster.BindAddr, ln.Addr())
	name := cfg.Cluster.Node
	if name == "" {
		name = generatedNodeName()
	}
	member, err := joinAs(ctx, rs, name, addr, cfg.Cluster.MemberTTL, log)
	if err != nil {
		_ = ln.Close()
		if errors.Is(err, redisstore.ErrNodeNameTaken) {
			return nil, fmt.Errorf("config: cluster.node: %w", err)
		}
		return nil, err
	}
	head, err := rs.FeedHead(ctx)
	if err != nil {
		_ = member.Leave(context.Background())
		_ = ln.Close()
		return nil, fmt.Errorf("cluster feed: %w", err)
	}
	n := &clusterNode{cfg: cfg, log: log.With("component", "cluster", "node", name), store: rs, member: member,
		feedFrom: head, signer: peer.NewSigner(cfg.Cluster.Secret, cfg.Cluster.PreviousSecret), peerLn: ln, expelled: make(chan struct{}),
		pushRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "roomengine_push_refused"})}
	n.client = peer.NewClient(peerDialTimeout, n.signer)
	if t := cfg.Cluster.TLS; t.Cert != "" {
		if n.tls, err = peer.TLSConfig(t.Cert, t.Key, t.CA); err != nil {
			_ = member.Leave(context.Background())
			_ = ln.Close()
			return nil, fmt.Errorf("config: %w", err)
		}
		n.client.UseTLS(n.tls)
	}
	if n.signer == nil {
		n.log.Warn("cluster messages are not signed (no cluster.secret): only processes of this machine may reach cluster.bindAddr")
	}
	n.follower = rs.NewFollower(redisstore.FollowerOptions{Name: "roomengine-feed-" + name, Logger: n.log})
	n.publisher = rs.NewPublisher(redisstore.PublisherOptions{Node: name, Incarnation: member.Incarnation(),
		HistoryCap: historySize, Refused: n.pushRefused, Logger: n.log})
	n.subscriber = rs.NewSubscriber(redisstore.SubscriberOptions{Follower: n.follower, Logger: n.log})
	n.log.Info("joined the cluster", "addr", addr, "memberTTL", cfg.Cluster.MemberTTL)
	return n, nil
}

// joinAs joins under name. A name still held may belong to a process that was killed a
// moment ago (a supervisor restarting it at once): its key lapses within one ttl unless it
// is renewed, so the name is tried again until then; a name a live node keeps renewing is
// refused. A Redis that cannot confirm the join yet (its replicas still syncing after a
// failover, with redis.waitReplicas) is asked again for as long as start-up waits for
// Redis: a join that landed unconfirmed holds the name, which the retry then waits out.
func joinAs(ctx context.Context, rs *redisstore.Store, name, addr string, ttl time.Duration, log *slog.Logger) (*redisstore.Member, error) {
	deadline := time.Now().Add(ttl + ttl/2)
	unconfirmedUntil := time.Now().Add(redisStartupWait)
	warned, waited := false, false
	for {
		member, err := rs.Join(ctx, name, addr, ttl)
		switch {
		case err == nil:
			return member, nil
		case errors.Is(err, redisstore.ErrNotReplicated) && time.Now().Before(unconfirmedUntil):
			if !waited {
				log.Warn("the join is not confirmed by the replicas yet; retrying", "node", name, "err", err)
				waited = true
			}
			// The name may now be held by this unconfirmed attempt.
			deadline = time.Now().Add(ttl + ttl/2)
		case !errors.Is(err, redisstore.ErrNodeNameTaken) || time.Now().After(deadline):
			return member, err
		case !warned:
			log.Warn("cluster.node is held by another member; waiting one memberTTL to see whether it is alive", "node", name)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(ttl / 10):
		}
	}
}

// advertised is the address the other nodes use: cluster.advertiseAddr, else bindAddr's host
// with the port actually bound (config validation requires advertiseAddr for a wildcard).
func advertised(advertise, bind string, bound net.Addr) string {
	if advertise != "" {
		return advertise
	}
	host, _, err := net.SplitHostPort(bind)
	_, port, err2 := net.SplitHostPort(bound.String())
	if err != nil || err2 != nil || host == "" {
		return bound.String()
	}
	return net.JoinHostPort(host, port)
}

var nodeNameUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// generatedNodeName is the host name and a random suffix: unique, and still telling the
// operator which machine a node runs on.
func generatedNodeName() string {
	host, _ := os.Hostname()
	host = strings.Trim(nodeNameUnsafe.ReplaceAllString(host, "-"), "-.")
	if len(host) > 40 {
		host = host[:40]
	}
	if host == "" {
		host = "node"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// engineConfig is the engine's side of the cluster.
func (n *clusterNode) engineConfig() *actors.ClusterConfig {
	return &actors.ClusterConfig{Placement: n.member, Lease: n.member.LeaseValid, Transport: n.client}
}

// start serves the other nodes, follows the room-change feed into the engine's read model,
// and renews the membership. (The gateway's frames come through n.subscriber, its feed.)
func (n *clusterNode) start(engine *actors.Engine) {
	n.peerSrv = peer.NewServer(engine, n.signer, n.log)
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.done.Add(3)
	go func() {
		defer n.done.Done()
		if err := n.peerSrv.Serve(n.listener()); err != nil && !errors.Is(err, nethttp.ErrServerClosed) {
			n.log.Error("cluster listener stopped", "err", err)
		}
	}()
	go func() {
		defer n.done.Done()
		h := feedHandler{engine: engine, store: n.store, log: n.log, self: n.member.Incarnation()}
		if err := n.follower.Run(ctx, n.feedFrom, h); err != nil && ctx.Err() == nil {
			n.log.Error("cluster feed follower stopped", "err", err)
		}
	}()
	go func() {
		defer n.done.Done()
		n.member.Run(ctx, func() { close(n.expelled) })
	}()
}

// listener is the cluster port as the peer server serves it: guarded, then TLS if set (the
// guard counts connections before their handshake, so a flood of handshakes is bounded too).
func (n *clusterNode) listener() net.Listener {
	ln := peer.Guard(n.peerLn, n.cfg.Cluster.MaxConns, peer.ProveWithin)
	if n.tls != nil {
		ln = tls.NewListener(ln, n.tls)
	}
	return ln
}

// leave hands the node's rooms and calls over: called after the engine stopped (every
// change durable) and the queued pushes reached the feed, so the next owner starts from
// everything this node acknowledged.
func (n *clusterNode) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.publisher.Close(ctx); err != nil {
		n.log.Warn("pushes not all written to the feed", "err", err)
	}
	if err := n.member.Leave(ctx); err != nil {
		n.log.Warn("leave incomplete; the other nodes take over after memberTTL", "err", err)
	} else {
		n.log.Info("left the cluster")
	}
	if n.peerSrv != nil {
		// Peers that still believed this node owned a room get "ask again" for a moment
		// instead of a closed connection mid-request (an unknown outcome for them).
		time.Sleep(peerGrace)
	}
	n.stop()
}

// abandon stops a node the cluster expelled: its queued pushes are refused by Redis anyway
// (they are sent for a short while only so the queue is not left mid-batch), and it has
// nothing to hand over.
func (n *clusterNode) abandon() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = n.publisher.Close(ctx)
	n.stop()
}

// stop ends the goroutines and closes the cluster listener.
func (n *clusterNode) stop() {
	if n.cancel != nil {
		n.cancel()
	}
	n.subscriber.Close()
	if n.peerSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.peerSrv.Shutdown(ctx)
		cancel()
	} else {
		_ = n.peerLn.Close()
	}
	n.done.Wait()
	n.client.Close()
}

// ready is /readyz in a cluster: a member whose lease holds, and Redis answering.
func (n *clusterNode) ready(ctx context.Context) error {
	if !n.member.LeaseValid() {
		return errors.New("not a cluster member")
	}
	return n.store.Ping(ctx)
}

// clusterView answers GET /admin/cluster.
type clusterView struct {
	node   *clusterNode
	engine *actors.Engine
}

func (v clusterView) ClusterInfo(ctx context.Context, roomID string) (apihttp.ClusterInfo, error) {
	ms, err := v.node.store.Members(ctx)
	if err != nil {
		return apihttp.ClusterInfo{}, actors.ErrStoreUnavailable(err)
	}
	info := apihttp.ClusterInfo{Node: v.node.member.Node(), Members: make([]apihttp.ClusterMember, 0, len(ms))}
	for _, m := range ms {
		info.Members = append(info.Members, apihttp.ClusterMember{Node: m.Node, Addr: m.Addr})
	}
	if roomID != "" {
		o, err := v.engine.OwnerOf(ctx, roomID)
		if err != nil {
			return apihttp.ClusterInfo{}, err
		}
		info.Owner = o.Node
	}
	return info, nil
}

// consoleClusterView shows the console the members and who owns the rooms it lists.
type consoleClusterView struct{ node *clusterNode }

// consoleOwnersMax bounds the owner lookups of one console refresh (one Redis call each).
const consoleOwnersMax = 200

func (v consoleClusterView) ClusterView(ctx context.Context, roomIDs []string) (console.ClusterView, error) {
	ms, err := v.node.store.Members(ctx)
	if err != nil {
		return console.ClusterView{}, err
	}
	self := v.node.member.Node()
	view := console.ClusterView{Mode: fmt.Sprintf("cluster of %d nodes", len(ms)), Self: self,
		Owners: map[string]string{}}
	for _, m := range ms {
		view.Members = append(view.Members, console.Member{Name: m.Node, Addr: m.Addr, State: "alive", Self: m.Node == self})
	}
	for i, id := range roomIDs {
		if i == consoleOwnersMax {
			break
		}
		if o, live, err := v.node.member.Lookup(ctx, actors.KindRoom, id); err == nil && live {
			view.Owners[id] = o.Node
		}
	}
	return view, nil
}

// feedHandler applies the room-change feed to the engine's read model.
type feedHandler struct {
	engine *actors.Engine
	store  *redisstore.Store
	log    *slog.Logger
	self   string // this node's incarnation: its own resets are applied already
}

func (h feedHandler) Room(room actors.Room) { h.engine.FeedRoom(room) }
func (h feedHandler) RoomDeleted(id string) { h.engine.FeedRoomGone(id) }

// Reset: /reset on another node wiped the store; the node that made it has already
// forgotten what it held, before it answered.
func (h feedHandler) Reset(key, from string) {
	if from == h.self {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.engine.FeedReset(ctx, key); err != nil {
		h.log.Warn("a reset made on another node not applied here", "key", key, "err", err)
	}
}

// Gap: entries were trimmed before this node read them: the read model is reloaded.
func (h feedHandler) Gap() {
	h.log.Warn("cluster feed position trimmed away: reloading rooms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rooms, err := h.store.LoadRooms(ctx)
	if err != nil {
		h.log.Error("rooms not reloaded after a feed gap", "err", err)
		return
	}
	h.engine.FeedResync(rooms)
}

// clusterCollector reports the cluster metrics when /metrics is read.
type clusterCollector struct {
	node     *clusterNode
	members  *prometheus.Desc
	owned    *prometheus.Desc
	takeover *prometheus.Desc
	fenced   *prometheus.Desc
	received *prometheus.Desc
	recover  *prometheus.Desc
	waited   *prometheus.Desc
	topics   *prometheus.Desc
}

func newClusterCollector(n *clusterNode) *clusterCollector {
	return &clusterCollector{node: n,
		members: prometheus.NewDesc("roomengine_cluster_members", "Live members of the cluster, as this node reads them from Redis.", nil, nil),
		owned: prometheus.NewDesc("roomengine_owned_entities", "Rooms and calls this node owns.",
			[]string{"kind"}, nil),
		takeover: prometheus.NewDesc("roomengine_ownership_takeovers_total",
			"Rooms and calls this node took over from a dead owner.", nil, nil),
		fenced: prometheus.NewDesc("roomengine_fenced_writes_total",
			"Writes and pushes carrying this node's ownership, by result (refused: the node had lost the entity).",
			[]string{"result"}, nil),
		received: prometheus.NewDesc("roomengine_push_feed_received_total",
			"Pushes this node received from Redis pub/sub: only those of topics it has a subscriber of.", nil, nil),
		recover: prometheus.NewDesc("roomengine_push_feed_recovered_total",
			"Frames this node read from a topic's shared history to fill a gap in what pub/sub delivered.", nil, nil),
		waited: prometheus.NewDesc("roomengine_push_feed_held_total",
			"Pushes held until this node's read model had the room change they follow.", nil, nil),
		topics: prometheus.NewDesc("roomengine_push_feed_topics",
			"Topics this node follows in Redis (it has a subscriber of them).", nil, nil),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.members
	ch <- c.owned
	ch <- c.takeover
	ch <- c.fenced
	ch <- c.received
	ch <- c.recover
	ch <- c.waited
	ch <- c.topics
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if ms, err := c.node.store.Members(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(len(ms)))
	}
	if counts, err := c.node.member.OwnedCounts(ctx); err == nil {
		for _, kind := range []string{actors.KindRoom, actors.KindCall} {
			ch <- prometheus.MustNewConstMetric(c.owned, prometheus.GaugeValue, float64(counts[kind]), kind)
		}
	}
	st := c.node.store.ClusterStats()
	ch <- prometheus.MustNewConstMetric(c.takeover, prometheus.CounterValue, float64(st.Takeovers))
	var m dto.Metric
	refusedPushes := 0.0
	if err := c.node.pushRefused.Write(&m); err == nil {
		refusedPushes = m.GetCounter().GetValue()
	}
	ch <- prometheus.MustNewConstMetric(c.fenced, prometheus.CounterValue, float64(st.FencedWritesOK), "ok")
	ch <- prometheus.MustNewConstMetric(c.fenced, prometheus.CounterValue, float64(st.FencedWritesRefused)+refusedPushes, "refused")
	sub := c.node.subscriber
	ch <- prometheus.MustNewConstMetric(c.received, prometheus.CounterValue, float64(sub.Received()))
	ch <- prometheus.MustNewConstMetric(c.recover, prometheus.CounterValue, float64(sub.Recovered()))
	ch <- prometheus.MustNewConstMetric(c.waited, prometheus.CounterValue, float64(sub.Waited()))
	ch <- prometheus.MustNewConstMetric(c.topics, prometheus.GaugeValue, float64(sub.Following()))
}
