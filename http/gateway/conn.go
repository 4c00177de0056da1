package gateway

import (
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Close reasons are fixed strings: a close frame holds at most 123 bytes of reason, and a
// client can match on them.
const (
	reasonQueueFull = "queue full, reconnect with since"
	reasonShutdown  = "server shutting down"
	reasonDeleted   = "topic deleted"
	reasonFeedGap   = "frames missed, reconnect with since"
)

// clientReadLimit bounds what a client may send: the protocol is push-only, so anything
// beyond a small message is a misbehaving client, closed with 1009 (wsconn.go).
const clientReadLimit = 4096

// conn is one subscribed WebSocket. An idle one holds its queue (empty), its sock and its
// entries in the lists of its topic, its writer and the poller: no goroutine, no buffer.
// Its frames are written by its writer (writer.go), which also retries the backlog of a
// client that is behind (coalesce.go); what the client sends is read when the poller says
// it is there (wsconn.go, poll_linux.go).
type conn struct {
	g    *Gateway
	w    *writer
	sock *sock
	tags tagSet
	q    *queue
	rd   frameReader // the client's bytes (wsconn.go), owned by the reading goroutine

	// Owned by the writer's goroutine.
	spare  []*frame
	missed []*frame // the since replay, written before anything queued
	// after, in cluster mode, is the last seq the since replay sent: queued frames up to it
	// were delivered while the history was read, and are skipped (0: nothing to skip).
	after uint64
	// from is the topic's seq when c subscribed: later frames are live for c, earlier ones
	// come from the replay if at all (set under the topic's lock).
	from uint64

	nextPing time.Time // guarded by w.mu

	scheduled atomic.Bool            // on its writer's ready list
	ready     atomic.Bool            // the handshake is done: the writer may write
	end       atomic.Pointer[ending] // how it ends, once decided (the first cause wins)
	pinging   atomic.Bool            // a ping is waiting for its pong
	closeSent atomic.Bool            // our close frame is written (or the client's answered)
	closed    atomic.Bool            // the socket is closed and the connection undone
	pollID    atomic.Uint64          // its id in the poller (0: not watched)
	release   func()                 // the handler's bookkeeping, undone when the connection ends
	topic     *topic                 // what it is subscribed to
	name      string                 // the topic's name, for logs
}

func (g *Gateway) newConn(tags tagSet) *conn {
	c := &conn{g: g, w: g.writerFor(), tags: tags, q: newQueue(g.opts.QueueSize)}
	c.q.owner = c
	return c
}

// schedule puts c on its writer's ready list unless it is already there. Before the
// handshake it only records that there is something to write (the writer is told once
// the connection is served).
func (c *conn) schedule() {
	if !c.ready.Load() { // set after c.w
		return
	}
	if c.scheduled.CompareAndSwap(false, true) {
		c.w.add(c)
	}
}

// subscribe registers a new connection's queue on its topic. Subscribing and copying the
// history under the topic lock is what guarantees no gap and no duplicate: every seq up to
// t.seq is in missed, every later one goes to the queue.
func (g *Gateway) subscribe(name string, tags tagSet, since uint64, replay bool) (*conn, *topic, []*frame) {
	c := g.newConn(tags)
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
	t.addSub(c)
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

// serve starts an upgraded, subscribed connection: its writer takes over the replay and
// the queue, and the poller its reads; the handler's goroutine (with the HTTP server's
// state for the request) is let go. early is what the client sent after its request.
// release runs when the connection has ended.
func (g *Gateway) serve(c *conn, t *topic, missed []*frame, name string, early []byte, release func()) {
	c.topic, c.name, c.missed, c.release = t, name, missed, release
	c.w.mu.Lock()
	c.nextPing = time.Now().Add(g.opts.PingInterval)
	c.w.mu.Unlock()
	c.w.join(c)
	c.sock.attach(c)
	c.ready.Store(true)
	if !g.track(c) {
		c.finish(ending{websocket.StatusGoingAway, reasonShutdown, EndShutdown})
	}
	c.schedule() // the replay and whatever queued during the handshake
	if len(early) > 0 {
		c.onRead(early)
	}
	if !c.w.poll.watch(c) {
		go c.readBlocking()
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

// ending is how a connection ends: the close code to send (0: none, the socket is gone or
// stuck) and the cause counted in the metrics.
type ending struct {
	code   websocket.StatusCode
	reason string
	cause  string
}

// writeFailed classifies a failed write: past its deadline the client stopped taking data
// (no close frame can get through then); any other failure means the client went away.
func writeFailed(err error) ending {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ending{cause: EndWriteFailed}
	}
	return ending{cause: EndClientGone}
}

// finish ends the connection for e's reason, once: what was handed to the socket goes
// first, then the close frame (if e has a code), then the socket is closed and the
// connection undone (closeNow).
func (c *conn) finish(e ending) {
	if !c.end.CompareAndSwap(nil, &e) {
		return
	}
	if e.code == 0 {
		c.closeNow()
		return
	}
	go c.closeGracefully(e)
}

// flush is the writer's turn at c: its backlog first (even when the connection is ending:
// the close frame waits for it), then the replay, then everything queued. A connection
// whose socket still holds a backlog is tried again on the writer's next round, and its
// queue is left alone meanwhile, so it fills and sheds as the client falls behind.
func (c *conn) flush(w *writer) {
	c.scheduled.Store(false) // before take: a frame queued after it schedules c again
	if !c.ready.Load() {
		return
	}
	if !c.send(w, nil) || c.end.Load() != nil {
		return
	}
	if missed := c.missed; missed != nil {
		c.missed = nil
		if !c.send(w, missed) {
			return
		}
	}
	// Read before take: every frame queued before the topic ended is in this batch.
	ended := c.q.ended.Load()
	batch, failed := c.q.take(c.spare)
	if failed {
		if c.q.gap.Load() {
			c.finish(ending{websocket.StatusTryAgainLater, reasonFeedGap, EndFeedGap})
		} else {
			c.finish(ending{websocket.StatusTryAgainLater, reasonQueueFull, EndQueueFull})
		}
		return
	}
	if c.after != 0 {
		batch = c.skipReplayed(batch)
	}
	ok := c.send(w, batch)
	clear(batch) // let the history alone decide how long frames live
	c.spare = batch[:0]
	if ok && ended {
		c.finish(ending{websocket.StatusNormalClosure, reasonDeleted, EndTopicDeleted})
	}
}

// send hands frames to the socket after its backlog (coalesce.go) and counts them as sent
// (the writer adds its count to the metrics once per round). It reports whether the socket
// took everything: if it failed, the connection is finished; if a backlog remains, c is
// tried again on the writer's next round (and an ending topic closes it then).
func (c *conn) send(w *writer, frames []*frame) bool {
	behind, err := c.sock.send(frames, &w.scratch)
	if err != nil {
		c.finish(writeFailed(err))
		return false
	}
	w.sent += len(frames)
	if behind {
		w.again(c)
	}
	return !behind
}

// flushChunk is how many bytes of frames go to the socket in one write (at least one
// frame), so a writer's buffer stays small whatever the backlog.
const flushChunk = 64 << 10

// ping is the writer's sweep at a connection due a ping. A client that has not answered
// the last one, sent an interval ago, is cut off.
func (c *conn) ping() {
	if c.end.Load() != nil {
		return
	}
	if c.pinging.Swap(true) {
		c.finish(ending{cause: EndClientGone})
		return
	}
	c.control(opPing, nil)
}
