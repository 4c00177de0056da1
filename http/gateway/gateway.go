// Package gateway is the built-in WebSocket push backend (docs/api.md, WebSocket protocol; push: websocket). Clients
// subscribe to a room's topic at GET /ws; every frame the node's push feed (package push)
// delivers is encoded once, kept in a bounded per-topic history for reconnects with since,
// and fanned out to per-connection bounded queues that shed likes before comments and close
// the connection rather than lose an important message silently.
package gateway

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"roomengine/internal/logcap"
	"roomengine/push"
)

// Options configures a Gateway. Zero values take the defaults noted on each field.
type Options struct {
	// HistorySize bounds the frames kept per topic for replay with since. Default 256.
	HistorySize int
	// QueueSize bounds the frames waiting for each connection's writer. Default 256.
	QueueSize int
	// WriteTimeout is how long a client may take no bytes at all while frames wait for
	// it; it is then disconnected as stuck. A client that reads slowly but steadily is
	// not: its queue sheds, and an important frame it cannot take closes it with 1013.
	// Default 5s.
	WriteTimeout time.Duration
	// WriteCoalesce bounds how often a writer starts a round of writes (writer.go): while
	// frames keep coming, a connection's frames of the last WriteCoalesce leave in one
	// system call; after a quiet spell the first frame leaves at once. It is the most a
	// frame waits for others to join it. Default 10ms; negative: no wait.
	WriteCoalesce time.Duration
	// PingInterval is how often idle and busy connections alike are pinged; a client that
	// does not answer within the interval is disconnected. Default 20s.
	PingInterval time.Duration
	// Feed is where the gateway's frames come from (package push): the room actors publish
	// to it, it numbers each push and delivers it to the gateway (Deliver), and it replays
	// since when the gateway does not hold a topic's whole history. Default: a new
	// push.Memory (a single node), numbering from SeqOrigin; the caller publishes to it
	// through Feed().
	Feed push.Feed
	// SeqOrigin is the default Memory feed's push.MemoryOptions.SeqOrigin (tests set a
	// fixed origin); unused with Feed set.
	SeqOrigin func() uint64
	// DeletedTopicGrace is how long a deleted topic's history stays for clients that
	// reconnect with since (they get the frames they missed, then a close). Default 1m.
	DeletedTopicGrace time.Duration
	// MaxTags bounds the tags of one subscription (default 16); MaxTagLength and
	// MaxTopicLength bound a tag's and the topic's length in bytes (defaults 128 and 256).
	// A subscription over a limit is refused with HTTP 400 before the upgrade.
	MaxTags, MaxTagLength, MaxTopicLength int
	// MaxConnsPerAddr bounds the connections open at once from one client address (default
	// 256; negative: no limit); one more is refused with HTTP 429 before the upgrade.
	MaxConnsPerAddr int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the gateway's metrics; nil registers none.
	Registerer prometheus.Registerer
	// FeedLag, in a cluster, is how far the node's room-change feed follower is behind; it
	// backs roomengine_push_feed_lag_seconds.
	FeedLag func() time.Duration
	// IdleTopicTTL: a topic without subscribers whose seq has not moved for this long is
	// forgotten (default DefaultIdleTopicTTL, 5m). MaxHistoryBytes caps the history of all
	// topics together (default DefaultMaxHistoryBytes; negative: no cap): beyond it the
	// longest-idle topics without subscribers are forgotten. EvictInterval is how often
	// both are checked (default 10s). See evict.go.
	IdleTopicTTL    time.Duration
	MaxHistoryBytes int64
	EvictInterval   time.Duration
}

// Gateway is the WebSocket push gateway: the push.Sink of its feed and an http.Handler for
// the /ws route. All methods are safe for concurrent use.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	topics  *topics
	metrics *metrics
	evict   *evictMetrics

	mu       sync.Mutex
	closed   bool
	conns    map[*conn]struct{}
	perAddr  map[string]int // connections open (or being opened) per client address
	shutdown chan struct{}  // closed by Shutdown
	running  sync.WaitGroup // connections being opened or served

	writers     []*writer
	nextWriter  atomic.Uint64
	stopWriters chan struct{}
	stopOnce    sync.Once
}

var _ push.Sink = (*Gateway)(nil)

// New returns a running gateway. It panics if Registerer already holds a different
// collector under one of the gateway's metric names, as prometheus.MustRegister does.
func New(opts Options) *Gateway {
	if opts.HistorySize <= 0 {
		opts.HistorySize = 256
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 256
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	if opts.WriteCoalesce == 0 {
		opts.WriteCoalesce = DefaultWriteCoalesce
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 20 * time.Second
	}
	// Topics and tags come from clients: the logger cuts long values.
	opts.Logger = logcap.Wrap(opts.Logger)
	if opts.MaxTags <= 0 {
		opts.MaxTags = DefaultMaxTags
	}
	if opts.MaxTagLength <= 0 {
		opts.MaxTagLength = DefaultMaxTagLength
	}
	if opts.MaxTopicLength <= 0 {
		opts.MaxTopicLength = DefaultMaxTopicLength
	}
	if opts.MaxConnsPerAddr == 0 {
		opts.MaxConnsPerAddr = DefaultMaxConnsPerAddr
	}
	if opts.DeletedTopicGrace <= 0 {
		opts.DeletedTopicGrace = time.Minute
	}
	if opts.IdleTopicTTL <= 0 {
		opts.IdleTopicTTL = DefaultIdleTopicTTL
	}
	if opts.Feed == nil {
		opts.Feed = push.NewMemory(push.MemoryOptions{SeqOrigin: opts.SeqOrigin, IdleTTL: opts.IdleTopicTTL})
	}
	registerFeedLag(opts.Registerer, opts.FeedLag)
	if opts.MaxHistoryBytes == 0 {
		opts.MaxHistoryBytes = DefaultMaxHistoryBytes
	}
	if opts.EvictInterval <= 0 {
		opts.EvictInterval = defaultEvictInterval
	}
	g := &Gateway{
		opts:        opts,
		log:         opts.Logger,
		topics:      newTopics(opts.Feed, opts.DeletedTopicGrace, writerCount()),
		metrics:     newMetrics(opts.Registerer),
		evict:       newEvictMetrics(opts.Registerer),
		conns:       make(map[*conn]struct{}),
		perAddr:     make(map[string]int),
		shutdown:    make(chan struct{}),
		stopWriters: make(chan struct{}),
	}
	g.startWriters(g.topics.parts, g.stopWriters)
	go g.runJanitor(opts.EvictInterval)
	opts.Feed.Attach(g)
	return g
}

// Feed is the gateway's feed (Options.Feed, or the Memory feed New made): on a single
// node, the actors.Publisher the rooms publish to.
func (g *Gateway) Feed() push.Feed { return g.opts.Feed }

// DefaultWriteCoalesce is Options.WriteCoalesce's default.
const DefaultWriteCoalesce = 10 * time.Millisecond

// Deliver is the one way a frame reaches the gateway: it records the frame, numbered by
// the feed, in the topic's history and hands it to the writers, which queue it for every
// matching subscriber. It never waits for a connection nor for the fan-out: a full queue
// sheds or, for an important frame, marks the connection for closing. A seq at or below
// the topic's last one is a repeat and is dropped, so no client gets a frame twice.
func (g *Gateway) Deliver(f push.Frame) {
	t := g.topics.lock(f.Topic)
	if f.Seq <= t.seq {
		t.mu.Unlock()
		return
	}
	t.seq = f.Seq
	g.fanOut(t, f.Tag, f.Importance, f.Body, f.Type)
}

// fanOut encodes the frame numbered t.seq, records it in the history and hands it to the
// writers of t's subscribers, which queue it for each (writer.go), then unlocks t. Its
// cost does not depend on the number of subscribers.
func (g *Gateway) fanOut(t *topic, tag string, importance int, body []byte, typ int) {
	data, ok := encodeFrame(t.name, t.seq, tag, importance, body)
	f := newFrame(t.seq, tag, importance, data)
	t.record(f, g.opts.HistorySize)
	for i := range t.parts {
		if p := &t.parts[i]; p.n > 0 {
			p.pending = append(p.pending, f)
			g.topics.wake(t, i)
		}
	}
	t.mu.Unlock()
	g.metrics.publishedOne()
	if !ok {
		g.log.Warn("push body is not valid JSON; sent as a string",
			"topic", t.name, "type", typ, "seq", f.seq)
	}
}

// EndTopic forgets the topic's history and seq, and ends its subscriptions: each
// connection sends what is queued, then closes with 1000 "topic deleted". The room asks
// for it live.topicDeleteDelay after it ended, so clients have had the type 8 long before.
func (g *Gateway) EndTopic(topic string) {
	g.topics.delete(topic)
}

// Stats is a point-in-time view of the gateway, mainly for tests and debugging.
type Stats struct {
	Connections int               // subscribed WebSocket connections
	Topics      int               // topics holding history or subscribers
	Published   uint64            // frames delivered
	FramesSent  uint64            // frames written to clients, replays included
	Dropped     map[string]uint64 // frames not delivered, by Reason* constant
	Refused     map[string]uint64 // subscriptions refused before the upgrade, by Refused* constant
	Disconnects map[string]uint64 // connections that ended, by End* cause
}

// Stats reports the counters that back the Prometheus metrics.
func (g *Gateway) Stats() Stats {
	m := g.metrics
	return Stats{
		Connections: int(m.connections.Load()),
		Topics:      g.topics.count(),
		Published:   m.nPublished.Load(),
		FramesSent:  m.nSent.Load(),
		Dropped: map[string]uint64{
			ReasonQueueFullShed:    m.nShed.Load(),
			ReasonQueueFullDropped: m.nDropped.Load(),
			ReasonSlowClientClosed: m.nClosed.Load(),
		},
		Refused:     m.refusedCounts(),
		Disconnects: m.disconnects(),
	}
}

// Subscribers is the number of connections subscribed to topic.
func (g *Gateway) Subscribers(topic string) int {
	return g.topics.subscribers(topic)
}

// Shutdown stops accepting connections, closes every connection with 1001 (going away)
// after what it was being sent, and waits for the connections to end. If ctx ends first,
// the remaining connections are cut without a close handshake and ctx's error is returned.
// The writers stop either way.
func (g *Gateway) Shutdown(ctx context.Context) error {
	defer g.stopOnce.Do(func() { close(g.stopWriters) })
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.shutdown)
		for c := range g.conns {
			c.finish(ending{websocket.StatusGoingAway, reasonShutdown, EndShutdown})
		}
	}
	g.mu.Unlock()

	done := make(chan struct{})
	go func() {
		g.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		for c := range g.conns {
			// The grace is over: drop the socket without a close frame. closeNow leaves
			// the writer and the topic, which take their locks; none of that may hold up
			// the caller.
			go c.closeNow()
		}
		g.mu.Unlock()
		return ctx.Err()
	}
}

// admit registers a connection attempt so Shutdown waits for it; false once shutting down.
func (g *Gateway) admit() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.running.Add(1)
	return true
}

// track registers a served connection; false once shutting down (the caller closes it).
func (g *Gateway) track(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conns[c] = struct{}{}
	return !g.closed
}

func (g *Gateway) untrack(c *conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}
