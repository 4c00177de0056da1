package push

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"roomengine/actors"
)

// MemoryOptions configures a Memory feed. Zero values take the defaults noted.
type MemoryOptions struct {
	// SeqOrigin returns the seq a topic's life counts from (its first frame gets
	// origin+1). Default: the current time in microseconds, so a topic's next life (after
	// a deletion, after its counter was forgotten, or in a restarted server) numbers above
	// every seq of the previous one, and a client reconnecting with a since from before
	// gets the whole new history instead of silently skipping its first frames. A topic
	// would have to publish more than one frame per microsecond of its life to break this.
	// Tests set a fixed origin.
	SeqOrigin func() uint64
	// IdleTTL: a topic without subscribers (Follow) whose seq has not moved for about this
	// long is forgotten; its next frame starts from SeqOrigin again (above every earlier
	// seq). A followed topic is kept however quiet, so its subscribers see its seqs go up
	// by one. Default 5m.
	IdleTTL time.Duration
}

// Memory is a single node's feed: an actors.Publisher that numbers each push in its topic
// and hands it to the sink at once, in the caller's goroutine. The node has one gateway,
// which gets every frame (DeliversAll): the gateway's per-topic history is the topic's
// history, so Memory keeps only each topic's seq.
type Memory struct {
	origin func() uint64
	idle   time.Duration
	seed   maphash.Seed
	shards [memShards]memShard
	sink   Sink
}

const memShards = 64

type memShard struct {
	mu    sync.Mutex
	m     map[string]*memTopic
	swept time.Time // last sweep for idle topics
}

// memTopic is one topic's counter. Its mutex is held while the frame it numbered is
// delivered, so two publishers of one topic deliver in seq order.
type memTopic struct {
	mu   sync.Mutex
	seq  uint64
	mark uint64 // seq at the previous sweep: unchanged over a sweep means idle
	refs int    // the gateway's subscribers of the topic (Follow minus Unfollow)
	dead bool   // forgotten; a holder of a stale pointer looks the topic up again
}

var (
	_ actors.Publisher = (*Memory)(nil)
	_ Feed             = (*Memory)(nil)
)

// NewMemory returns a memory feed; the gateway attaches itself as its sink.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.SeqOrigin == nil {
		opts.SeqOrigin = func() uint64 { return uint64(time.Now().UnixMicro()) }
	}
	if opts.IdleTTL <= 0 {
		opts.IdleTTL = 5 * time.Minute
	}
	m := &Memory{origin: opts.SeqOrigin, idle: opts.IdleTTL, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*memTopic)
		m.shards[i].swept = time.Now()
	}
	return m
}

// Attach sets the sink; called once before the first Publish.
func (m *Memory) Attach(s Sink) { m.sink = s }

// Publish numbers the push and delivers it. It never waits for the fan-out: the gateway's
// Deliver only queues the frame for its writers.
func (m *Memory) Publish(p actors.Push) {
	t := m.lock(p.Topic)
	t.seq++
	m.sink.Deliver(Frame{Topic: p.Topic, Seq: t.seq, Tag: p.Tag, Importance: p.Importance, Type: p.Type, Body: p.Body})
	t.mu.Unlock()
}

// CreateTopic does nothing: a topic comes to life with its first push.
func (m *Memory) CreateTopic(string) {}

// DeleteTopic forgets the topic's seq (its next push starts its next life, numbered from
// SeqOrigin, above) and ends it in the sink after every push already numbered.
func (m *Memory) DeleteTopic(topic string) {
	s := m.shard(topic)
	s.mu.Lock()
	t := s.m[topic]
	delete(s.m, topic)
	s.mu.Unlock()
	if t == nil {
		m.sink.EndTopic(topic)
		return
	}
	t.mu.Lock()
	t.dead = true
	m.sink.EndTopic(topic)
	t.mu.Unlock()
}

// Follow counts a subscriber of topic, whose counter is then kept however long the topic
// is quiet. Every frame reaches the node's only gateway whether followed or not.
func (m *Memory) Follow(_ context.Context, topic string) error {
	t := m.lock(topic)
	t.refs++
	t.mu.Unlock()
	return nil
}

// Unfollow withdraws a subscriber counted by Follow.
func (m *Memory) Unfollow(topic string) {
	s := m.shard(topic)
	s.mu.Lock()
	t := s.m[topic]
	s.mu.Unlock()
	if t == nil {
		return // deleted meanwhile: its subscribers went with it
	}
	t.mu.Lock()
	if t.refs > 0 {
		t.refs--
	}
	t.mu.Unlock()
}

// DeliversAll is true: the gateway's copy of a topic is its history.
func (m *Memory) DeliversAll() bool { return true }

// ReadHistory holds nothing: the gateway replays from its own copy (DeliversAll).
func (m *Memory) ReadHistory(context.Context, string, uint64, func(uint64, string, int, []byte)) (uint64, bool, error) {
	return 0, false, nil
}

func (m *Memory) shard(topic string) *memShard {
	return &m.shards[maphash.String(m.seed, topic)%memShards]
}

// lock returns topic's counter, created if needed, with its mutex held.
func (m *Memory) lock(topic string) *memTopic {
	s := m.shard(topic)
	for {
		s.mu.Lock()
		t := s.m[topic]
		if t == nil {
			m.sweep(s)
			o := m.origin()
			t = &memTopic{seq: o, mark: o}
			s.m[topic] = t
		}
		s.mu.Unlock()
		t.mu.Lock()
		if !t.dead {
			return t
		}
		t.mu.Unlock()
	}
}

// sweep forgets the shard's topics whose seq did not move since the previous sweep, at
// most once per half IdleTTL; s.mu is held. It runs when a topic is created, so the
// counters of topics that come and go stay bounded at no cost per push.
func (m *Memory) sweep(s *memShard) {
	now := time.Now()
	if now.Sub(s.swept) < m.idle/2 {
		return
	}
	s.swept = now
	for name, t := range s.m {
		if !t.mu.TryLock() { // publishing right now: not idle
			continue
		}
		if t.seq == t.mark && t.refs == 0 {
			t.dead = true
			delete(s.m, name)
		}
		t.mark = t.seq
		t.mu.Unlock()
	}
}
