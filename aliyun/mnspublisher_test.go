package aliyun

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"roomengine/actors"
	"roomengine/aliyun/mnstest"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

type pubEnv struct {
	fake *mnstest.Server
	pub  *MNSPublisher
	reg  *prometheus.Registry
}

// newPubEnv makes a publisher over a client of a fresh fake, with short timings.
func newPubEnv(t *testing.T, clientCfg MNSConfig, o MNSPublisherOptions) *pubEnv {
	t.Helper()
	if clientCfg.BreakerOpenTimeout == 0 {
		clientCfg.BreakerOpenTimeout = 50 * time.Millisecond
	}
	if clientCfg.Timeout == 0 {
		clientCfg.Timeout = time.Second
	}
	clientCfg.Logger = quietLog
	c, fake := newTestMNS(t, clientCfg)
	reg := prometheus.NewRegistry()
	if o.SubscriptionEndpoint == "" {
		o.SubscriptionEndpoint = "WebSocket"
	}
	if o.RetryWindow == 0 {
		o.RetryWindow = 10 * time.Second
	}
	if o.InitialBackoff == 0 {
		o.InitialBackoff = 5 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 40 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = quietLog
	}
	o.Registerer = reg
	p := NewMNSPublisher(c, o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return &pubEnv{fake: fake, pub: p, reg: reg}
}

func push(topic string, i, importance int) actors.Push {
	return actors.Push{
		Topic:      topic,
		Tag:        topic,
		Importance: importance,
		Type:       6,
		Body:       []byte(fmt.Sprintf(`{"data":{"n":%d,"comment":"<&>评论"},"type":6,"time":%d}`, i, 1700000000000+i)),
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// idle: nothing queued and every topic worker has exited.
func (e *pubEnv) idle() bool {
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	return e.pub.queued.Load() == 0 && len(e.pub.topics) == 0
}

// checkOrder asserts the fake holds exactly the messages want[i] for topic, in order.
func checkOrder(t *testing.T, fake *mnstest.Server, topic string, want []int) {
	t.Helper()
	got := fake.Messages(topic)
	var gotN []int
	for _, m := range got {
		var n int
		if _, err := fmt.Sscanf(m.Body, `{"data":{"n":%d`, &n); err != nil {
			t.Fatalf("unexpected body %q", m.Body)
		}
		gotN = append(gotN, n)
		if m.Tag != topic {
			t.Errorf("message %d tag %q, want %q", n, m.Tag, topic)
		}
		if want := push(topic, n, 0).Body; m.Body != string(want) {
			t.Errorf("message %d body %q, want %q", n, m.Body, want)
		}
	}
	if fmt.Sprint(gotN) != fmt.Sprint(want) {
		t.Fatalf("topic %s messages %v, want %v", topic, gotN, want)
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func (e *pubEnv) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	switch name {
	case "requests":
		return metricValue(e.pub.m.requests.WithLabelValues(labels...))
	case "dropped":
		return metricValue(e.pub.m.dropped.WithLabelValues(labels...))
	}
	t.Fatalf("unknown metric %s", name)
	return 0
}

// metricValue reads a counter or gauge (prometheus/testutil would need another module).
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

func TestMNSPublisherRoundTrip(t *testing.T) {
	e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{})
	e.pub.CreateTopic("room1")
	for i := 0; i < 3; i++ {
		p := push("room1", i, 5+i)
		if i == 2 {
			p.Tag = "42" // a message for one user
		}
		e.pub.Publish(p)
	}
	e.pub.DeleteTopic("room1")
	waitFor(t, "the queue to drain", 5*time.Second, e.idle)

	msgs := e.fake.Messages("room1")
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	for i, m := range msgs {
		if m.Importance != 5+i || !m.HasImportance {
			t.Errorf("message %d importance %d", i, m.Importance)
		}
	}
	if msgs[2].Tag != "42" || msgs[0].Tag != "room1" {
		t.Errorf("tags %q %q", msgs[0].Tag, msgs[2].Tag)
	}
	if e.fake.HasTopic("room1") {
		t.Error("topic not deleted")
	}
	if got := e.counter(t, "requests", "create_topic", "ok"); got != 1 {
		t.Errorf("create_topic ok = %v", got)
	}
	if got := e.counter(t, "requests", "subscribe", "ok"); got != 1 {
		t.Errorf("subscribe ok = %v", got)
	}
	if got := e.counter(t, "requests", "publish", "ok"); got != 3 {
		t.Errorf("publish ok = %v", got)
	}
	if got := e.counter(t, "requests", "delete_topic", "ok"); got != 1 {
		t.Errorf("delete_topic ok = %v", got)
	}
	if got := metricValue(e.pub.m.depth); got != 0 {
		t.Errorf("queue depth %v after draining", got)
	}
	if s := e.pub.Stats(); s.Delivered != 5 || s.Dropped != 0 || s.Queued != 0 {
		t.Errorf("stats %+v", s)
	}
	// The metrics are on the registerer under their documented names.
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"roomengine_mns_requests_total", "roomengine_mns_queue_depth", "roomengine_mns_dropped_total"} {
		if !names[n] {
			t.Errorf("metric %s not registered (have %v)", n, names)
		}
	}
}

// Subscription made with the topic: named like the topic, with the configured endpoint.
func TestMNSPublisherSubscription(t *testing.T) {
	e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{SubscriptionEndpoint: "WebSocketEndpoint"})
	e.pub.CreateTopic("a1b2c3d4e5")
	waitFor(t, "the queue to drain", 5*time.Second, e.idle)
	subs := e.fake.Subscriptions("a1b2c3d4e5")
	if len(subs) != 1 || subs[0].Name != "a1b2c3d4e5" || subs[0].Endpoint != "WebSocketEndpoint" {
		t.Fatalf("subscriptions %+v", subs)
	}
}

func TestMNSPublisherOrderAcrossRetries(t *testing.T) {
	e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{})
	topics := []string{"t0", "t1", "t2", "t3"}
	for _, tp := range topics {
		e.pub.CreateTopic(tp)
	}
	waitFor(t, "topics", 5*time.Second, e.idle)

	// The first 3 requests of a single topic fail with 503.
	e.fake.FailNext(3, 503, "ServiceUnavailable")
	for i := 0; i < 30; i++ {
		e.pub.Publish(push("t0", i, 8))
	}
	waitFor(t, "t0 to drain", 10*time.Second, e.idle)
	checkOrder(t, e.fake, "t0", seq(0, 30))
	if got := e.counter(t, "requests", "publish", "error"); got != 3 {
		t.Errorf("publish errors = %v, want 3", got)
	}

	// Several topics at once, with enough failures to open the breaker on the way.
	e.fake.FailNext(12, 503, "ServiceUnavailable")
	var wg sync.WaitGroup
	for _, tp := range topics[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				e.pub.Publish(push(tp, i, 8))
			}
		}()
	}
	wg.Wait()
	waitFor(t, "every topic to drain", 10*time.Second, e.idle)
	for _, tp := range topics[1:] {
		checkOrder(t, e.fake, tp, seq(0, 25))
	}
	if s := e.pub.Stats(); s.Dropped != 0 {
		t.Errorf("dropped %d", s.Dropped)
	}
}

func TestMNSPublisherNeverBlocks(t *testing.T) {
	e := newPubEnv(t, MNSConfig{Timeout: 5 * time.Second}, MNSPublisherOptions{})
	e.fake.SetDelay(2 * time.Second)
	start := time.Now()
	for r := 0; r < 10; r++ {
		e.pub.CreateTopic(fmt.Sprintf("room%d", r))
	}
	for i := 0; i < 100; i++ {
		e.pub.Publish(push(fmt.Sprintf("room%d", i%10), i, 8))
	}
	for r := 0; r < 10; r++ {
		e.pub.DeleteTopic(fmt.Sprintf("room%d", r))
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("120 calls took %s while MNS answers in 2s", d)
	}
	if s := e.pub.Stats(); s.Queued != 120 {
		t.Errorf("queued %d, want 120", s.Queued)
	}
	if got := metricValue(e.pub.m.depth); got != 120 {
		t.Errorf("queue depth gauge %v, want 120", got)
	}
	e.fake.SetDelay(0)
	waitFor(t, "the queue to drain", 10*time.Second, e.idle)
	for r := 0; r < 10; r++ {
		var want []int
		for i := r; i < 100; i += 10 {
			want = append(want, i)
		}
		checkOrder(t, e.fake, fmt.Sprintf("room%d", r), want)
	}
	if len(e.fake.Topics()) != 0 {
		t.Errorf("topics left: %v", e.fake.Topics())
	}
}

func TestMNSPublisherOutageWithinWindow(t *testing.T) {
	for _, mode := range []mnstest.DownMode{mnstest.Down503, mnstest.DownClose} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{RetryWindow: 10 * time.Second})
			e.pub.CreateTopic("room1")
			e.pub.Publish(push("room1", 0, 8))
			waitFor(t, "the first message", 5*time.Second, e.idle)

			e.fake.SetDown(mode)
			for i := 1; i < 20; i++ {
				e.pub.Publish(push("room1", i, 5+i%5))
			}
			// Stay down long enough for the breaker to open and for several retries.
			waitFor(t, "failed attempts", 5*time.Second, func() bool {
				return e.counter(t, "requests", "publish", "breaker_open") > 0
			})
			time.Sleep(200 * time.Millisecond)
			if s := e.pub.Stats(); s.Queued != 19 {
				t.Fatalf("queued %d while down, want 19", s.Queued)
			}
			e.fake.SetDown(mnstest.Up)
			waitFor(t, "the queue to drain", 10*time.Second, e.idle)
			checkOrder(t, e.fake, "room1", seq(0, 20))
			if s := e.pub.Stats(); s.Dropped != 0 {
				t.Errorf("dropped %d", s.Dropped)
			}
		})
	}
}

func TestMNSPublisherOutageBeyondWindow(t *testing.T) {
	e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{RetryWindow: 300 * time.Millisecond})
	e.pub.CreateTopic("room1")
	e.pub.Publish(push("room1", 0, 8))
	waitFor(t, "the first message", 5*time.Second, e.idle)

	e.fake.SetDown(mnstest.Down503)
	for i := 1; i <= 5; i++ {
		e.pub.Publish(push("room1", i, 8))
	}
	waitFor(t, "the messages to be dropped", 10*time.Second, e.idle)
	if got := e.counter(t, "dropped", "publish", MNSDropRetryWindow); got != 5 {
		t.Fatalf("dropped{publish,retry_window} = %v, want 5", got)
	}

	e.fake.SetDown(mnstest.Up)
	waitFor(t, "the breaker to half-open", 5*time.Second, func() bool {
		return e.pub.client.BreakerState() != BreakerOpen
	})
	for i := 6; i < 9; i++ {
		e.pub.Publish(push("room1", i, 8))
	}
	waitFor(t, "later messages", 5*time.Second, e.idle)
	checkOrder(t, e.fake, "room1", []int{0, 6, 7, 8})
	if s := e.pub.Stats(); s.Dropped != 5 {
		t.Errorf("stats %+v", s)
	}
}

// A room created during an outage longer than the retry window: its topic creation is
// dropped, and the next publish creates it first.
func TestMNSPublisherCreateDroppedThenRetried(t *testing.T) {
	e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{RetryWindow: 200 * time.Millisecond})
	e.fake.SetDown(mnstest.Down503)
	e.pub.CreateTopic("room1")
	e.pub.Publish(push("room1", 0, 8))
	waitFor(t, "drops", 10*time.Second, e.idle)
	if got := e.counter(t, "dropped", "create_topic", MNSDropRetryWindow); got != 1 {
		t.Fatalf("dropped{create_topic} = %v", got)
	}
	e.fake.SetDown(mnstest.Up)
	waitFor(t, "the breaker to half-open", 5*time.Second, func() bool {
		return e.pub.client.BreakerState() != BreakerOpen
	})
	e.pub.Publish(push("room1", 1, 8))
	waitFor(t, "delivery", 5*time.Second, e.idle)
	checkOrder(t, e.fake, "room1", []int{1})
	if len(e.fake.Subscriptions("room1")) != 1 {
		t.Error("subscription not made on the retried creation")
	}
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	if len(e.pub.needCreate) != 0 {
		t.Errorf("needCreate %v after a successful creation", e.pub.needCreate)
	}
}

func TestMNSPublisherDeleteAfterPublishes(t *testing.T) {
	e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{})
	e.fake.SetDelay(2 * time.Millisecond)
	e.pub.CreateTopic("room1")
	for i := 0; i < 50; i++ {
		e.pub.Publish(push("room1", i, 8))
	}
	e.pub.DeleteTopic("room1")
	waitFor(t, "the queue to drain", 10*time.Second, e.idle)
	checkOrder(t, e.fake, "room1", seq(0, 50))
	if e.fake.HasTopic("room1") {
		t.Fatal("topic not deleted")
	}

	// A publish after the deletion is refused (TopicNotExist) and dropped at once, not
	// retried for the whole window.
	e.fake.SetDelay(0)
	start := time.Now()
	e.pub.Publish(push("room1", 50, 8))
	waitFor(t, "the refused publish", 5*time.Second, e.idle)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a refused publish took %s to drop", d)
	}
	if got := e.counter(t, "dropped", "publish", MNSDropRejected); got != 1 {
		t.Errorf("dropped{publish,rejected} = %v", got)
	}
	if got := e.counter(t, "requests", "publish", "rejected"); got != 1 {
		t.Errorf("requests{publish,rejected} = %v", got)
	}
}

func TestMNSPublisherQueueLimit(t *testing.T) {
	e := newPubEnv(t, MNSConfig{Timeout: 5 * time.Second}, MNSPublisherOptions{QueueLimit: 5})
	e.fake.SetDelay(300 * time.Millisecond)
	e.pub.CreateTopic("room1")
	waitFor(t, "the creation to be in flight", 5*time.Second, func() bool { return e.fake.Requests() == 1 })

	// Importance: lower numbers matter more.
	e.pub.Publish(push("room1", 0, 9)) // like
	e.pub.Publish(push("room1", 1, 9))
	e.pub.Publish(push("room1", 2, 8)) // comment
	e.pub.Publish(push("room1", 3, 9))
	e.pub.Publish(push("room1", 4, 8))
	e.pub.Publish(push("room1", 5, 5))  // full: evicts 0, the oldest like
	e.pub.Publish(push("room1", 6, 9))  // evicts 1, the oldest like
	e.pub.Publish(push("room1", 7, 10)) // less important than all: dropped itself
	e.pub.Publish(push("room1", 8, 4))  // evicts 3
	if got := e.counter(t, "dropped", "publish", MNSDropQueueFull); got != 4 {
		t.Fatalf("dropped{publish,queue_full} = %v, want 4", got)
	}
	e.fake.SetDelay(0)
	waitFor(t, "the queue to drain", 10*time.Second, e.idle)
	checkOrder(t, e.fake, "room1", []int{2, 4, 5, 6, 8})
}

func TestMNSPublisherClose(t *testing.T) {
	t.Run("flushes", func(t *testing.T) {
		e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{})
		e.fake.SetDelay(5 * time.Millisecond)
		e.pub.CreateTopic("room1")
		for i := 0; i < 10; i++ {
			e.pub.Publish(push("room1", i, 8))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.pub.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		checkOrder(t, e.fake, "room1", seq(0, 10))
		// Closed: later operations are dropped and counted, without a request.
		n := e.fake.Requests()
		e.pub.Publish(push("room1", 10, 8))
		if got := e.counter(t, "dropped", "publish", MNSDropClosed); got != 1 {
			t.Errorf("dropped{publish,closed} = %v", got)
		}
		if e.fake.Requests() != n {
			t.Error("a request was made after Close")
		}
	})
	t.Run("gives up at the deadline", func(t *testing.T) {
		e := newPubEnv(t, MNSConfig{Timeout: 5 * time.Second}, MNSPublisherOptions{RetryWindow: time.Minute})
		e.fake.SetDelay(3 * time.Second)
		e.pub.CreateTopic("room1")
		for i := 0; i < 10; i++ {
			e.pub.Publish(push("room1", i, 8))
		}
		e.pub.CreateTopic("room2")
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := e.pub.Close(ctx); err == nil {
			t.Fatal("Close reported a flush that cannot have happened")
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Close took %s with a 100ms deadline", d)
		}
		if s := e.pub.Stats(); s.Queued != 0 || s.Dropped != 12 {
			t.Fatalf("stats after Close %+v, want 12 dropped", s)
		}
		if !e.idle() {
			t.Fatal("workers still running after Close")
		}
	})
}

// Drops are logged, rate-limited, and name the topic and reason but never the secret.
func TestMNSPublisherDropLog(t *testing.T) {
	var mu sync.Mutex
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{Logger: logger})
	for i := 0; i < 20; i++ {
		e.pub.Publish(push("nosuchtopic", i, 8))
	}
	waitFor(t, "drops", 5*time.Second, e.idle)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = e.pub.Close(ctx)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if n := strings.Count(out, "\n"); n < 1 || n > 3 {
		t.Errorf("%d log lines for 20 drops in a burst:\n%s", n, out)
	}
	if !strings.Contains(out, "topic=nosuchtopic") || !strings.Contains(out, "reason=rejected") {
		t.Errorf("log lacks topic or reason:\n%s", out)
	}
	if strings.Contains(out, testSecret) {
		t.Error("secret in the log")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// The retry loop uses the Now/Sleep hooks: with a fake clock a 2 minute window passes
// without real waiting.
func TestMNSPublisherClockHooks(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	var slept []time.Duration
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	sleep := func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		now = now.Add(d)
		slept = append(slept, d)
		mu.Unlock()
		return ctx.Err()
	}
	e := newPubEnv(t, MNSConfig{BreakerOpenTimeout: time.Hour}, MNSPublisherOptions{
		RetryWindow:    2 * time.Minute,
		InitialBackoff: 200 * time.Millisecond,
		MaxBackoff:     10 * time.Second,
		Now:            clock,
		Sleep:          sleep,
	})
	e.fake.SetDown(mnstest.Down503)
	e.pub.Publish(push("room1", 0, 8))
	waitFor(t, "the drop", 5*time.Second, e.idle)
	if got := e.counter(t, "dropped", "publish", MNSDropRetryWindow); got != 1 {
		t.Fatalf("dropped = %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	var total time.Duration
	for i, d := range slept {
		total += d
		if d > 10*time.Second {
			t.Errorf("wait %d is %s, over MaxBackoff", i, d)
		}
	}
	if total != 2*time.Minute {
		t.Errorf("waited %s in total, want exactly the 2m window", total)
	}
	if len(slept) < 12 || len(slept) > 40 {
		t.Errorf("%d waits over a 2m window with 200ms..10s backoff", len(slept))
	}
	if slept[0] < 100*time.Millisecond || slept[0] > 200*time.Millisecond {
		t.Errorf("first wait %s, want 100ms..200ms", slept[0])
	}
}

// A node whose cluster membership lapsed sends nothing more: what it had queued (waiting out
// an MNS outage) and what comes after is dropped as not_member, and its workers stop.
func TestMNSPublisherStopsWhenNotMember(t *testing.T) {
	var member atomic.Bool
	member.Store(true)
	e := newPubEnv(t, MNSConfig{}, MNSPublisherOptions{RetryWindow: time.Minute, Member: member.Load})
	e.pub.CreateTopic("room1")
	e.pub.Publish(push("room1", 0, 8))
	waitFor(t, "the first message", 5*time.Second, e.idle)

	e.fake.SetDown(mnstest.Down503)
	for i := 1; i < 10; i++ {
		e.pub.Publish(push("room1", i, 8))
	}
	waitFor(t, "a failed attempt", 5*time.Second, func() bool {
		return e.counter(t, "requests", "publish", MNSResultBreakerOpen)+e.counter(t, "requests", "publish", MNSResultError) > 0
	})
	member.Store(false) // expelled
	// An attempt that began before the expulsion may still be under way: MNS comes back
	// only once the worker has seen the expulsion, so nothing after it can be sent.
	waitFor(t, "a drop as not a member", 5*time.Second, func() bool {
		return e.counter(t, "dropped", "publish", MNSDropNotMember) > 0
	})
	e.fake.SetDown(mnstest.Up)
	e.pub.Publish(push("room1", 10, 8))
	waitFor(t, "the workers to stop", 5*time.Second, e.idle)
	checkOrder(t, e.fake, "room1", []int{0})
	if got := e.counter(t, "dropped", "publish", MNSDropNotMember); got != 10 {
		t.Fatalf("dropped as not_member: %v, want 10", got)
	}
}
