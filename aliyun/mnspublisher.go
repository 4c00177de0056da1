package aliyun

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomengine/actors"
)

// MNSPublisher defaults.
const (
	DefaultMNSRetryWindow    = 2 * time.Minute
	DefaultMNSInitialBackoff = 200 * time.Millisecond
	DefaultMNSMaxBackoff     = 10 * time.Second
	DefaultMNSQueueLimit     = 1000
	DefaultMNSMaxConcurrency = 64
)

// Reasons an MNS operation was dropped, as the reason label of roomengine_mns_dropped_total.
const (
	// MNSDropRetryWindow: it kept failing (5xx, timeout, network, breaker open) for longer
	// than the retry window.
	MNSDropRetryWindow = "retry_window"
	// MNSDropRejected: MNS refused it with a 4xx that retrying cannot fix (TopicNotExist,
	// SignatureDoesNotMatch, ...), or it was invalid before sending.
	MNSDropRejected = "rejected"
	// MNSDropQueueFull: the topic's queue was full and this was its least important message.
	MNSDropQueueFull = "queue_full"
	// MNSDropClosed: the publisher was closed before it could be delivered.
	MNSDropClosed = "closed"
	// MNSDropNotMember: the node's cluster membership lapsed (it was declared dead or is
	// expelled): it sends nothing more for rooms that other nodes now own.
	MNSDropNotMember = "not_member"
)

// MNSPublisherOptions configures an MNSPublisher. Every field has a default.
type MNSPublisherOptions struct {
	// SubscriptionEndpoint is the Endpoint of the subscription made with each topic
	// (ali.mnsTopic.subscriptionEndpoint). Empty: topics are created without one.
	SubscriptionEndpoint string
	// RetryWindow is how long after it was enqueued an operation keeps being retried
	// before it is dropped (default 2m).
	RetryWindow time.Duration
	// InitialBackoff and MaxBackoff bound the exponential backoff between attempts
	// (defaults 200ms and 10s); each wait is jittered to between half and all of it.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// QueueLimit is how many operations may wait per topic (default 1000). Beyond it the
	// least important waiting message (the oldest among equals) is dropped, or the new
	// one when it is less important than all of them. Topic creation and deletion are
	// never dropped for space.
	QueueLimit int
	// MaxConcurrency bounds the MNS requests in flight over all topics (default 64).
	MaxConcurrency int
	// Logger gets warnings about dropped operations (rate-limited) (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, gets the publisher's metrics.
	Registerer prometheus.Registerer
	// Member reports whether this node may still act (its cluster membership lease
	// holds); nil on a single node. It is checked before every request: a room moves to
	// another node only when its owner's lease lapsed or it left, so while the lease holds
	// the node still owns what it queued, and once it lapses every queued operation is
	// dropped at once (not_member) and the workers stop.
	Member func() bool
	// Now and Sleep are the clock of the retry loop (defaults time.Now and a timer that
	// returns early with ctx's error); tests replace them.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// MNSPublisher is the mns push backend (docs/api.md, Push messages): it implements actors.Publisher over an
// MNSClient. CreateTopic creates the topic and its subscription (named like the topic),
// Publish publishes the push with its tag and importance, DeleteTopic deletes the topic.
//
// No method blocks on the network: operations are queued per topic and run in order by
// one goroutine per topic with pending work, which exits when the queue is empty. A failing
// operation is retried with jittered exponential backoff until RetryWindow has passed since
// it was enqueued, then dropped (counted in roomengine_mns_dropped_total), and the next one
// runs. An operation MNS refuses with a 4xx (e.g. a publish to a topic that does not exist)
// is dropped at once. If a topic's creation was dropped, the next publish to it retries the
// creation first, so a room created during an MNS outage still gets its topic.
type MNSPublisher struct {
	client         *MNSClient
	endpoint       string
	retryWindow    time.Duration
	initialBackoff time.Duration
	maxBackoff     time.Duration
	queueLimit     int
	log            *slog.Logger
	now            func() time.Time
	sleep          func(context.Context, time.Duration) error
	sem            chan struct{}
	m              *mnsMetrics
	member         func() bool

	ctx    context.Context // canceled when Close gives up flushing
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	closed      bool
	topics      map[string]*mnsTopicQueue // topics with a running worker
	needCreate  map[string]bool           // topics whose creation was dropped
	lastDropLog time.Time
	suppressed  int

	queued    atomic.Int64
	delivered atomic.Uint64
	dropped   atomic.Uint64
}

var _ actors.Publisher = (*MNSPublisher)(nil)

type mnsOpKind int

const (
	mnsOpCreate mnsOpKind = iota
	mnsOpPublish
	mnsOpDelete
)

func (k mnsOpKind) String() string {
	switch k {
	case mnsOpCreate:
		return "create_topic"
	case mnsOpPublish:
		return "publish"
	default:
		return "delete_topic"
	}
}

type mnsOp struct {
	kind     mnsOpKind
	push     actors.Push
	enqueued time.Time
	created  bool // create: the topic exists, only the subscription is left
	// repair marks a creation retried before a publish because the queued one was
	// dropped; it is not an operation of its own, so it is not counted.
	repair bool
}

type mnsTopicQueue struct {
	ops []*mnsOp // waiting, in order; the one running is not here
}

// NewMNSPublisher makes a publisher over client.
func NewMNSPublisher(client *MNSClient, o MNSPublisherOptions) *MNSPublisher {
	if o.RetryWindow <= 0 {
		o.RetryWindow = DefaultMNSRetryWindow
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = DefaultMNSInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMNSMaxBackoff
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	if o.QueueLimit <= 0 {
		o.QueueLimit = DefaultMNSQueueLimit
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = DefaultMNSMaxConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = mnsSleep
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &MNSPublisher{
		client:         client,
		endpoint:       o.SubscriptionEndpoint,
		retryWindow:    o.RetryWindow,
		initialBackoff: o.InitialBackoff,
		maxBackoff:     o.MaxBackoff,
		queueLimit:     o.QueueLimit,
		log:            o.Logger,
		now:            o.Now,
		member:         o.Member,
		sleep:          o.Sleep,
		sem:            make(chan struct{}, o.MaxConcurrency),
		m:              newMNSMetrics(o.Registerer),
		ctx:            ctx,
		cancel:         cancel,
		topics:         make(map[string]*mnsTopicQueue),
		needCreate:     make(map[string]bool),
	}
}

// Publish queues p for its topic. It never blocks on the network. p.Body must not be
// modified afterwards.
func (p *MNSPublisher) Publish(push actors.Push) {
	p.enqueue(push.Topic, &mnsOp{kind: mnsOpPublish, push: push})
}

// CreateTopic queues the creation of topic and its subscription.
func (p *MNSPublisher) CreateTopic(topic string) {
	p.enqueue(topic, &mnsOp{kind: mnsOpCreate})
}

// DeleteTopic queues the deletion of topic, after everything already queued for it.
func (p *MNSPublisher) DeleteTopic(topic string) {
	p.enqueue(topic, &mnsOp{kind: mnsOpDelete})
}

// MNSPublisherStats is a snapshot of the publisher's counters.
type MNSPublisherStats struct {
	Queued    int    // operations waiting or running
	Delivered uint64 // operations that succeeded
	Dropped   uint64 // operations dropped, for any reason
}

// Stats returns the current counters.
func (p *MNSPublisher) Stats() MNSPublisherStats {
	return MNSPublisherStats{
		Queued:    int(p.queued.Load()),
		Delivered: p.delivered.Load(),
		Dropped:   p.dropped.Load(),
	}
}

// Close stops accepting operations (later ones are dropped and counted) and waits for the
// queued ones to be delivered, or dropped after their retry window, for as long as ctx
// allows. When ctx ends first, what is still queued is dropped and Close returns ctx's
// error once every worker has stopped (promptly: in-flight requests are canceled).
func (p *MNSPublisher) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		p.cancel()
		<-done
	}
	p.cancel()
	p.flushDropLog()
	return err
}

func (p *MNSPublisher) enqueue(topic string, op *mnsOp) {
	op.enqueued = p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.dropLocked(topic, op, MNSDropClosed, nil)
		return
	}
	q, running := p.topics[topic]
	if !running {
		q = &mnsTopicQueue{}
		p.topics[topic] = q
	}
	if op.kind == mnsOpPublish && len(q.ops) >= p.queueLimit {
		victim := -1
		for i, o := range q.ops {
			// Lower importance numbers matter more: evict the highest number, oldest first.
			if o.kind == mnsOpPublish && (victim < 0 || o.push.Importance > q.ops[victim].push.Importance) {
				victim = i
			}
		}
		if victim < 0 || q.ops[victim].push.Importance < op.push.Importance {
			p.dropLocked(topic, op, MNSDropQueueFull, nil)
			return
		}
		v := q.ops[victim]
		q.ops = append(q.ops[:victim], q.ops[victim+1:]...)
		p.queued.Add(-1)
		p.m.depth.Dec()
		p.dropLocked(topic, v, MNSDropQueueFull, nil)
	}
	q.ops = append(q.ops, op)
	p.queued.Add(1)
	p.m.depth.Inc()
	if !running {
		p.wg.Add(1)
		go p.run(topic, q)
	}
}

// run is the worker of one topic: it runs the queued operations in order and exits when
// the queue is empty.
func (p *MNSPublisher) run(topic string, q *mnsTopicQueue) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if len(q.ops) == 0 {
			delete(p.topics, topic)
			p.mu.Unlock()
			return
		}
		op := q.ops[0]
		q.ops[0] = nil
		q.ops = q.ops[1:]
		recreate := op.kind == mnsOpPublish && p.needCreate[topic]
		p.mu.Unlock()

		if recreate {
			// The topic's creation was dropped earlier: try it again first, within this
			// message's window. If it fails again, the publish will most likely be refused
			// with TopicNotExist and dropped.
			p.execute(topic, &mnsOp{kind: mnsOpCreate, enqueued: op.enqueued, repair: true})
		}
		p.execute(topic, op)
		p.queued.Add(-1)
		p.m.depth.Dec()
	}
}

// execute runs op until it succeeds, is refused, or its retry window is over.
func (p *MNSPublisher) execute(topic string, op *mnsOp) {
	deadline := op.enqueued.Add(p.retryWindow)
	backoff := p.initialBackoff
	for {
		if p.ctx.Err() != nil {
			p.drop(topic, op, MNSDropClosed, nil)
			return
		}
		if p.member != nil && !p.member() {
			p.drop(topic, op, MNSDropNotMember, nil)
			return
		}
		err := p.attempt(topic, op)
		if err == nil {
			if !op.repair {
				p.delivered.Add(1)
			}
			if op.kind != mnsOpPublish {
				p.mu.Lock()
				delete(p.needCreate, topic)
				p.mu.Unlock()
			}
			return
		}
		if p.ctx.Err() != nil {
			p.drop(topic, op, MNSDropClosed, err)
			return
		}
		if !mnsRetryable(err) {
			p.drop(topic, op, MNSDropRejected, err)
			return
		}
		left := deadline.Sub(p.now())
		if left <= 0 {
			p.drop(topic, op, MNSDropRetryWindow, err)
			return
		}
		// Full jitter over the upper half, so topics that failed together spread out.
		wait := backoff/2 + rand.N(backoff/2+1)
		if wait > left {
			wait = left
		}
		if p.sleep(p.ctx, wait) != nil {
			p.drop(topic, op, MNSDropClosed, err)
			return
		}
		backoff = min(backoff*2, p.maxBackoff)
	}
}

// attempt makes the requests of op once (the create's remaining steps only).
func (p *MNSPublisher) attempt(topic string, op *mnsOp) error {
	select {
	case p.sem <- struct{}{}:
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
	defer func() { <-p.sem }()
	ctx := p.ctx
	switch op.kind {
	case mnsOpCreate:
		if !op.created {
			err := p.client.CreateTopic(ctx, topic)
			p.m.request("create_topic", err)
			if err != nil {
				return err
			}
			op.created = true
		}
		if p.endpoint == "" {
			return nil
		}
		err := p.client.Subscribe(ctx, topic, topic, p.endpoint)
		p.m.request("subscribe", err)
		return err
	case mnsOpPublish:
		_, err := p.client.PublishMessage(ctx, topic, op.push.Body, op.push.Tag, op.push.Importance)
		p.m.request("publish", err)
		return err
	default:
		err := p.client.DeleteTopic(ctx, topic)
		p.m.request("delete_topic", err)
		return err
	}
}

// mnsRetryable: outages (5xx, timeouts, network errors, an open breaker) and throttling
// may pass; other refusals will not.
func mnsRetryable(err error) bool {
	if errors.Is(err, ErrMNSInvalidRequest) {
		return false
	}
	var me *MNSError
	if !errors.As(err, &me) {
		return true
	}
	switch {
	case me.Status >= 500, me.Status == http.StatusRequestTimeout, me.Status == http.StatusTooManyRequests:
		return true
	}
	// TimeExpired is retried too: the next attempt carries a fresh Date.
	return me.Code == "QpsLimitExceeded" || me.Code == "TimeExpired"
}

func (p *MNSPublisher) drop(topic string, op *mnsOp, reason string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked(topic, op, reason, err)
}

// dropLocked counts and (rate-limited) logs a dropped operation. A dropped creation is
// remembered so that the next publish retries it.
func (p *MNSPublisher) dropLocked(topic string, op *mnsOp, reason string, err error) {
	switch op.kind {
	case mnsOpCreate:
		if reason != MNSDropClosed {
			p.needCreate[topic] = true
		}
	case mnsOpDelete:
		delete(p.needCreate, topic)
	}
	if op.repair {
		return
	}
	p.dropped.Add(1)
	p.m.dropped.WithLabelValues(op.kind.String(), reason).Inc()
	now := time.Now()
	if now.Sub(p.lastDropLog) < time.Second {
		p.suppressed++
		return
	}
	p.lastDropLog = now
	args := []any{"topic", topic, "op", op.kind.String(), "reason", reason}
	if op.kind == mnsOpPublish {
		args = append(args, "type", op.push.Type, "importance", op.push.Importance)
	}
	if err != nil {
		args = append(args, "err", err)
	}
	if p.suppressed > 0 {
		args = append(args, "alsoDroppedSinceLastLog", p.suppressed)
		p.suppressed = 0
	}
	p.log.Warn("mns operation dropped", args...)
}

func (p *MNSPublisher) flushDropLog() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.suppressed > 0 {
		p.log.Warn("mns operations dropped", "count", p.suppressed)
		p.suppressed = 0
	}
}

func mnsSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Metrics.

// MNS request results, as the result label of roomengine_mns_requests_total.
const (
	MNSResultOK          = "ok"
	MNSResultError       = "error"        // 5xx, timeout, network error
	MNSResultRejected    = "rejected"     // a 4xx answer, or invalid before sending
	MNSResultBreakerOpen = "breaker_open" // not sent: the circuit breaker is open
)

type mnsMetrics struct {
	requests *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	depth    prometheus.Gauge
}

func newMNSMetrics(reg prometheus.Registerer) *mnsMetrics {
	m := &mnsMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomengine_mns_requests_total",
			Help: "MNS requests made by the mns push backend, by operation and result.",
		}, []string{"op", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomengine_mns_dropped_total",
			Help: "MNS operations (create_topic, publish, delete_topic) given up, by reason.",
		}, []string{"op", "reason"}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roomengine_mns_queue_depth",
			Help: "MNS operations queued or running, over all topics.",
		}),
	}
	if reg != nil {
		m.requests = mnsRegister(reg, m.requests)
		m.dropped = mnsRegister(reg, m.dropped)
		m.depth = mnsRegister(reg, m.depth)
	}
	// Export the publish drop series at zero from the start, so rate() and alerts work.
	for _, r := range []string{MNSDropRetryWindow, MNSDropRejected, MNSDropQueueFull, MNSDropClosed, MNSDropNotMember} {
		m.dropped.WithLabelValues("publish", r)
	}
	return m
}

func (m *mnsMetrics) request(op string, err error) {
	result := MNSResultOK
	var me *MNSError
	switch {
	case err == nil:
	case errors.Is(err, ErrBreakerOpen):
		result = MNSResultBreakerOpen
	case errors.Is(err, ErrMNSInvalidRequest), errors.As(err, &me) && me.Status < 500:
		result = MNSResultRejected
	default:
		result = MNSResultError
	}
	m.requests.WithLabelValues(op, result).Inc()
}

// mnsRegister reuses an identical collector already registered, so a publisher rebuilt on
// the same registry (tests, a restart of the backend) does not fail.
func mnsRegister[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
