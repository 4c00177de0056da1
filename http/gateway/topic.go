package gateway

import (
	"encoding/json"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"roomengine/actors"
)

// frame is one encoded push as every subscriber of its topic receives it. The bytes are
// built once per Publish and shared read-only by all queues and the history.
type frame struct {
	seq        uint64
	tag        string
	importance int
	data       []byte
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

// topic is the per-room state. Everything in it is guarded by mu, which is also what makes
// replay and live delivery seamless: a subscriber is added and the history copied in the
// same critical section that Publish uses to assign seq and fan out.
type topic struct {
	name string

	mu     sync.Mutex
	origin uint64 // the seq before the first frame
	seq    uint64
	hist   []*frame // ring buffer, oldest at head once full
	head   int
	subs   []*conn
	dead   bool     // removed from its shard; holders of a stale pointer must look it up again
	idle   idleMark // the eviction janitor's note (evict.go)
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

func (t *topic) removeSub(c *conn) {
	if i := slices.Index(t.subs, c); i >= 0 {
		last := len(t.subs) - 1
		t.subs[i] = t.subs[last]
		t.subs[last] = nil
		t.subs = t.subs[:last]
	}
}

const shardCount = 64

// topics is a sharded map so that Publish to different rooms and connects to different
// rooms do not contend on one lock.
type topics struct {
	seed   maphash.Seed
	shards [shardCount]shard
	origin func() uint64
	grace  time.Duration // how long a deleted topic's last frames stay for reconnects
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

func newTopics(origin func() uint64, grace time.Duration) *topics {
	ts := &topics{seed: maphash.MakeSeed(), origin: origin, grace: grace}
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
			o := ts.origin()
			t = &topic{name: name, origin: o, seq: o}
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

// release unsubscribes c and forgets the topic once nobody listens to it and it holds
// nothing worth replaying.
func (ts *topics) release(t *topic, c *conn) {
	s := ts.shard(t.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeSub(c)
	if len(t.subs) == 0 && t.seq == t.origin && !t.dead {
		t.dead = true
		delete(s.m, t.name)
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
	for _, c := range t.subs {
		c.q.end()
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
	return len(t.subs)
}
