package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomengine/actors"
)

// Cluster mode (Options.History set). Every node's pushes are numbered by one script in
// the shared store and reach every node through the cluster feed, in one order; the
// node's feed follower hands them to Deliver, TopicDeleted to DeleteTopic and a feed gap
// to ReconnectAll. The gateway then numbers nothing itself, and a client's since is
// replayed from the shared history, so it may reconnect to any node.

// HistorySource is the cluster's shared per-topic history (persistence/redis implements
// it). ReadHistory calls frame, oldest first, for each frame of topic with a seq above
// since, and returns the since it applied: 0 when since is above the topic's current seq
// (the client saw a previous life of the topic, so everything held is news to it).
// deleted reports a topic deleted a moment ago whose history is kept for late reconnects.
type HistorySource interface {
	ReadHistory(ctx context.Context, topic string, since uint64,
		frame func(seq uint64, tag string, importance int, body []byte)) (applied uint64, deleted bool, err error)
}

// noOrigin is the seq origin in cluster mode: a topic's seqs come from the cluster.
func noOrigin() uint64 { return 0 }

// Deliver records a frame numbered by the cluster in the topic's history and queues it for
// every matching subscriber, exactly as Publish does with a seq of its own. A seq at or
// below the topic's last one is a repeat and is dropped, so no client gets a frame twice.
func (g *Gateway) Deliver(topic string, seq uint64, tag string, importance int, body []byte) {
	t := g.topics.lock(topic)
	if seq <= t.seq {
		t.mu.Unlock()
		return
	}
	t.seq = seq
	g.fanOut(t, tag, importance, body, 0)
}

// ReconnectAll closes every subscriber with 1013: the node's feed lost entries (a gap),
// so its clients may have missed frames; they reconnect with since and get them from the
// shared history.
func (g *Gateway) ReconnectAll() {
	g.topics.each(func(t *topic) {
		for i := range t.parts {
			p := &t.parts[i]
			p.mu.Lock()
			for _, c := range p.subs {
				c.q.resync()
			}
			p.mu.Unlock()
		}
	})
}

// misrouted drops a Publish in cluster mode: the node's Publisher must be the cluster's,
// and frames reach this gateway through the feed. Numbering one here would give the topic
// two seq sequences.
func (g *Gateway) misrouted(p actors.Push) {
	if !g.warnedPublish.Swap(true) {
		g.log.Error("gateway in cluster mode: Publish ignored; pushes go through the cluster feed",
			"topic", p.Topic, "type", p.Type)
	}
}

// subscribeAny subscribes a new connection: from the shared history in cluster mode when
// the client asked for since, else as on one node. An error means the history could not be
// read.
func (g *Gateway) subscribeAny(ctx context.Context, name string, tags tagSet, since uint64, replay bool) (*conn, *topic, []*frame, error) {
	if g.opts.History != nil && replay {
		return g.subscribeShared(ctx, name, tags, since)
	}
	c, t, missed := g.subscribe(name, tags, since, replay)
	return c, t, missed, nil
}

// subscribeShared subscribes a connection that asked for since in cluster mode. It
// subscribes first, so frames delivered meanwhile queue, then reads what the client
// missed from the shared history; the writer skips queued frames the replay already sent
// (conn.after), so the handover is without gap or duplicate.
func (g *Gateway) subscribeShared(ctx context.Context, name string, tags tagSet, since uint64) (*conn, *topic, []*frame, error) {
	c := g.newConn(tags)
	_, gone := g.topics.deleted(name, 0, tagSet{}, false)
	t := &topic{name: name, dead: true} // deleted here a moment ago: belongs to no topic
	if !gone {
		t = g.topics.lock(name)
		t.addSub(c)
		t.mu.Unlock()
	}
	var missed []*frame
	applied, deleted, err := g.opts.History.ReadHistory(ctx, name, since,
		func(seq uint64, tag string, importance int, body []byte) {
			if tags.match(tag) {
				data, _ := encodeFrame(name, seq, tag, importance, body)
				missed = append(missed, newFrame(seq, tag, importance, data))
			}
		})
	if err != nil {
		g.topics.release(t, c)
		return nil, nil, nil, err
	}
	c.after = applied
	if n := len(missed); n > 0 {
		c.after = max(c.after, missed[n-1].seq)
	}
	if gone || deleted {
		// As on one node: the frames missed before the deletion, then close 1000.
		c.q.end()
	}
	g.metrics.connOpened()
	return c, t, missed, nil
}

// skipReplayed drops the leading frames of a batch that the replay already sent. Frames
// arrive in seq order, so once a newer one passes the check is over for good.
func (c *conn) skipReplayed(batch []*frame) []*frame {
	i := 0
	for i < len(batch) && batch[i].seq <= c.after {
		i++
	}
	if i < len(batch) {
		c.after = 0
	}
	n := copy(batch, batch[i:])
	clear(batch[n:])
	return batch[:n]
}

// each calls fn for every live topic with its lock held.
func (ts *topics) each(fn func(t *topic)) {
	for i := range ts.shards {
		s := &ts.shards[i]
		s.mu.Lock()
		for _, t := range s.m {
			t.mu.Lock()
			fn(t)
			t.mu.Unlock()
		}
		s.mu.Unlock()
	}
}

// registerFeedLag exports the feed follower's lag as roomengine_push_feed_lag_seconds.
func registerFeedLag(reg prometheus.Registerer, lag func() time.Duration) {
	if reg == nil || lag == nil {
		return
	}
	register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "roomengine_push_feed_lag_seconds",
		Help: "How far this node's cluster push feed follower is behind the feed (0 when caught up).",
	}, func() float64 { return lag().Seconds() }))
}
