package gateway

import (
	"encoding/binary"
	"encoding/json"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"roomengine/actors"
	"roomengine/push"
)

// frame is one encoded push as every subscriber of its topic receives it. The bytes, the
// WebSocket frame header included, are built once per Publish and shared read-only by all
// queues and the history: writing a frame to a subscriber copies it into the writer's
// buffer and nothing else.
type frame struct {
	seq        uint64
	tag        string
	importance int
	wire       []byte // the whole WebSocket text frame
	data       []byte // its payload (the JSON clients parse), the tail of wire
}

// newFrame builds the frame carrying data as one final, unmasked text frame (RFC 6455,
// section 5.2: a server never masks).
func newFrame(seq uint64, tag string, importance int, data []byte) *frame {
	n := len(data)
	var hdr []byte
	switch {
	case n < 126:
		hdr = []byte{0x81, byte(n)}
	case n < 1<<16:
		hdr = []byte{0x81, 126, byte(n >> 8), byte(n)}
	default:
		hdr = []byte{0x81, 127, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	wire := make([]byte, len(hdr)+n)
	copy(wire, hdr)
	copy(wire[len(hdr):], data)
	return &frame{seq: seq, tag: tag, importance: importance, wire: wire, data: wire[len(hdr):]}
}

// wireFrame is the text frame clients parse (docs/api.md, WebSocket protocol). Message is the push body itself,
// embedded as JSON, so clients read it exactly as they read an MNS MessageBody.
type wireFrame struct {
	Topic      string          `json:"topic"`
	Seq        uint64          `json:"seq"`
	Tag        string          `json:"tag"`
	Importance int             `json:"importance"`
	Message    json.RawMessage `json:"message"`
}

// encodeFrame falls back to sending an invalid body as a JSON string: a bad body is a bug
// upstream, but dropping the message would hide it from clients and from the seq order.
func encodeFrame(topic string, seq uint64, tag string, importance int, body []byte) ([]byte, bool) {
	w := wireFrame{Topic: topic, Seq: seq, Tag: tag, Importance: importance, Message: body}
	if b, err := actors.MarshalJSON(w); err == nil {
		return b, true
	}
	s, _ := actors.MarshalJSON(string(body))
	w.Message = s
	b, _ := actors.MarshalJSON(w)
	return b, false
}

// topic is the per-room state. mu guards all of it but the parts' subscriber lists, and is
// what makes replay and live delivery seamless: a subscriber is added (with from, the last
// seq it is not to get live) and the history copied in the same critical section that
// Publish uses to assign seq and hand the frame to the writers.
//
// The fan-out itself is the writers' work (writer.go): each writer owns a part of the
// topic's subscribers, and Publish only appends the frame to each part's pending list and
// wakes the part's writer. Publish thus costs the same whatever the number of subscribers,
// and the room that publishes (and the request that made it) never waits for the fan-out.
type topic struct {
	name string

	mu    sync.Mutex
	seq   uint64   // the last frame's, 0 before the first
	hist  []*frame // ring buffer, oldest at head once full
	head  int
	dead  bool     // removed from its shard; holders of a stale pointer must look it up again
	idle  idleMark // the eviction janitor's note (evict.go)
	parts []topicPart
}

// topicPart is one writer's share of a topic.
type topicPart struct {
	// Guarded by the topic's mu.
	n       int      // len(subs)
	pending []*frame // published, not yet fanned out by the writer
	end     bool     // the topic was deleted: end the subscriptions after pending
	queued  bool     // the topic is on the writer's list

	mu   sync.Mutex // guards subs; taken after the topic's mu, never before
	subs []*conn
}

// subscribers is the number of subscribers over all parts; t.mu is held.
func (t *topic) subscribers() int {
	n := 0
	for i := range t.parts {
		n += t.parts[i].n
	}
	return n
}

// addSub subscribes c to live frames after the current seq; t.mu is held.
func (t *topic) addSub(c *conn) {
	c.from = t.seq
	p := &t.parts[c.w.idx]
	p.mu.Lock()
	p.subs = append(p.subs, c)
	p.mu.Unlock()
	p.n++
}

func (t *topic) record(f *frame, capacity int) {
	if len(t.hist) < capacity {
		t.hist = append(t.hist, f)
		return
	}
	t.hist[t.head] = f
	t.head = (t.head + 1) % len(t.hist)
}

// missed returns the history frames after since that pass the tag filter, oldest first.
func (t *topic) missed(since uint64, tags tagSet) []*frame {
	if since > t.seq {
		// The client saw a previous life of this topic (deleted and recreated, or a
		// restart): everything we still hold is news to it.
		since = 0
	}
	var out []*frame
	n := len(t.hist)
	for i := range n {
		f := t.hist[(t.head+i)%n]
		if f.seq > since && tags.match(f.tag) {
			out = append(out, f)
		}
	}
	return out
}

// removeSub unsubscribes c and reports whether it was subscribed; t.mu is held.
func (t *topic) removeSub(c *conn) bool {
	if len(t.parts) == 0 { // a detached topic (deleted before c subscribed)
		return false
	}
	p := &t.parts[c.w.idx]
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.subs, c); i >= 0 {
		last := len(p.subs) - 1
		p.subs[i] = p.subs[last]
		p.subs[last] = nil
		p.subs = p.subs[:last]
		p.n--
		return true
	}
	return false
}

const shardCount = 64

// topics is a sharded map so that Publish to different rooms and connects to different
// rooms do not contend on one lock.
type topics struct {
	seed   maphash.Seed
	shards [shardCount]shard
	feed   push.Feed     // told when a subscriber leaves (Unfollow)
	grace  time.Duration // how long a deleted topic's last frames stay for reconnects
	parts  int           // writers: each topic is cut into one part per writer
	// writers[i] fans out part i of every topic; set once by New.
	writers []*writer
}

// wake queues part i of t on its writer unless it is already queued; t.mu is held.
func (ts *topics) wake(t *topic, i int) {
	if p := &t.parts[i]; !p.queued {
		p.queued = true
		ts.writers[i].addTopic(t)
	}
}

type shard struct {
	mu    sync.Mutex
	m     map[string]*topic
	tombs map[string]*tombstone // deleted topics, for grace
}

// tombstone is what remains of a deleted topic for a while: its history, so that a client
// that was away when the room ended and reconnects with since still gets the frames it
// missed (the type 8 above all) and then a close, instead of silence on an empty topic.
type tombstone struct {
	frames []*frame // oldest first
}

func newTopics(feed push.Feed, grace time.Duration, parts int) *topics {
	ts := &topics{seed: maphash.MakeSeed(), feed: feed, grace: grace, parts: parts}
	for i := range ts.shards {
		ts.shards[i].m = make(map[string]*topic)
		ts.shards[i].tombs = make(map[string]*tombstone)
	}
	return ts
}

func (ts *topics) shard(name string) *shard {
	return &ts.shards[maphash.String(ts.seed, name)%shardCount]
}

// lock returns the topic named name, created if needed, with its mutex held. It retries if
// the topic it found was removed before it got the lock, so callers never write into a
// topic nobody can see any more.
func (ts *topics) lock(name string) *topic {
	s := ts.shard(name)
	for {
		s.mu.Lock()
		t := s.m[name]
		if t == nil {
			// Seqs come from the feed: a topic known here only by its subscribers has
			// seen none yet.
			t = &topic{name: name, parts: make([]topicPart, ts.parts)}
			s.m[name] = t
		}
		s.mu.Unlock()
		t.mu.Lock()
		if !t.dead {
			return t
		}
		t.mu.Unlock()
	}
}

// release unsubscribes c, withdraws it from the feed, and forgets the topic once nobody
// listens to it and it holds nothing worth replaying.
func (ts *topics) release(t *topic, c *conn) {
	s := ts.shard(t.name)
	s.mu.Lock()
	t.mu.Lock()
	removed := t.removeSub(c)
	if t.subscribers() == 0 && t.seq == 0 && !t.dead {
		t.dead = true
		delete(s.m, t.name)
	}
	t.mu.Unlock()
	s.mu.Unlock()
	if removed {
		ts.feed.Unfollow(t.name)
	}
}

func (ts *topics) delete(name string) {
	s := ts.shard(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.m[name]
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Like an MNS topic, a deleted topic ends its subscriptions: each connection sends what
	// it has queued and closes normally. Publishing to the name later starts a new topic.
	// The writers end them after fanning out what is pending.
	for i := range t.parts {
		if p := &t.parts[i]; p.n > 0 {
			p.end = true
			ts.wake(t, i)
		}
	}
	t.dead = true
	delete(s.m, name)
	tomb := &tombstone{frames: t.missed(0, tagSet{})}
	s.tombs[name] = tomb
	time.AfterFunc(ts.grace, func() {
		s.mu.Lock()
		if s.tombs[name] == tomb {
			delete(s.tombs, name)
		}
		s.mu.Unlock()
	})
}

// deleted reports whether name is a recently deleted topic with no new life yet, and then
// the frames a subscriber with since (replay) missed before the deletion.
func (ts *topics) deleted(name string, since uint64, tags tagSet, replay bool) ([]*frame, bool) {
	s := ts.shard(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	tomb := s.tombs[name]
	if tomb == nil || s.m[name] != nil {
		return nil, false
	}
	var missed []*frame
	for _, f := range tomb.frames {
		if replay && f.seq > since && tags.match(f.tag) {
			missed = append(missed, f)
		}
	}
	return missed, true
}

func (ts *topics) count() int {
	n := 0
	for i := range ts.shards {
		s := &ts.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func (ts *topics) subscribers(name string) int {
	s := ts.shard(name)
	s.mu.Lock()
	t := s.m[name]
	s.mu.Unlock()
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.subscribers()
}
