package redis

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/push"
)

// Subscriber is a node's push.Feed in a cluster: it receives a topic's pushes only while
// the node has a subscriber of that topic (interest), by Redis pub/sub on the topic's
// channel, and replays since from the topic's shared history.
//
// The history is the source of truth; pub/sub only carries news. A topic's seqs are
// consecutive within a life, so the Subscriber sees a lost message as a gap (a seq more
// than one above the last it delivered) and reads the missing frames from the history
// before going on. A pub/sub connection that broke and was re-established (go-redis
// resubscribes on its own) shows as a second subscription confirmation of a topic: the
// Subscriber then reads the history since the last frame it delivered, since whatever was
// published while the connection was down was never received. Before the first frame, both
// are measured from the topic's seq read just before the SUBSCRIBE (interest.base): a
// connection cut before any frame arrived once lost frames no check could see.
//
// Follow returns once Redis confirmed the subscription: every frame numbered after that
// reaches the sink. A client that asked for since then reads the history, which holds
// every frame numbered before; the gateway drops the frames that come both ways.
type Subscriber struct {
	store    *Store
	ps       *goredis.PubSub
	prefix   string // of the topics' channels: {p}:push:{
	follower *Follower
	log      *slog.Logger
	sink     push.Sink

	// cmd orders the SUBSCRIBE and UNSUBSCRIBE commands as the interest changes: taken
	// around each change of a topic's on and the command it causes, so a quick Unfollow
	// then Follow cannot reach Redis as SUBSCRIBE then UNSUBSCRIBE. Never taken by run.
	cmd    sync.Mutex
	mu     sync.Mutex
	topics map[string]*interest

	stop context.CancelFunc
	done chan struct{}

	nReceived  atomic.Uint64 // pushes received by pub/sub (one message carries a run)
	nRecovered atomic.Uint64 // frames read from the history to fill a gap
	nWaited    atomic.Uint64 // pushes held for the feed follower (read models first)
}

// interest is the node's subscription of one topic. Guarded by Subscriber.mu.
type interest struct {
	refs    int           // local subscribers (Follow minus Unfollow)
	on      bool          // SUBSCRIBE sent last (not UNSUBSCRIBE)
	pending int           // SUBSCRIBEs sent whose confirmation has not come
	ready   chan struct{} // closed once the current subscription is confirmed
	isReady bool
	last    uint64 // seq of the last frame delivered to the sink; 0: none yet
	// base is the topic's seq read just before the SUBSCRIBE: every frame above it is
	// this node's to deliver. Until the first frame arrives (last 0) it is what a gap, or
	// a resubscription after a broken connection, is measured from — without it frames
	// lost before the first one received would go unnoticed. 0: the topic had no seq.
	base uint64
}

// SubscriberOptions configures a Subscriber.
type SubscriberOptions struct {
	// Follower is the node's room-change feed follower: a push that follows a room change
	// is delivered once it passed the change (read models first). Nil: not waited for.
	Follower *Follower
	// FollowerWait bounds that wait. Default 2s.
	FollowerWait time.Duration
	Logger       *slog.Logger
}

// Subscriber defaults.
const (
	subscriberPing = 10 * time.Second // a silent pub/sub connection is pinged this often
	followerWait   = 2 * time.Second
)

var _ push.Feed = (*Subscriber)(nil)

// NewSubscriber starts the node's subscriber on a pub/sub connection of its own. Close it
// before the store.
func (s *Store) NewSubscriber(opts SubscriberOptions) *Subscriber {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FollowerWait <= 0 {
		opts.FollowerWait = followerWait
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub := &Subscriber{store: s, ps: s.rc.Subscribe(ctx), prefix: s.prefix + "push:{", follower: opts.Follower,
		log: opts.Logger, topics: make(map[string]*interest), stop: cancel, done: make(chan struct{})}
	go sub.run(ctx, opts.FollowerWait)
	return sub
}

// Attach sets the sink; called once, before the first Follow.
func (sub *Subscriber) Attach(s push.Sink) { sub.sink = s }

// Close stops receiving.
func (sub *Subscriber) Close() {
	sub.stop()
	_ = sub.ps.Close()
	<-sub.done
}

// Received is the number of pushes received by pub/sub (one message carries a run); Recovered the frames read
// from histories to fill gaps; Waited the pushes held until the feed follower passed the
// room change they follow.
func (sub *Subscriber) Received() uint64  { return sub.nReceived.Load() }
func (sub *Subscriber) Recovered() uint64 { return sub.nRecovered.Load() }
func (sub *Subscriber) Waited() uint64    { return sub.nWaited.Load() }

// Following is the number of topics the node is subscribed to.
func (sub *Subscriber) Following() int {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	n := 0
	for _, in := range sub.topics {
		if in.on {
			n++
		}
	}
	return n
}

// DeliversAll is false: frames come by interest, and since is replayed from the shared
// history, which holds frames numbered before this node followed the topic.
func (sub *Subscriber) DeliversAll() bool { return false }

// ReadHistory reads the topic's shared history (Store.ReadHistory).
func (sub *Subscriber) ReadHistory(ctx context.Context, topic string, since uint64,
	frame func(seq uint64, tag string, importance int, body []byte)) (uint64, bool, error) {
	return sub.store.ReadHistory(ctx, topic, since, frame)
}

// Follow declares a local subscriber of topic. The first subscribes the topic's channel;
// every Follow returns once the subscription is confirmed, or with ctx's error (bounded by
// the store's timeout), having then withdrawn itself.
func (sub *Subscriber) Follow(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, sub.store.timeout)
	defer cancel()
	sub.cmd.Lock()
	sub.mu.Lock()
	in := sub.topics[topic]
	if in == nil {
		in = &interest{}
		sub.topics[topic] = in
	}
	in.refs++
	send := !in.on
	if send {
		in.on, in.isReady, in.ready = true, false, make(chan struct{})
		in.pending++
	}
	ready := in.ready
	sub.mu.Unlock()
	var err error
	if send {
		var base uint64
		if base, err = sub.seqOf(ctx, topic); err == nil {
			sub.mu.Lock()
			in.base = base
			sub.mu.Unlock()
			err = sub.ps.Subscribe(ctx, sub.channel(topic))
		}
	}
	sub.cmd.Unlock()
	if err != nil {
		// Taken as not sent: a confirmation that comes anyway only readies the
		// subscription early, while Redis is failing.
		sub.mu.Lock()
		in.pending = 0
		sub.mu.Unlock()
	} else {
		select {
		case <-ready:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	sub.Unfollow(topic)
	return err
}

// Unfollow withdraws a local subscriber; the last one unsubscribes the topic's channel.
func (sub *Subscriber) Unfollow(topic string) {
	sub.cmd.Lock()
	defer sub.cmd.Unlock()
	sub.mu.Lock()
	in := sub.topics[topic]
	if in == nil || in.refs == 0 {
		sub.mu.Unlock()
		return
	}
	in.refs--
	send := in.refs == 0 && in.on
	if send {
		in.on, in.last, in.base = false, 0, 0
	}
	if in.refs == 0 && in.pending == 0 {
		delete(sub.topics, topic)
	}
	sub.mu.Unlock()
	if send {
		ctx, cancel := context.WithTimeout(context.Background(), sub.store.timeout)
		defer cancel()
		// A failed UNSUBSCRIBE leaves the channel subscribed on a broken connection, which
		// go-redis does not resubscribe; its messages, if any came, would be dropped.
		_ = sub.ps.Unsubscribe(ctx, sub.channel(topic))
	}
}

func (sub *Subscriber) channel(topic string) string { return sub.prefix + topic + "}" }

// seqOf is the topic's current seq, 0 if it has none.
func (sub *Subscriber) seqOf(ctx context.Context, topic string) (uint64, error) {
	v, err := sub.store.rc.Get(ctx, topicKey(sub.store.prefix, "seq", topic)).Uint64()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	return v, err
}

// run receives messages and confirmations until Close.
func (sub *Subscriber) run(ctx context.Context, wait time.Duration) {
	defer close(sub.done)
	failures := 0
	for ctx.Err() == nil {
		msg, err := sub.ps.ReceiveTimeout(ctx, subscriberPing)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var nerr interface{ Timeout() bool }
			if errors.As(err, &nerr) && nerr.Timeout() {
				// Quiet: a ping proves the connection (go-redis reconnects and
				// resubscribes if it is broken).
				_ = sub.ps.Ping(ctx)
				continue
			}
			failures++
			if failures > 1 {
				select {
				case <-time.After(min(time.Duration(failures)*50*time.Millisecond, time.Second)):
				case <-ctx.Done():
					return
				}
			}
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				sub.confirmed(ctx, m.Channel)
			}
		case *goredis.Message:
			sub.message(ctx, m, wait)
		}
	}
}

// topicOf is the topic of a channel name, "" for another channel.
func (sub *Subscriber) topicOf(channel string) string {
	t, ok := strings.CutPrefix(channel, sub.prefix)
	if !ok || !strings.HasSuffix(t, "}") {
		return ""
	}
	return t[:len(t)-1]
}

// confirmed handles a subscription confirmation: the first of a Follow releases it; one
// more (go-redis resubscribed after a broken connection) fills what was missed meanwhile.
func (sub *Subscriber) confirmed(ctx context.Context, channel string) {
	topic := sub.topicOf(channel)
	sub.mu.Lock()
	in := sub.topics[topic]
	if in == nil {
		sub.mu.Unlock()
		return
	}
	if in.pending > 0 {
		in.pending--
	}
	if !in.on && in.refs == 0 && in.pending == 0 {
		delete(sub.topics, topic)
	}
	if !in.on || in.pending > 0 {
		sub.mu.Unlock()
		return
	}
	if !in.isReady {
		in.isReady = true
		close(in.ready)
		sub.mu.Unlock()
		return
	}
	last := in.last
	if last == 0 {
		last = in.base
	}
	sub.mu.Unlock()
	if last > 0 {
		sub.fill(ctx, topic, last, 0)
	}
}

// message delivers a run of pushes (or a topic's end) received in one pub/sub message.
func (sub *Subscriber) message(ctx context.Context, m *goredis.Message, wait time.Duration) {
	topic := sub.topicOf(m.Channel)
	if m.Payload == "D" {
		sub.mu.Lock()
		in := sub.topics[topic]
		if in != nil {
			in.last, in.base = 0, 0 // its next life numbers from elsewhere
		}
		sub.mu.Unlock()
		if in != nil && in.on {
			sub.sink.EndTopic(topic)
		}
		return
	}
	// One message carries a run of pushes, in seq order.
	for rest := m.Payload; rest != ""; {
		f, after, tail, ok := decodePush(topic, rest)
		if !ok {
			sub.log.Error("push feed: malformed push message", "channel", m.Channel)
			return
		}
		sub.nReceived.Add(1)
		sub.push(ctx, f, after, wait)
		rest = tail
	}
}

// push delivers one frame received by pub/sub, after the history's frames it skipped.
func (sub *Subscriber) push(ctx context.Context, f push.Frame, after string, wait time.Duration) {
	topic := f.Topic
	sub.mu.Lock()
	in := sub.topics[topic]
	if in == nil || !in.on {
		sub.mu.Unlock()
		return
	}
	last := in.last
	if last == 0 {
		last = in.base // no frame yet: everything above the base is ours
	}
	sub.mu.Unlock()
	if f.Seq <= last {
		return // filled from the history already (or numbered before the subscription)
	}
	if after != "" {
		sub.awaitFollower(ctx, after, wait)
	}
	if last > 0 && f.Seq > last+1 {
		// Messages were lost (a connection broke, or a slow reader was cut off): the
		// history has them.
		sub.fill(ctx, topic, last, f.Seq)
	}
	sub.deliver(f)
}

// fill delivers the history's frames of topic above since (below upTo, unless 0).
func (sub *Subscriber) fill(ctx context.Context, topic string, since, upTo uint64) {
	ctx, cancel := context.WithTimeout(ctx, sub.store.timeout)
	defer cancel()
	var frames []push.Frame
	_, _, err := sub.store.ReadHistory(ctx, topic, since, func(seq uint64, tag string, importance int, body []byte) {
		if upTo == 0 || seq < upTo {
			frames = append(frames, push.Frame{Topic: topic, Seq: seq, Tag: tag, Importance: importance, Body: body})
		}
	})
	if err != nil {
		// The clients may miss frames: they reconnect with since and read them later.
		sub.log.Warn("push feed: missed frames not recovered; clients reconnect", "topic", topic, "err", err)
		sub.sink.Resync()
		return
	}
	for _, f := range frames {
		if sub.deliver(f) {
			sub.nRecovered.Add(1)
		}
	}
}

// deliver hands f to the sink unless an equal or later frame went before; true if it did.
func (sub *Subscriber) deliver(f push.Frame) bool {
	sub.mu.Lock()
	in := sub.topics[f.Topic]
	if in == nil || !in.on || f.Seq <= in.last {
		sub.mu.Unlock()
		return false
	}
	in.last = f.Seq
	sub.mu.Unlock()
	sub.sink.Deliver(f)
	return true
}

// awaitFollower holds a push that follows a room change until the node's feed follower
// has applied the change (passed the feed entry after), at most wait.
func (sub *Subscriber) awaitFollower(ctx context.Context, after string, wait time.Duration) {
	if sub.follower == nil || sub.follower.Passed(after) {
		return
	}
	sub.nWaited.Add(1)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if !sub.follower.WaitPast(ctx, after) && ctx.Err() != nil {
		sub.log.Warn("push delivered before the room change it follows reached this node's read model",
			"after", after, "wait", wait)
	}
}

// decodePush reads one push, "P <seq> <importance> <after> <taglen> <bodylen>\n<tag><body>",
// from the front of payload and returns what follows it.
func decodePush(topic, payload string) (f push.Frame, after, rest string, ok bool) {
	head, rest, ok := strings.Cut(payload, "\n")
	if !ok {
		return push.Frame{}, "", "", false
	}
	fields := strings.Fields(head)
	if len(fields) != 6 || fields[0] != "P" {
		return push.Frame{}, "", "", false
	}
	seq, err1 := strconv.ParseUint(fields[1], 10, 64)
	imp, err2 := strconv.Atoi(fields[2])
	tagLen, err3 := strconv.Atoi(fields[4])
	bodyLen, err4 := strconv.Atoi(fields[5])
	if errors.Join(err1, err2, err3, err4) != nil || tagLen < 0 || bodyLen < 0 || tagLen > len(rest)-bodyLen {
		return push.Frame{}, "", "", false
	}
	after = fields[3]
	if after == "-" {
		after = ""
	}
	end := tagLen + bodyLen
	return push.Frame{Topic: topic, Seq: seq, Tag: rest[:tagLen], Importance: imp, Body: []byte(rest[tagLen:end])},
		after, rest[end:], true
}
