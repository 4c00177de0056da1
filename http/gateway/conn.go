package gateway

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Close reasons are fixed strings: the WebSocket library limits them to 123 bytes and a
// client can match on them.
const (
	reasonQueueFull = "queue full, reconnect with since"
	reasonShutdown  = "server shutting down"
	reasonDeleted   = "topic deleted"
	reasonFeedGap   = "frames missed, reconnect with since"
)

// clientReadLimit bounds what a client may send: the protocol is push-only, so anything
// beyond a small message is a misbehaving client and the library closes it with 1009.
const clientReadLimit = 4096

// conn is one subscribed WebSocket. Publish only touches q (and tags, which never change);
// the rest belongs to the goroutine running serve.
type conn struct {
	g     *Gateway
	ws    *websocket.Conn
	raw   *coalescingConn // the socket under ws, nil if the handshake did not go through it
	tags  tagSet
	q     *queue
	spare []*frame
	// after, in cluster mode, is the last seq the since replay sent: queued frames up to it
	// were delivered while the history was read, and are skipped (0: nothing to skip).
	after uint64

	pinging atomic.Bool
	helpers sync.WaitGroup // the reader and any ping in flight
}

// serve runs the connection to its end on the handler's goroutine, which is therefore the
// connection's single writer.
// subscribe registers a new connection's queue on its topic. Subscribing and copying the
// history under the topic lock is what guarantees no gap and no duplicate: every seq up to
// t.seq is in missed, every later one goes to the queue.
func (g *Gateway) subscribe(name string, tags tagSet, since uint64, replay bool) (*conn, *topic, []*frame) {
	c := &conn{g: g, tags: tags, q: newQueue(g.opts.QueueSize)}
	if missed, ok := g.topics.deleted(name, since, tags, replay); ok {
		// The room's topic was deleted a moment ago: replay what the client missed, then
		// close with 1000 "topic deleted", as its connection would have been closed. The
		// connection belongs to no topic (a detached, dead one makes release a no-op).
		c.q.end()
		g.metrics.connOpened()
		return c, &topic{name: name, dead: true}, missed
	}
	t := g.topics.lock(name)
	var missed []*frame
	if replay {
		missed = t.missed(since, tags)
	}
	t.subs = append(t.subs, c)
	t.mu.Unlock()
	// Counted here, not after the handshake, so that the gauge already includes a client
	// whose upgrade has succeeded.
	g.metrics.connOpened()
	return c, t, missed
}

// unsubscribe undoes subscribe.
func (g *Gateway) unsubscribe(t *topic, c *conn) {
	g.topics.release(t, c)
	g.metrics.connClosed()
}

// serve runs an upgraded, subscribed connection until it ends.
func (g *Gateway) serve(c *conn, t *topic, missed []*frame, name string) {
	ws := c.ws
	ws.SetReadLimit(clientReadLimit)
	g.track(c)
	defer g.untrack(c)

	// The request context is not used: after the hijack it says nothing about the socket.
	ctx, cancel := context.WithCancel(context.Background())
	c.helpers.Go(func() { c.readLoop(ctx, cancel) })

	end := c.writeLoop(ctx, missed)

	g.unsubscribe(t, c)
	g.metrics.ended(end.cause)
	switch end.cause {
	case EndQueueFull:
		g.log.Info("closing slow push client", "topic", name)
	case EndWriteFailed:
		g.log.Info("dropping stuck push client", "topic", name, "writeTimeout", g.opts.WriteTimeout)
	}
	if end.code != 0 {
		_ = ws.Close(end.code, end.reason)
	}
	_ = ws.CloseNow()
	cancel()
	c.helpers.Wait()
}

// readLoop discards whatever the client sends. It must run for the library to answer
// pings, receive pongs and complete the close handshake; it ends the connection's context
// when the client goes away.
func (c *conn) readLoop(ctx context.Context, cancel context.CancelFunc) {
	defer cancel()
	for {
		_, r, err := c.ws.Reader(ctx)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return
		}
	}
}

// Why a connection ended, as the label of roomengine_ws_disconnects_total.
const (
	EndClientGone   = "client_gone"   // the client closed, went away or missed a ping
	EndWriteFailed  = "write_failed"  // a write did not finish within WriteTimeout (a stuck client)
	EndQueueFull    = "queue_full"    // an important frame could not be queued: closed with 1013
	EndShutdown     = "shutdown"      // the server shut down: closed with 1001
	EndTopicDeleted = "topic_deleted" // the room's topic was deleted: closed with 1000
	EndFeedGap      = "feed_gap"      // the node's cluster feed lost frames: closed with 1013
)

// ending is how writeLoop ended: the close code to send (0: none, the socket is gone or
// stuck) and the cause counted in the metrics.
type ending struct {
	code   websocket.StatusCode
	reason string
	cause  string
}

// writeLoop sends the replay, then live frames until the client leaves, the queue
// overflows, the topic is deleted or the gateway shuts down.
func (c *conn) writeLoop(ctx context.Context, missed []*frame) ending {
	if err := c.write(ctx, missed); err != nil {
		return c.writeFailed(ctx)
	}
	ping := time.NewTicker(c.g.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.q.wake:
			// Read before take: every frame queued before the topic ended is in this batch.
			ended := c.q.ended.Load()
			batch, failed := c.q.take(c.spare)
			if failed {
				if c.q.gap.Load() {
					return ending{websocket.StatusTryAgainLater, reasonFeedGap, EndFeedGap}
				}
				return ending{websocket.StatusTryAgainLater, reasonQueueFull, EndQueueFull}
			}
			if c.after != 0 {
				batch = c.skipReplayed(batch)
			}
			err := c.write(ctx, batch)
			clear(batch) // let the history alone decide how long frames live
			c.spare = batch[:0]
			if err != nil {
				return c.writeFailed(ctx)
			}
			if ended {
				return ending{websocket.StatusNormalClosure, reasonDeleted, EndTopicDeleted}
			}
		case <-ping.C:
			c.ping(ctx)
		case <-ctx.Done():
			return ending{cause: EndClientGone}
		case <-c.g.shutdown:
			return ending{websocket.StatusGoingAway, reasonShutdown, EndShutdown}
		}
	}
}

// writeFailed classifies a failed write: after the client left, the write fails because of
// that; otherwise the client stopped taking data (no close frame can get through then).
func (c *conn) writeFailed(ctx context.Context) ending {
	if ctx.Err() != nil {
		return ending{cause: EndClientGone}
	}
	return ending{cause: EndWriteFailed}
}

// write sends frames in order, each within WriteTimeout. It stops early once the queue
// has failed: the client is about to be told to reconnect, so more frames only delay that.
// The frames of a batch are collected by the coalescing connection and leave in one write
// bounded by WriteTimeout.
func (c *conn) write(ctx context.Context, frames []*frame) error {
	if len(frames) == 0 {
		return nil
	}
	sent := 0
	defer func() { c.g.metrics.sent(sent) }()
	if c.raw == nil { // not hijacked through coalescingWriter (tests that build conns directly)
		for _, f := range frames {
			wctx, cancel := context.WithTimeout(ctx, c.g.opts.WriteTimeout)
			err := c.ws.Write(wctx, websocket.MessageText, f.data)
			cancel()
			if err != nil {
				return err
			}
			sent++
		}
		return nil
	}
	c.raw.begin()
	pending := 0 // bytes collected since the last flush
	for _, f := range frames {
		if c.q.failed.Load() {
			break
		}
		// Into memory: no deadline needed, the flush carries it.
		if err := c.ws.Write(ctx, websocket.MessageText, f.data); err != nil {
			_ = c.raw.flush(time.Now().Add(c.g.opts.WriteTimeout))
			return err
		}
		sent++
		// A batch leaves in chunks, each with its own deadline: a client that reads slowly
		// but steadily keeps up chunk by chunk (its queue sheds and, at worst, it is told
		// 1013), instead of being cut off because a whole megabyte batch took over
		// WriteTimeout.
		if pending += len(f.data); pending >= flushChunk {
			if err := c.raw.flush(time.Now().Add(c.g.opts.WriteTimeout)); err != nil {
				return err
			}
			c.raw.begin()
			pending = 0
		}
	}
	return c.raw.flush(time.Now().Add(c.g.opts.WriteTimeout))
}

// flushChunk is how many bytes of frames a writer collects before it writes them out.
const flushChunk = 64 << 10

// ping runs beside the writer because Ping waits for the pong, and a frame burst must not
// wait behind a round trip. A client that does not answer within one interval is cut off.
func (c *conn) ping(ctx context.Context) {
	if !c.pinging.CompareAndSwap(false, true) {
		return
	}
	c.helpers.Go(func() {
		defer c.pinging.Store(false)
		pctx, cancel := context.WithTimeout(ctx, c.g.opts.PingInterval)
		defer cancel()
		if err := c.ws.Ping(pctx); err != nil && ctx.Err() == nil {
			_ = c.ws.CloseNow()
		}
	})
}
