package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

func TestFrameFormat(t *testing.T) {
	g, srv := startGateway(t, Options{})
	c := dial(t, srv, "topic=r1")
	waitSubscribers(t, g, "r1", 1)

	pubOf(g).Publish(comment("r1", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"topic":"r1","seq":1,"tag":"r1","importance":8,"message":{"data":{"uid":"1","name":"a","comment":"c1"},"type":6,"time":1700000000000}}`
	if string(b) != want {
		t.Fatalf("frame\n got %s\nwant %s", b, want)
	}
}

func TestBodyIsEmbeddedVerbatim(t *testing.T) {
	g, srv := startGateway(t, Options{})
	c := dial(t, srv, "topic=r1")
	waitSubscribers(t, g, "r1", 1)
	pubOf(g).Publish(newPush("r1", "r1", 8, 6, `{"comment":"<b>&</b> 你好"}`))
	f := readFrame(t, c)
	if want := `{"data":{"comment":"<b>&</b> 你好"},"type":6,"time":1700000000000}`; string(f.Message) != want {
		t.Fatalf("message %s, want %s", f.Message, want)
	}
}

func TestInvalidBodyIsSentAsString(t *testing.T) {
	g, srv := startGateway(t, Options{})
	c := dial(t, srv, "topic=r1")
	waitSubscribers(t, g, "r1", 1)
	pubOf(g).Publish(newPush("r1", "r1", 8, 6, "")) // renders "data": with no value
	f := readFrame(t, c)
	var s string
	if err := json.Unmarshal(f.Message, &s); err != nil || !strings.HasPrefix(s, `{"data":,`) {
		t.Fatalf("message %s: want the raw body as a JSON string (err %v)", f.Message, err)
	}
}

func TestTagFiltering(t *testing.T) {
	g, srv := startGateway(t, Options{})
	roomAndUser := dial(t, srv, "topic=r1&tags=r1,u7")
	all := dial(t, srv, "topic=r1")
	other := dial(t, srv, "topic=r1&tags=u9")
	spaced := dial(t, srv, "topic=r1&tags=%20u7%20,,")
	waitSubscribers(t, g, "r1", 4)

	for _, tag := range []string{"r1", "u7", "u9", "r1", "r2"} {
		pubOf(g).Publish(newPush("r1", tag, 8, 6, `{}`))
	}
	// Sentinels: the last frame each client should see, so the reads below also prove
	// nothing else arrived before it.
	pubOf(g).Publish(newPush("r1", "r1", 5, 8, `{}`)) // seq 6
	pubOf(g).Publish(newPush("r1", "u9", 5, 8, `{}`)) // seq 7
	pubOf(g).Publish(newPush("r1", "u7", 5, 8, `{}`)) // seq 8

	cases := []struct {
		name string
		c    *websocket.Conn
		want []uint64
	}{
		{"tags=r1,u7", roomAndUser, []uint64{1, 2, 4, 6, 8}},
		{"no tags", all, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"tags=u9", other, []uint64{3, 7}},
		{"tags with blanks", spaced, []uint64{2, 8}},
	}
	for _, tc := range cases {
		if got := readSeqs(t, tc.c, len(tc.want)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got seqs %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSinceReplaysMissedThenLive(t *testing.T) {
	g, srv := startGateway(t, Options{})
	for i := 1; i <= 5; i++ {
		pubOf(g).Publish(comment("r1", i))
	}
	c := dial(t, srv, "topic=r1&since=2")
	waitSubscribers(t, g, "r1", 1)
	pubOf(g).Publish(comment("r1", 6))
	pubOf(g).Publish(comment("r1", 7))

	var got []uint64
	for range 5 {
		f := readFrame(t, c)
		var body struct {
			Data struct{ Comment string } `json:"data"`
		}
		if err := json.Unmarshal(f.Message, &body); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("c%d", f.Seq); body.Data.Comment != want {
			t.Fatalf("seq %d carries comment %q, want %q", f.Seq, body.Data.Comment, want)
		}
		got = append(got, f.Seq)
	}
	if want := []uint64{3, 4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("got seqs %v, want %v", got, want)
	}
}

func TestSinceReplayIsTagFiltered(t *testing.T) {
	g, srv := startGateway(t, Options{})
	for _, tag := range []string{"r1", "u1", "u2", "u1"} {
		pubOf(g).Publish(newPush("r1", tag, 4, 1, `{}`))
	}
	c := dial(t, srv, "topic=r1&tags=u1&since=0")
	waitSubscribers(t, g, "r1", 1)
	pubOf(g).Publish(newPush("r1", "u1", 4, 1, `{}`))
	if got, want := readSeqs(t, c, 3), []uint64{2, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("got seqs %v, want %v", got, want)
	}
}

// A since beyond the topic's seq comes from a previous life of the topic; the client gets
// everything still held rather than nothing.
func TestSinceFromAnEarlierTopicLifeReplaysAll(t *testing.T) {
	g, srv := startGateway(t, Options{})
	pubOf(g).Publish(comment("r1", 1))
	pubOf(g).Publish(comment("r1", 2))
	c := dial(t, srv, "topic=r1&since=900")
	if got, want := readSeqs(t, c, 2), []uint64{1, 2}; !slices.Equal(got, want) {
		t.Fatalf("got seqs %v, want %v", got, want)
	}
}

// Subscribing while another goroutine publishes must yield every seq after since exactly
// once and in order: replay and live delivery meet without a gap or an overlap. The
// publisher keeps going until it sees the subscription, so the two always overlap.
func TestSinceUnderConcurrentPublishHasNoGapOrDuplicate(t *testing.T) {
	const limit = 50000
	g, srv := startGateway(t, Options{HistorySize: limit, QueueSize: limit})
	pub := func() { pubOf(g).Publish(newPush("r1", "r1", 5, 9, `{}`)) }
	for range 1000 {
		pub()
	}
	last := make(chan uint64, 1)
	go func() {
		n := uint64(1000)
		for ; n < limit && g.Subscribers("r1") == 0; n++ {
			pub()
		}
		for range 200 {
			pub()
			n++
		}
		last <- n
	}()
	const since = 500
	c := dial(t, srv, fmt.Sprintf("topic=r1&since=%d", since))
	end := <-last // Publish never waits for the client, so this comes without reading
	for want := uint64(since + 1); want <= end; want++ {
		if f := readFrame(t, c); f.Seq != want {
			t.Fatalf("got seq %d, want %d", f.Seq, want)
		}
	}
}

func TestRequestErrors(t *testing.T) {
	g := New(Options{Logger: quietLogger(), SeqOrigin: zeroOrigin})
	upgrade := func(r *http.Request) *http.Request {
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "websocket")
		return r
	}
	cases := []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantBody   string
	}{
		{"no topic", httptest.NewRequest("GET", "/ws", nil), 200, `{"code":20001,"message":"topic不能为空"}`},
		{"blank topic", httptest.NewRequest("GET", "/ws?topic=%20", nil), 200, `{"code":20001,"message":"topic不能为空"}`},
		{"negative since", upgrade(httptest.NewRequest("GET", "/ws?topic=r1&since=-1", nil)), 200, `{"code":20001,"message":"since必须是非负整数"}`},
		{"text since", upgrade(httptest.NewRequest("GET", "/ws?topic=r1&since=abc", nil)), 200, `{"code":20001,"message":"since必须是非负整数"}`},
		{"fractional since", upgrade(httptest.NewRequest("GET", "/ws?topic=r1&since=1.5", nil)), 200, `{"code":20001,"message":"since必须是非负整数"}`},
		{"plain GET", httptest.NewRequest("GET", "/ws?topic=r1", nil), 426, `{"code":426,"message":"需要WebSocket升级"}`},
		{"POST", upgrade(httptest.NewRequest("POST", "/ws?topic=r1", nil)), 426, `{"code":426,"message":"需要WebSocket升级"}`},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, tc.req)
		if rec.Code != tc.wantStatus || strings.TrimSpace(rec.Body.String()) != tc.wantBody {
			t.Errorf("%s: got %d %s, want %d %s", tc.name, rec.Code, rec.Body, tc.wantStatus, tc.wantBody)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: content type %q", tc.name, ct)
		}
	}
	if st := g.Stats(); st.Topics != 0 || st.Connections != 0 {
		t.Fatalf("rejected requests left state behind: %+v", st)
	}
}

func TestDeleteTopic(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, srv := startGateway(t, Options{Registerer: reg})
	pubOf(g).Publish(comment("gone", 1))
	pubOf(g).Publish(comment("gone", 2))
	pubOf(g).DeleteTopic("gone")
	if n := g.Stats().Topics; n != 0 {
		t.Fatalf("%d topics after deleting the only one", n)
	}
	pubOf(g).Publish(comment("gone", 1))
	c := dial(t, srv, "topic=gone&since=0")
	if got := readSeqs(t, c, 1); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("after delete the seq restarts: got %v, want [1]", got)
	}

	// A subscriber gets what was published before the deletion, then a normal close (as an
	// MNS subscription ends with its topic); the topic is gone at once.
	pubOf(g).Publish(comment("gone", 2))
	pubOf(g).DeleteTopic("gone")
	if got := readSeqs(t, c, 1); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("subscriber before delete: got %v, want [2]", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if status := websocket.CloseStatus(err); status != websocket.StatusNormalClosure {
		t.Fatalf("after the topic was deleted: %v, want close 1000", err)
	}
	if !strings.Contains(err.Error(), reasonDeleted) {
		t.Fatalf("close reason: %v", err)
	}
	waitUntil(t, "the deleted topic's connection to go", func() bool {
		st := g.Stats()
		return st.Topics == 0 && st.Connections == 0
	})
	if got := gatheredValue(t, reg, "roomengine_ws_disconnects_total", EndTopicDeleted); got != 1 {
		t.Fatalf("topic_deleted disconnects = %v, want 1", got)
	}
	if got := g.Stats().Disconnects; got[EndTopicDeleted] != 1 || got[EndClientGone] != 0 {
		t.Fatalf("Stats().Disconnects = %v, want topic_deleted 1", got)
	}

	pubOf(g).CreateTopic("idle") // a no-op: nothing to hold yet
	if n := g.Stats().Topics; n != 0 {
		t.Fatalf("CreateTopic made %d topics", n)
	}
}

// A subscriber without history leaves nothing behind, so clients cannot grow the topic
// map by connecting to made-up topics.
func TestUnusedTopicIsForgotten(t *testing.T) {
	g, srv := startGateway(t, Options{})
	c := dial(t, srv, "topic=nobody-publishes-here")
	waitSubscribers(t, g, "nobody-publishes-here", 1)
	c.Close(websocket.StatusNormalClosure, "")
	waitUntil(t, "the topic to be forgotten", func() bool {
		st := g.Stats()
		return st.Topics == 0 && st.Connections == 0
	})
}

// A client that stops answering pings is disconnected.
func TestUnansweredPingCloses(t *testing.T) {
	g, srv := startGateway(t, Options{PingInterval: 100 * time.Millisecond})
	dial(t, srv, "topic=r1") // never reads, so never answers a ping
	waitSubscribers(t, g, "r1", 1)
	waitUntil(t, "the silent client to be cut off", func() bool {
		return g.Stats().Connections == 0
	})
}

// A client that reads answers pings and stays connected across several of them.
func TestAnsweredPingKeepsConnection(t *testing.T) {
	g, srv := startGateway(t, Options{PingInterval: 20 * time.Millisecond})
	var pings atomic.Int64
	c := dialWith(t, srv, "topic=r1", &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			pings.Add(1)
			return true // answer it
		},
	})
	ctx := c.CloseRead(context.Background())
	waitSubscribers(t, g, "r1", 1)
	waitUntil(t, "three pings", func() bool { return pings.Load() >= 3 })
	if ctx.Err() != nil || g.Subscribers("r1") != 1 {
		t.Fatal("a responsive client was disconnected")
	}
}

// The end-to-end slow client: the writer is stuck on a frame the kernel cannot take (the
// server's send buffer is pinned small and the frame is far larger than what both socket
// buffers hold), so every later frame stays in the 8-slot queue and the shedding order is
// deterministic.
func TestSlowClientShedsLikesBeforeCommentsThenCloses1013(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := New(Options{
		QueueSize:    8,
		SeqOrigin:    zeroOrigin,
		WriteTimeout: time.Minute, // the stuck write must outlive the test's publishing
		PingInterval: time.Hour,   // a non-reading client cannot answer pings
		Logger:       quietLogger(),
		Registerer:   reg,
	})
	srv := httptest.NewUnstartedServer(g)
	srv.Listener = pinnedSendBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(func() { stopGateway(t, g, srv) })

	c := dial(t, srv, "topic=r1")
	c.SetReadLimit(4 << 20)
	waitSubscribers(t, g, "r1", 1)
	sc := onlyConn(t, g)

	big := newPush("r1", "r1", 9, 7, fmt.Sprintf(`{"uid":"1","name":"a","pad":"%s"}`, strings.Repeat("x", 1<<20)))
	pubOf(g).Publish(big) // seq 1
	// The big frame is taken and stuck in the socket: it is the connection's backlog.
	waitUntil(t, "the writer to be stuck on the big frame", func() bool { return sc.sock != nil && sc.sock.busy() })

	like := func() { pubOf(g).Publish(newPush("r1", "r1", 9, 7, `{"uid":"1","name":"a"}`)) }
	for range 8 {
		like() // seq 2..9 fill the queue
	}
	like() // seq 10: dropped, nothing less important to evict
	for i := range 8 {
		pubOf(g).Publish(comment("r1", 11+i)) // seq 11..18 evict likes 2..9, oldest first
	}
	// The writer fans out after Publish returns: wait for it, then the order is exact.
	waitQueued(t, sc.q, []uint64{11, 12, 13, 14, 15, 16, 17, 18}, "after comments (every like shed)")
	pubOf(g).Publish(comment("r1", 19)) // seq 19: dropped, a comment does not evict a comment
	critical := func() { pubOf(g).Publish(newPush("r1", "r1", 5, 9, `{"uid":"1","name":"a","roomId":"r1"}`)) }
	for range 8 {
		critical() // seq 20..27 evict the comments
	}
	waitQueued(t, sc.q, []uint64{20, 21, 22, 23, 24, 25, 26, 27}, "after critical frames")
	critical() // seq 28 cannot be queued: the connection must close
	waitUntil(t, "the overflow to be counted", func() bool {
		return g.Stats().Dropped[ReasonSlowClientClosed] == 1
	})

	st := g.Stats()
	wantDropped := map[string]uint64{ReasonQueueFullShed: 16, ReasonQueueFullDropped: 2, ReasonSlowClientClosed: 1}
	for reason, want := range wantDropped {
		if st.Dropped[reason] != want {
			t.Errorf("Stats dropped[%s] = %d, want %d", reason, st.Dropped[reason], want)
		}
		if got := gatheredValue(t, reg, "roomengine_push_dropped_total", reason); got != float64(want) {
			t.Errorf("metric dropped{%s} = %v, want %d", reason, got, want)
		}
	}
	if got := gatheredValue(t, reg, "roomengine_push_messages_total", ""); got != 28 {
		t.Errorf("published metric = %v, want 28", got)
	}

	// Reading now lets the stuck write finish; then the client is told to come back.
	if f := readFrame(t, c); f.Seq != 1 {
		t.Fatalf("first frame has seq %d, want 1", f.Seq)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusTryAgainLater || !strings.Contains(ce.Reason, "since") {
		t.Fatalf("after the overflow the client read %v, want close 1013 mentioning since", err)
	}

	// Nothing important was lost: reconnecting with since gets every frame from history.
	again := dial(t, srv, "topic=r1&since=1")
	again.SetReadLimit(4 << 20)
	got := readSeqs(t, again, 27)
	want := make([]uint64, 0, 27)
	for s := uint64(2); s <= 28; s++ {
		want = append(want, s)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("replay after reconnect: %v, want %v", got, want)
	}
	waitUntil(t, "the disconnect to be counted", func() bool {
		return gatheredValue(t, reg, "roomengine_ws_disconnects_total", EndQueueFull) == 1
	})
}

// A client that stops reading altogether blocks the writer; after WriteTimeout the
// connection is dropped (no close frame can get through a full socket) and counted as
// write_failed, so operators can tell stuck clients from clients that left.
func TestStuckClientIsDroppedAfterWriteTimeout(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := New(Options{WriteTimeout: 200 * time.Millisecond, PingInterval: time.Hour, Logger: quietLogger(), Registerer: reg})
	srv := httptest.NewUnstartedServer(g)
	srv.Listener = pinnedSendBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(func() { stopGateway(t, g, srv) })

	c := dial(t, srv, "topic=r1") // never reads
	defer c.CloseNow()
	waitSubscribers(t, g, "r1", 1)
	pubOf(g).Publish(newPush("r1", "r1", 5, 9, fmt.Sprintf(`{"pad":"%s"}`, strings.Repeat("x", 1<<20))))
	// The subscriber is removed before its end is counted: wait for both.
	waitUntil(t, "the stuck client to be dropped and counted", func() bool {
		return g.Subscribers("r1") == 0 && gatheredValue(t, reg, "roomengine_ws_disconnects_total", EndWriteFailed) >= 1
	})
	if got := gatheredValue(t, reg, "roomengine_ws_disconnects_total", EndWriteFailed); got != 1 {
		t.Fatalf("write_failed disconnects = %v, want 1", got)
	}
	if got := gatheredValue(t, reg, "roomengine_ws_disconnects_total", EndClientGone); got != 0 {
		t.Fatalf("client_gone disconnects = %v, want 0", got)
	}
}

// A client that reads slowly but steadily (here about 1.6 MB/s) is not mistaken for a stuck
// one: a 4 MB backlog takes longer than WriteTimeout, but the client keeps taking bytes, and
// every frame arrives. Written under one deadline, it would be cut off after WriteTimeout.
func TestSlowSteadyReaderKeepsUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := New(Options{QueueSize: 1024, WriteTimeout: time.Second, PingInterval: time.Hour,
		SeqOrigin: zeroOrigin, Logger: quietLogger(), Registerer: reg})
	srv := httptest.NewUnstartedServer(g)
	srv.Listener = pinnedSendBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(func() { stopGateway(t, g, srv) })

	c := dial(t, srv, "topic=r1")
	waitSubscribers(t, g, "r1", 1)
	const frames = 500
	pad := strings.Repeat("x", 8<<10)
	for i := range frames {
		pubOf(g).Publish(newPush("r1", "r1", 8, 6, fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, pad)))
	}
	for want := uint64(1); want <= frames; want++ {
		if f := readFrame(t, c); f.Seq != want {
			t.Fatalf("frame seq %d, want %d", f.Seq, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := gatheredValue(t, reg, "roomengine_ws_disconnects_total", EndWriteFailed); got != 0 {
		t.Fatalf("write_failed disconnects = %v, want 0", got)
	}
}

func onlyConn(t *testing.T, g *Gateway) *conn {
	t.Helper()
	// A connection is subscribed before its handshake and tracked only once it is served,
	// so a client whose dial returned may still be a moment away from g.conns.
	var only *conn
	waitUntil(t, "one served connection", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		for c := range g.conns {
			only = c
		}
		return len(g.conns) == 1
	})
	return only
}

// waitQueued waits until q holds exactly the frames numbered want.
func waitQueued(t *testing.T, q *queue, want []uint64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(queuedSeqs(q), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s the queue holds %v, want %v", what, queuedSeqs(q), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func queuedSeqs(q *queue) []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return seqs(q.items)
}

// gatheredValue reads one counter from a registry; label is the reason label, if any.
func gatheredValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label) {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s} not gathered", name, label)
	return 0
}

func TestThousandSubscribersAllReceive(t *testing.T) {
	const n = 1000
	reg := prometheus.NewRegistry()
	g, srv := startGateway(t, Options{Registerer: reg, MaxConnsPerAddr: -1}) // every client is 127.0.0.1
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, wsURL(srv, "topic=big&tags=big"), nil)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.CloseNow()
		}
	})
	waitSubscribers(t, g, "big", n)
	if got := gatheredValue(t, reg, "roomengine_ws_connections", ""); got != n {
		t.Fatalf("connections gauge = %v, want %d", got, n)
	}

	pubOf(g).Publish(comment("big", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	failures := make(chan string, n)
	for i, c := range conns {
		wg.Go(func() {
			_, b, err := c.Read(ctx)
			if err != nil {
				failures <- fmt.Sprintf("subscriber %d: %v", i, err)
				return
			}
			var f testFrame
			if err := json.Unmarshal(b, &f); err != nil || f.Seq != 1 || f.Tag != "big" {
				failures <- fmt.Sprintf("subscriber %d got %s", i, b)
			}
		})
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	if st := g.Stats(); st.FramesSent != n {
		t.Errorf("frames sent %d, want %d", st.FramesSent, n)
	}
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	g := New(Options{Logger: quietLogger(), SeqOrigin: zeroOrigin})
	srv := httptest.NewServer(g)
	defer srv.Close()

	const n = 3
	codes := make(chan websocket.StatusCode, n)
	for range n {
		c := dial(t, srv, "topic=r1")
		go func() {
			_, _, err := c.Read(context.Background())
			codes <- websocket.CloseStatus(err)
		}()
	}
	waitSubscribers(t, g, "r1", n)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for range n {
		if code := <-codes; code != websocket.StatusGoingAway {
			t.Errorf("client saw close %v, want 1001", code)
		}
	}
	if st := g.Stats(); st.Connections != 0 {
		t.Errorf("%d connections after shutdown", st.Connections)
	}

	_, resp, err := websocket.Dial(ctx, wsURL(srv, "topic=r1"), nil)
	if err == nil {
		t.Fatal("dial after shutdown succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v, response %+v; want HTTP 503", err, resp)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/ws?topic=r1", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	g.ServeHTTP(rec, req)
	var env struct{ Code int }
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Code != 503 {
		t.Fatalf("envelope after shutdown: %s", rec.Body)
	}
}

// Two gateways on one registry (say, a test rebuilding the server) share the collectors
// instead of panicking.
func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := New(Options{Registerer: reg, Logger: quietLogger(), SeqOrigin: zeroOrigin})
	b := New(Options{Registerer: reg, Logger: quietLogger(), SeqOrigin: zeroOrigin})
	pubOf(a).Publish(comment("r1", 1))
	pubOf(b).Publish(comment("r1", 1))
	if got := gatheredValue(t, reg, "roomengine_push_messages_total", ""); got != 2 {
		t.Fatalf("published = %v, want 2", got)
	}
}

// A client that saw seq N of a topic and reconnects with since=N to a restarted server (a
// new gateway: the history was in memory) gets every frame of the topic's new life. With
// seqs restarting at 1 it would skip the new life's first N frames without noticing.
func TestSinceFromAPreviousServerReplaysTheNewHistory(t *testing.T) {
	before, srvBefore := startGateway(t, Options{SeqOrigin: clockOrigin})
	c := dial(t, srvBefore, "topic=r1")
	waitSubscribers(t, before, "r1", 1)
	for i := range 3 {
		pubOf(before).Publish(comment("r1", i))
	}
	seen := readSeqs(t, c, 3)

	after, srvAfter := startGateway(t, Options{SeqOrigin: clockOrigin})
	for i := range 2 {
		pubOf(after).Publish(comment("r1", 10+i))
	}
	again := dial(t, srvAfter, fmt.Sprintf("topic=r1&since=%d", seen[2]))
	replayed := readSeqs(t, again, 2)
	if replayed[0] <= seen[2] || replayed[1] != replayed[0]+1 {
		t.Fatalf("seqs before the restart %v, replayed after it %v: want the new life above the old", seen, replayed)
	}
}

// A client that was away when the room's topic was deleted (a room that expired, say) and
// reconnects with since gets what it missed, the type 8 included, then close 1000 — not
// silence on a fresh, empty topic. Without since it is told at once. After the grace the
// name is a new, empty topic again.
func TestReconnectAfterTopicDeletion(t *testing.T) {
	g, srv := startGateway(t, Options{DeletedTopicGrace: 300 * time.Millisecond})
	c := dial(t, srv, "topic=r1")
	waitSubscribers(t, g, "r1", 1)
	pubOf(g).Publish(comment("r1", 1))
	if got := readSeqs(t, c, 1); got[0] != 1 {
		t.Fatalf("first frame %v", got)
	}
	c.CloseNow() // the client drops off
	waitSubscribers(t, g, "r1", 0)
	pubOf(g).Publish(comment("r1", 2))
	pubOf(g).Publish(newPush("r1", "r1", 5, 8, `{"roomId":"r1"}`)) // the room ended
	pubOf(g).DeleteTopic("r1")

	expectClosed := func(c *websocket.Conn) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Fatalf("after the replay: %v, want close 1000", err)
		}
	}
	again := dial(t, srv, "topic=r1&since=1")
	if got := readSeqs(t, again, 2); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("replay after the deletion: %v, want [2 3]", got)
	}
	expectClosed(again)
	expectClosed(dial(t, srv, "topic=r1"))

	waitUntil(t, "the grace to pass", func() bool {
		_, deleted := g.topics.deleted("r1", 0, tagSet{}, false)
		return !deleted
	})
	fresh := dial(t, srv, "topic=r1&since=1")
	waitSubscribers(t, g, "r1", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, b, err := fresh.Read(ctx); err == nil || websocket.CloseStatus(err) != -1 {
		t.Fatalf("after the grace: %s %v, want an open, silent connection", b, err)
	}
}
