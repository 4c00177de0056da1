package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// How a subscriber gets its topic: the gateway declares it to the feed (Follow, which
// returns once every later frame reaches Deliver) and, for a client that asked for since,
// replays what it missed. A feed that delivers every frame here (a single node's Memory)
// makes the gateway's own copy of the topic its history: the replay is copied in the same
// critical section that adds the subscriber. A feed that delivers by interest (the cluster's
// Redis feed) keeps the history: the subscriber is added first, so frames delivered
// meanwhile queue, then the feed's history is read; the writer skips queued frames the
// replay already sent (conn.after), so the handover is without gap or duplicate.

// Resync closes every subscriber with 1013: the node's feed lost frames (a gap), so its
// clients may have missed some; they reconnect with since and get them from the history.
func (g *Gateway) Resync() {
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

// subscribeAny subscribes a new connection and follows its topic. An error means the feed
// could not follow the topic or its history could not be read.
func (g *Gateway) subscribeAny(ctx context.Context, name string, tags tagSet, since uint64, replay bool) (*conn, *topic, []*frame, error) {
	if replay && !g.opts.Feed.DeliversAll() {
		return g.subscribeShared(ctx, name, tags, since)
	}
	c, t, missed := g.subscribe(name, tags, since, replay)
	if err := g.follow(ctx, t, c); err != nil {
		return nil, nil, nil, err
	}
	return c, t, missed, nil
}

// follow declares c, just added to t, to the feed. A connection to a deleted topic (a
// detached, dead one) follows nothing.
func (g *Gateway) follow(ctx context.Context, t *topic, c *conn) error {
	if len(t.parts) == 0 {
		return nil
	}
	if err := g.opts.Feed.Follow(ctx, t.name); err != nil {
		g.unsubscribe(t, c)
		return err
	}
	return nil
}

// subscribeShared subscribes a connection that asked for since when the feed holds the
// history: subscribe and follow first, then read what the client missed.
func (g *Gateway) subscribeShared(ctx context.Context, name string, tags tagSet, since uint64) (*conn, *topic, []*frame, error) {
	c := g.newConn(tags)
	_, gone := g.topics.deleted(name, 0, tagSet{}, false)
	t := &topic{name: name, dead: true} // deleted here a moment ago: belongs to no topic
	if !gone {
		t = g.topics.lock(name)
		t.addSub(c)
		t.mu.Unlock()
	}
	g.metrics.connOpened()
	if err := g.follow(ctx, t, c); err != nil {
		return nil, nil, nil, err
	}
	var missed []*frame
	applied, deleted, err := g.opts.Feed.ReadHistory(ctx, name, since,
		func(seq uint64, tag string, importance int, body []byte) {
			if tags.match(tag) {
				data, _ := encodeFrame(name, seq, tag, importance, body)
				missed = append(missed, newFrame(seq, tag, importance, data))
			}
		})
	if err != nil {
		g.unsubscribe(t, c)
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
		Help: "How far this node's follower of the room-change feed (the read models) is behind it (0 when caught up).",
	}, func() float64 { return lag().Seconds() }))
}
