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

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// The cluster's pushes. Every push of every node goes through one Lua script that checks
// the sender's fence, numbers the push in its topic, appends it to the topic's history and
// publishes it on the topic's channel, which the nodes with a subscriber of the topic
// follow (subscriber.go). Every key and the channel of a topic carry the topic as their
// hash tag, so the script touches one topic's slot. A room's topic is the room's id, the
// tag of its owner hash (keys.go): a push fenced by the room it goes to is checked in the
// script itself. A push whose fence is in another slot (a call's push to its rooms, a
// room's push to its call's host rooms) and an unfenced push (an invitation, a topic
// deletion), whose sender must be a live member, are checked by the publisher in one
// pipelined round trip just before the batch (precheck): the owner hash of the fence, and
// the sender's member key. PUBLISH reaches every node of a Redis Cluster (SPUBLISH could
// replace it there):
//
//	{p}:seq:{topic}        the topic's last seq (INCR); created at Redis TIME in µs, so a
//	                       topic's next life numbers above its previous one, as on one node
//	{p}:topic:{topic}      the topic's history, the source of truth: stream of s=seq g=tag
//	                       i=importance b=body, MAXLEN ~ HistoryCap
//	{p}:push:{topic}       the topic's channel: one message per script call (a run of pushes),
//	                       each push "P <seq> <importance> <after> <taglen> <bodylen>\n" then
//	                       the tag and the body; "D" when the topic is deleted. after is the
//	                       room-change feed's ({p}:feed) head when the push followed a room
//	                       change, "-" otherwise (subscriber.go: read models first)
//	{p}:pushdedup:{topic}  hash: per publisher instance, the last queue number applied to the
//	                       topic, so a batch resent after a broken connection is not applied
//	                       twice
//
// A deleted topic's seq and history expire a minute later (late reconnects with since get
// the frames they missed); a push to it meanwhile starts its next life.

// Defaults of PublisherOptions.
const (
	DefaultHistoryCap = 256 // the gateway's default history size
	DefaultPushQueue  = 1 << 16
)

// pushBatch bounds the scripts of one pipeline: big enough to keep up with a burst, small
// enough that one round trip stays short.
const pushBatch = 256

// dedupTTL outlives any retry of a batch; an idle publisher's marker then goes away.
const dedupTTL = 10 * time.Minute

// topicGrace is how long a deleted topic's history stays (the gateway's tombstone grace).
const topicGrace = time.Minute

// PublisherOptions configures a Publisher.
type PublisherOptions struct {
	// Node and Incarnation are this node's membership ({p}:member:{Node} holds
	// "{Incarnation}|{addr}"). A push without a fence (an invitation, a topic deletion)
	// is refused unless that membership is alive. Empty Incarnation: not checked.
	Node, Incarnation string
	// Lease, if set, is this node's membership lease by its own clock (Member.LeaseValid):
	// an IfLive push (a comment served where it arrived) is refused when it has lapsed,
	// instead of reading the member key from Redis before its batch. The push script's
	// check of the room is what decides such a push; the lease only keeps an expelled node
	// from acting, as it keeps it from answering.
	Lease func() bool
	// HistoryCap bounds each topic's replay history (MAXLEN ~). Default DefaultHistoryCap;
	// set it to the gateway's HistorySize.
	HistoryCap int
	// QueueSize bounds the pushes waiting for Redis. A push beyond it is dropped and
	// logged: only a Redis outage long enough to fill it gets there. Default DefaultPushQueue.
	QueueSize int
	// Refused, if set, counts pushes refused for a stale fence or a lapsed membership
	// (the wiring passes roomengine_fenced_writes_total{result="refused"}).
	Refused prometheus.Counter
	// MaxEntryBytes bounds one push (topic, tag and body): a larger one is dropped and
	// logged, never written to the feed and every history. Default DefaultMaxEntryBytes;
	// the API's own limits keep every real push far below it.
	MaxEntryBytes int
	Logger        *slog.Logger
}

// DefaultMaxEntryBytes is the default PublisherOptions.MaxEntryBytes.
const DefaultMaxEntryBytes = 64 << 10

// Publisher is the cluster's actors.Publisher: every node's pushes go through one Redis
// script, so a topic has one seq and one order however many nodes publish to it. Publish
// only queues; one writer goroutine sends the queue in order (pipelined), so the pushes of
// one Publisher are numbered in the order Publish was called.
type Publisher struct {
	rdb        goredis.UniversalClient
	cluster    bool // rdb is a Redis Cluster's: one MULTI per slot
	prefix     string
	roomKey    func(id string) string // the store's key of a room's snapshot
	node       string
	inc        atomic.Pointer[string]
	nonce      string // this instance's field in the topics' dedup hashes
	lease      func() bool
	historyCap string
	limit      int
	maxEntry   int // MaxEntryBytes
	log        *slog.Logger
	refusedCtr prometheus.Counter

	mu      sync.Mutex
	queue   []pushOp
	next    uint64 // queue number of the next op
	written uint64 // ops numbered below this have been answered by Redis
	waiters []syncWaiter
	closing bool
	wake    chan struct{}
	stop    context.CancelFunc
	done    chan struct{}

	nRefused atomic.Uint64
	nDropped atomic.Uint64
}

// syncWaiter is a Sync waiting for the ops numbered below upTo.
type syncWaiter struct {
	upTo uint64
	done chan struct{}
}

// pushOp is one queued Publish or DeleteTopic.
type pushOp struct {
	n    uint64
	p    actors.Push
	drop bool // DeleteTopic(p.Topic)
	// outcome, if set, receives the script's answer for the push (PublishIfLive).
	outcome chan<- pushOutcome
}

// pushOutcome is the script's answer for one push (pushCall.results), or its error.
type pushOutcome struct {
	res int64
	err error
}

var _ actors.Publisher = (*Publisher)(nil)

// NewPublisher starts a publisher on the store's connections. Close it before the store.
func (s *Store) NewPublisher(opts PublisherOptions) *Publisher {
	if opts.HistoryCap <= 0 {
		opts.HistoryCap = DefaultHistoryCap
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultPushQueue
	}
	if opts.MaxEntryBytes <= 0 {
		opts.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	nonce, err := newNonce()
	if err != nil { // crypto/rand does not fail on the systems we run on
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{
		rdb:        s.rc,
		cluster:    s.onCluster(),
		prefix:     s.prefix,
		roomKey:    s.roomKey,
		lease:      opts.Lease,
		node:       opts.Node,
		nonce:      opts.Node + ":" + nonce,
		historyCap: strconv.Itoa(opts.HistoryCap),
		limit:      opts.QueueSize,
		maxEntry:   opts.MaxEntryBytes,
		log:        opts.Logger,
		refusedCtr: opts.Refused,
		next:       1,
		written:    1,
		wake:       make(chan struct{}, 1),
		stop:       cancel,
		done:       make(chan struct{}),
	}
	p.SetIncarnation(opts.Incarnation)
	go p.run(ctx)
	return p
}

// SetIncarnation changes the membership unfenced pushes are checked against (a node that
// rejoined as a new member).
func (p *Publisher) SetIncarnation(inc string) { p.inc.Store(&inc) }

// Publish queues the push; it never waits for Redis.
func (p *Publisher) Publish(push actors.Push) { _ = p.enqueue(pushOp{p: push}) }

var _ actors.LivePublisher = (*Publisher)(nil)

// errOutcomeUnknown answers a PublishIfLive whose push Redis reported applied by an earlier
// send of its batch: the answer to that send was lost, so whether the room was live then
// is not known.
var errOutcomeUnknown = errors.New("push feed: the push's outcome is unknown (its batch was resent)")

// PublishIfLive queues push to be numbered only while the room of its topic exists and has
// not ended, and waits for Redis's answer: nil (numbered), actors.ErrRoomGone,
// actors.ErrFenced (this node's membership lapsed), or an error when the outcome is unknown.
func (p *Publisher) PublishIfLive(ctx context.Context, push actors.Push) error {
	push.IfLive = true
	out := make(chan pushOutcome, 1)
	if !p.enqueue(pushOp{p: push, outcome: out}) {
		return ErrClosed
	}
	select {
	case o := <-out:
		switch {
		case o.err != nil:
			return o.err
		case o.res > 0:
			return nil
		case o.res == -2:
			return actors.ErrRoomGone
		case o.res == 0:
			return actors.ErrFenced
		default:
			return errOutcomeUnknown
		}
	case <-p.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CreateTopic does nothing: a topic's seq and history are created by its first push.
func (p *Publisher) CreateTopic(string) {}

// DeleteTopic queues the deletion behind the topic's pushes: every node that follows the
// topic ends its subscriptions after delivering them.
func (p *Publisher) DeleteTopic(topic string) {
	_ = p.enqueue(pushOp{p: actors.Push{Topic: topic}, drop: true})
}

// tell hands each op that waits for its outcome the script's answer (or err).
func tell(batch []pushOp, ops []int, results []int64, err error) {
	for i, j := range ops {
		if o := batch[j].outcome; o != nil {
			r := pushOutcome{err: err}
			if err == nil && i < len(results) {
				r.res = results[i]
			}
			select {
			case o <- r: // buffered for one answer
			default: // answered by an earlier send of the batch: that answer stands
			}
		}
	}
}

// enqueue queues op; false when it was dropped.
func (p *Publisher) enqueue(op pushOp) bool {
	if n := len(op.p.Topic) + len(op.p.Tag) + len(op.p.Body); n > p.maxEntry {
		p.nDropped.Add(1)
		p.log.Error("push dropped: larger than a feed entry may be", "topic", op.p.Topic, "type", op.p.Type,
			"bytes", n, "max", p.maxEntry)
		return false
	}
	p.mu.Lock()
	if p.closing || len(p.queue) >= p.limit {
		p.mu.Unlock()
		p.nDropped.Add(1)
		p.log.Error("push dropped: the Redis push queue is full or closed",
			"topic", op.p.Topic, "type", op.p.Type)
		return false
	}
	op.n = p.next
	p.next++
	p.queue = append(p.queue, op)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return true
}

// Sync waits until every push queued before it has been answered by Redis (written, or
// refused for a lost fence). A node answers a client only after Sync, so a push it
// acknowledged cannot be lost in its queue when it is frozen or killed right after the
// answer; ctx bounds the wait (a Redis outage).
func (p *Publisher) Sync(ctx context.Context) error {
	p.mu.Lock()
	if p.written >= p.next {
		p.mu.Unlock()
		return nil
	}
	w := syncWaiter{upTo: p.next, done: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-p.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// answered records that the ops numbered below upTo were answered and releases the Syncs
// waiting for them.
func (p *Publisher) answered(upTo uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.written = upTo
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if w.upTo <= upTo {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
}

// Refused is the number of pushes Redis refused for a stale fence or lapsed membership.
func (p *Publisher) Refused() uint64 { return p.nRefused.Load() }

// Dropped is the number of pushes dropped because the queue was full or closed.
func (p *Publisher) Dropped() uint64 { return p.nDropped.Load() }

// Close stops taking pushes, sends what is queued and stops. If ctx ends first, what is
// still queued is dropped and ctx's error returned.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		p.stop()
		<-p.done
		return ctx.Err()
	}
}

// run is the single writer: taking the queue in order and sending each batch until Redis
// has answered it is what keeps every topic's pushes in Publish order.
func (p *Publisher) run(ctx context.Context) {
	defer close(p.done)
	var batch []pushOp
	for {
		p.mu.Lock()
		n := min(len(p.queue), pushBatch)
		batch = append(batch[:0], p.queue[:n]...)
		p.queue = p.queue[n:]
		if len(p.queue) == 0 {
			p.queue = nil // let a burst's backing array go
		}
		closing := p.closing
		p.mu.Unlock()
		if n == 0 {
			if closing {
				return
			}
			select {
			case <-p.wake:
			case <-ctx.Done():
				return
			}
			continue
		}
		if !p.send(ctx, batch) {
			return
		}
		p.answered(batch[len(batch)-1].n + 1)
		clear(batch)
	}
}

// send pipelines the batch until Redis answers it, retrying with backoff through an outage.
// A resend is safe: the script skips the ops the dedup marker says were applied. It
// returns false when ctx ends first.
func (p *Publisher) send(ctx context.Context, batch []pushOp) bool {
	backoff := 20 * time.Millisecond
	for {
		err := p.sendOnce(ctx, batch)
		if err == nil {
			return true
		}
		if goredis.HasErrorPrefix(err, "NOSCRIPT") {
			// First use, or Redis restarted: load the scripts and resend at once; the ops
			// that did run are skipped by the dedup marker.
			if err = loadScripts(ctx, p.rdb); err == nil {
				continue
			}
		}
		p.log.Warn("push feed: Redis write failed, retrying", "err", err, "pushes", len(batch))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return false
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (p *Publisher) sendOnce(ctx context.Context, batch []pushOp) error {
	inc := *p.inc.Load()
	after, refused, err := p.precheck(ctx, batch, inc)
	if err != nil {
		return err
	}
	// One MULTI/EXEC, not a plain pipeline: the dedup markers are high-water marks, so the
	// ops of a batch must run all or none. In a plain pipeline, another node loading the
	// scripts (SCRIPT LOAD after a Redis restart, or at first use) between two of its
	// EVALSHAs let the later ops run while the earlier ones got NOSCRIPT; the resent
	// earlier ops were then taken for applied and lost (found by a test under load).
	//
	// A Redis Cluster refuses a MULTI/EXEC over several slots (CROSSSLOT), so there the
	// batch goes as one MULTI/EXEC per topic slot, concurrently: a topic's ops, and its
	// dedup marker, are in one slot, so each topic's ops still run all or none, in order.
	// Within a slot, each run of consecutive pushes of one topic and fence is one script
	// call (pushgroup.go).
	groups := map[int][]int{} // slot (0 on one server) -> indexes into batch, in order
	for i, op := range batch {
		if refused[i] {
			continue
		}
		slot := 0
		if p.cluster {
			slot = keySlot(topicKey(p.prefix, "seq", op.p.Topic))
		}
		groups[slot] = append(groups[slot], i)
	}
	// One slot (always, on one server) needs no goroutine.
	send := func(idx []int) ([]pushCall, error) {
		pipe := p.rdb.TxPipeline()
		calls := p.queueCalls(ctx, pipe, batch, idx, inc, after)
		_, err := pipe.Exec(ctx)
		return calls, err
	}
	var calls []pushCall
	var errs []error
	if len(groups) == 1 {
		for _, idx := range groups {
			c, err := send(idx)
			calls, errs = c, []error{err}
		}
	} else {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, idx := range groups {
			wg.Go(func() {
				c, err := send(idx)
				mu.Lock()
				calls, errs = append(calls, c...), append(errs, err)
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	for _, err := range errs {
		if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			return err
		}
	}
	for i := range batch {
		if refused[i] {
			p.refused(batch[i].p)
			tell(batch, []int{i}, []int64{0}, nil)
		}
	}
	for _, c := range calls {
		results, err := c.results()
		switch {
		case err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT"):
			return err
		case err == nil:
			tell(batch, c.ops, results, nil)
			for i, res := range results {
				switch res {
				case 0:
					p.refused(batch[c.ops[i]].p)
				case -2:
					p.log.Debug("push dropped: its room is gone or has ended", "topic", batch[c.ops[i]].p.Topic,
						"type", batch[c.ops[i]].p.Type)
				}
			}
		case isServerError(err):
			// The script failed on these ops (a key of the wrong type, say): resending
			// would fail again, so it is logged and skipped.
			p.log.Error("push feed: script failed", "err", err, "topic", batch[c.ops[0]].p.Topic)
			tell(batch, c.ops, nil, err)
		default:
			return err
		}
	}
	return nil
}

// precheck reads, in one pipelined round trip, what the batch's scripts cannot check in
// their topic's slot, and returns which ops are refused for it:
//
//   - the room-change feed's last entry id when a push of the batch follows a room change
//     ("" otherwise): that change was written before the push was queued, so its entry is
//     at or before the head read now. A node delivers the push only once its feed follower
//     has passed the head (subscriber.go), so its read model already shows the change;
//   - for a push whose fence is another entity's than its topic's, that entity's owner
//     hash: refused unless it names the fence's node and epoch and the publisher's
//     incarnation (as the push script checks, below);
//   - for an unfenced push or a topic deletion, the sender's member key: refused unless it
//     holds the publisher's incarnation ("" skips the check).
//
// The check and the script are two steps: an owner that loses the entity in between (its
// node frozen for longer than memberTTL between the two, a millisecond apart) can still
// land a push checked just before. The batch's own room pushes have no such window.
func (p *Publisher) precheck(ctx context.Context, batch []pushOp, inc string) (after string, refused []bool, err error) {
	var head *goredis.XMessageSliceCmd
	var member *goredis.StringCmd
	owners := make([]*goredis.SliceCmd, len(batch))
	n := 0
	pipe := p.rdb.Pipeline()
	for i, op := range batch {
		f := op.p.Fence
		if op.p.Changed && !op.drop && head == nil {
			head = pipe.XRevRangeN(ctx, p.prefix+"feed", "+", "-", 1)
			n++
		}
		switch {
		case op.p.IfLive && p.lease != nil:
			// Checked by the lease below, at no round trip.
		case op.drop || f.IsZero():
			if inc != "" && member == nil {
				member = pipe.Get(ctx, p.prefix+"member:{"+p.node+"}")
				n++
			}
		case !sameSlotFence(op.p):
			owners[i] = pipe.HMGet(ctx, ownerKeyOf(p.prefix, f.Kind, f.ID), "node", "inc", "addr", "epoch")
			n++
		}
	}
	refused = make([]bool, len(batch))
	if p.lease != nil && !p.lease() {
		for i, op := range batch {
			refused[i] = op.p.IfLive
		}
	}
	if n == 0 {
		return "", refused, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return "", nil, err
	}
	if head != nil {
		after = "0-0"
		if msgs := head.Val(); len(msgs) > 0 {
			after = msgs[0].ID
		}
	}
	alive := member == nil || strings.HasPrefix(member.Val(), inc+"|")
	for i, op := range batch {
		f := op.p.Fence
		switch {
		case op.p.IfLive && p.lease != nil:
		case op.drop || f.IsZero():
			refused[i] = !alive
		case owners[i] != nil:
			o := readOwner(owners[i].Val())
			refused[i] = o.node != f.Node || o.epoch != strconv.FormatInt(f.Epoch, 10) || o.inc == "" ||
				(inc != "" && o.inc != inc)
		}
	}
	return after, refused, nil
}

// sameSlotFence reports whether the push's fence is checked by the push script itself: its
// owner hash carries the topic as tag.
func sameSlotFence(push actors.Push) bool { return !push.Fence.IsZero() && push.Fence.ID == push.Topic }

// ownerKeyOf is Store.ownerKey for a prefix.
func ownerKeyOf(prefix, kind, id string) string { return prefix + "owner:" + kind + ":{" + id + "}" }

// topicKey names one of a topic's keys (or its channel) with the topic as hash tag.
func topicKey(prefix, kind, topic string) string { return prefix + kind + ":{" + topic + "}" }

func (p *Publisher) deleteKeys(topic string) []string {
	return []string{topicKey(p.prefix, "seq", topic), topicKey(p.prefix, "topic", topic),
		topicKey(p.prefix, "pushdedup", topic), topicKey(p.prefix, "push", topic)}
}

func (p *Publisher) refused(push actors.Push) {
	p.nRefused.Add(1)
	if p.refusedCtr != nil {
		p.refusedCtr.Inc()
	}
	p.log.Warn("push refused: ownership or membership lost", "topic", push.Topic,
		"type", push.Type, "fence", push.Fence)
}

// isServerError tells a reply error (the script ran and failed) from a broken connection.
func isServerError(err error) bool {
	var rerr goredis.Error
	return errors.As(err, &rerr) && !errors.Is(err, goredis.Nil)
}

// loadScripts loads the push scripts (on every master of a Redis Cluster).
func loadScripts(ctx context.Context, rdb goredis.UniversalClient) error {
	for _, s := range []*goredis.Script{pushScript, topicDelScript} {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return err
		}
	}
	return nil
}

// pushDedup is the head of both scripts: ARGV[1] is the op's queue number, ARGV[2] the
// dedup marker's TTL, KEYS[3] the topic's dedup hash and ARGV[6] this publisher's field in
// it; an op already applied returns -1.
const pushDedup = `
local n = tonumber(ARGV[1])
if n <= tonumber(redis.call('HGET', KEYS[3], ARGV[6]) or '0') then return -1 end
redis.call('HSET', KEYS[3], ARGV[6], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
`

// topicDelScript: KEYS seq, history, dedup hash, channel; ARGV n, dedup TTL, (unused),
// (unused), (unused), publisher nonce, grace (ms). Returns 1, or -1 when applied before.
// The sender's membership is checked by the publisher (precheck).
var topicDelScript = goredis.NewScript(pushDedup + `
redis.call('PUBLISH', KEYS[4], 'D')
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return 1
`)
