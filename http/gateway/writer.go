package gateway

import (
	"runtime"
	"sync"
	"time"
)

// The gateway fans out and writes with a few goroutines (one per CPU), not one per
// connection. A frame published to a room of 10,000 viewers wakes a writer or two instead of
// 10,000 goroutines, so the request that caused it is not queued behind them for the CPU,
// and a writer holds one reused buffer for all its connections instead of one per
// connection. Each writer owns a part of every topic's subscribers (topicPart): a publish
// appends the frame to each part and wakes the writers; a writer, woken once, offers the
// frames to its subscribers' queues (shedding there as before), then writes every ready
// connection's queued frames in one system call per 64 KiB. Rounds are at most one per Options.WriteCoalesce: while frames keep coming, a
// connection's frames of the last few milliseconds leave together (each still its own
// WebSocket frame), and the first frame after a quiet spell leaves at once. What a client's
// socket cannot take at once waits as the connection's backlog, tried again each round
// (coalesce.go): a slow client costs the writer a failed write per round, no goroutine.

// writer is one of the gateway's socket writers.
type writer struct {
	g    *Gateway
	idx  int           // its part of every topic
	wake chan struct{} // one pending signal at most
	poll *poller       // reads its connections' client bytes (shared by all writers)

	mu      sync.Mutex
	topics  []*topic // topics with frames to fan out (or an end) in this writer's part
	ready   []*conn  // connections with something to write
	members map[*conn]struct{}
	// kicked is set when a wake-up was sent since the writer last took its lists: what
	// is added meanwhile is taken by the round that wake-up starts.
	kicked bool

	// Owned by the writer's goroutine.
	spare       []*conn
	spareTopics []*topic
	scratch     []byte  // the chunk being written
	carry       []*conn // connections whose socket kept a backlog: tried again next round
	due         []*conn // connections due a ping
	sent        int     // frames written in this round, counted once at its end
}

// writerCount is how many writers a gateway runs: one per CPU.
func writerCount() int { return max(runtime.GOMAXPROCS(0), 1) }

// startWriters starts the writers; they stop when stop is closed.
func (g *Gateway) startWriters(n int, stop <-chan struct{}) {
	g.writers = make([]*writer, n)
	poll := newPoller(stop)
	for i := range g.writers {
		w := &writer{g: g, idx: i, wake: make(chan struct{}, 1), poll: poll, members: make(map[*conn]struct{})}
		g.writers[i] = w
		go w.run(stop)
	}
	g.topics.writers = g.writers
}

// writerFor spreads connections over the writers, round robin.
func (g *Gateway) writerFor() *writer {
	return g.writers[g.nextWriter.Add(1)%uint64(len(g.writers))]
}

func (w *writer) join(c *conn) {
	w.mu.Lock()
	w.members[c] = struct{}{}
	w.mu.Unlock()
}

func (w *writer) leave(c *conn) {
	w.mu.Lock()
	delete(w.members, c)
	w.mu.Unlock()
}

// add marks c ready; the first addition since the writer's last round wakes it.
func (w *writer) add(c *conn) {
	w.mu.Lock()
	w.ready = append(w.ready, c)
	w.kick()
	w.mu.Unlock()
}

// addTopic queues t, whose part of this writer has frames pending (or an end).
func (w *writer) addTopic(t *topic) {
	w.mu.Lock()
	w.topics = append(w.topics, t)
	w.kick()
	w.mu.Unlock()
}

// kick wakes the writer unless a wake-up is already on its way; w.mu is held.
func (w *writer) kick() {
	if w.kicked {
		return
	}
	w.kicked = true
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) run(stop <-chan struct{}) {
	ping := time.NewTicker(pingSweep(w.g.opts.PingInterval))
	defer ping.Stop()
	var last time.Time
	for {
		select {
		case <-w.wake:
		case now := <-ping.C:
			w.pingDue(now)
			continue
		case <-stop:
			return
		}
		wait := w.g.opts.WriteCoalesce
		if len(w.carry) > 0 {
			// Only backlogs may be waiting: never try them again at once.
			wait = max(wait, time.Millisecond)
		}
		if d := wait - time.Since(last); d > 0 {
			time.Sleep(d)
		}
		last = time.Now()
		w.mu.Lock()
		w.kicked = false
		w.ready = append(w.ready, w.carry...)
		clear(w.carry)
		w.carry = w.carry[:0]
		topics := w.topics
		w.topics = w.spareTopics[:0]
		w.mu.Unlock()
		for _, t := range topics {
			w.fanOut(t)
		}
		clear(topics)
		w.spareTopics = topics
		w.mu.Lock()
		round := w.ready
		w.ready = w.spare[:0]
		w.mu.Unlock()
		for _, c := range round {
			c.flush(w)
		}
		if w.sent > 0 {
			w.g.metrics.sent(w.sent)
			w.sent = 0
		}
		clear(round)
		w.spare = round
		if len(w.carry) > 0 {
			w.mu.Lock()
			w.kick() // the next round, one WriteCoalesce on, tries the backlogs again
			w.mu.Unlock()
		}
		if cap(w.scratch) > 4*flushChunk {
			w.scratch = nil // an outsized frame's buffer is not kept
		}
	}
}

// again carries c, whose socket kept a backlog, to the writer's next round.
func (w *writer) again(c *conn) {
	if c.scheduled.CompareAndSwap(false, true) {
		w.carry = append(w.carry, c)
	}
}

// fanOut offers the frames pending in the writer's part of t to each of its subscribers'
// queues; a queue that gets one puts its connection on this writer's ready list.
func (w *writer) fanOut(t *topic) {
	t.mu.Lock()
	p := &t.parts[w.idx]
	frames, end := p.pending, p.end
	p.pending, p.end, p.queued = nil, false, false
	t.mu.Unlock()
	m := w.g.metrics
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range frames {
		for _, c := range p.subs {
			if f.seq > c.from && c.tags.match(f.tag) {
				m.pushed(c.q.push(f))
			}
		}
	}
	if end {
		for _, c := range p.subs {
			c.q.end()
		}
	}
}

// pingSweep is how often a writer looks for connections due a ping: often enough that
// none waits much past its interval.
func pingSweep(interval time.Duration) time.Duration {
	return min(max(interval/4, time.Millisecond), time.Second)
}

// pingDue pings every member whose interval has passed since its last ping (outside w.mu:
// a ping that cannot be written at once puts its connection on the ready list).
func (w *writer) pingDue(now time.Time) {
	w.mu.Lock()
	due := w.due[:0]
	for c := range w.members {
		if now.Before(c.nextPing) {
			continue
		}
		c.nextPing = now.Add(w.g.opts.PingInterval)
		due = append(due, c)
	}
	w.mu.Unlock()
	for _, c := range due {
		c.ping()
	}
	clear(due)
	w.due = due[:0]
}
