package cluster

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

	"roomengine/actors"
	"roomengine/config"
	apihttp "roomengine/http"
	"roomengine/http/console"
	"roomengine/http/gateway"
	"roomengine/http/peer"
	redisstore "roomengine/persistence/redis"
)

// peerGrace is how long a node that left keeps answering its peers "ask again".
const peerGrace = 500 * time.Millisecond

// peerDialTimeout is how long reaching another node may take before it counts as gone.
const peerDialTimeout = time.Second

// Node is what cluster mode adds to a node: its membership, the shared push feed, the
// listener of the other nodes' requests and the goroutines that follow the cluster.
type Node struct {
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

var _ Topology = (*Node)(nil)

// Join listens for the other nodes, joins the membership and prepares the feed. The feed
// position is read before the engine loads the rooms, so no change between the two is
// missed (a change seen twice is applied twice, to the same result).
func Join(ctx context.Context, opts Options) (*Node, error) {
	cfg, log := opts.Config, opts.Logger
	rs, ok := opts.Store.(*redisstore.Store)
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
	member, err := joinAs(ctx, rs, name, addr, cfg.Cluster.MemberTTL, opts.StartupWait, log)
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
	n := &Node{cfg: cfg, log: log.With("component", "cluster", "node", name), store: rs, member: member,
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
	n.publisher = rs.NewPublisher(redisstore.PublisherOptions{Node: name, Incarnation: member.Incarnation(), Lease: member.LeaseValid,
		HistoryCap: opts.HistorySize, Refused: n.pushRefused, Logger: n.log})
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
func joinAs(ctx context.Context, rs *redisstore.Store, name, addr string, ttl, startupWait time.Duration, log *slog.Logger) (*redisstore.Member, error) {
	deadline := time.Now().Add(ttl + ttl/2)
	unconfirmedUntil := time.Now().Add(startupWait)
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

// Gateway: frames come numbered from Redis, for the topics this node has subscribers of;
// since replays from the shared history.
func (n *Node) Gateway(opts *gateway.Options) {
	opts.Feed, opts.FeedLag = n.subscriber, n.follower.Lag
}

// Feed: every node's pushes are numbered in Redis and reach the gateways that follow their
// topics through each node's Subscriber.
func (n *Node) Feed(*gateway.Gateway) actors.Publisher { return n.publisher }

// Register adds the cluster metrics.
func (n *Node) Register(reg prometheus.Registerer) { reg.MustRegister(newCollector(n)) }

// Engine is the engine's side of the cluster.
func (n *Node) Engine() *actors.ClusterConfig {
	return &actors.ClusterConfig{Placement: n.member, Lease: n.member.LeaseValid, Transport: n.client}
}

// Ready is /readyz in a cluster: a member whose lease holds, and Redis answering.
func (n *Node) Ready(actors.Store) func(context.Context) error { return n.ready }

// Lease: an expelled node sends nothing more; its rooms are other nodes' now.
func (n *Node) Lease() func() bool { return n.member.LeaseValid }

// AdminView answers GET /admin/cluster.
func (n *Node) AdminView(engine *actors.Engine) apihttp.ClusterView {
	return adminView{node: n, engine: engine}
}

// ConsoleView shows the console the members and who owns the rooms it lists.
func (n *Node) ConsoleView() console.Cluster { return consoleView{node: n} }

// Expelled is closed when the cluster declared this node dead.
func (n *Node) Expelled() <-chan struct{} { return n.expelled }

// Stop hands the node's rooms and calls over (leave), or only stops a node the cluster
// expelled (abandon).
func (n *Node) Stop(expelled bool) {
	if expelled {
		n.abandon()
		return
	}
	n.leave()
}

// Start serves the other nodes, follows the room-change feed into the engine's read model,
// and renews the membership. (The gateway's frames come through n.subscriber, its feed.)
func (n *Node) Start(engine *actors.Engine) {
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
func (n *Node) listener() net.Listener {
	ln := peer.Guard(n.peerLn, n.cfg.Cluster.MaxConns, peer.ProveWithin)
	if n.tls != nil {
		ln = tls.NewListener(ln, n.tls)
	}
	return ln
}

// leave hands the node's rooms and calls over: called after the engine stopped (every
// change durable) and the queued pushes reached the feed, so the next owner starts from
// everything this node acknowledged.
func (n *Node) leave() {
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
func (n *Node) abandon() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = n.publisher.Close(ctx)
	n.stop()
}

// stop ends the goroutines and closes the cluster listener.
func (n *Node) stop() {
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
func (n *Node) ready(ctx context.Context) error {
	if !n.member.LeaseValid() {
		return errors.New("not a cluster member")
	}
	return n.store.Ping(ctx)
}

// listenReason is the innermost error of a failed listen ("bind: address already in use"),
// without the operation and address the message already names.
func listenReason(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
