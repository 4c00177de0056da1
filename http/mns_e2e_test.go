package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"

	"roomengine/actors"
	"roomengine/aliyun"
	"roomengine/aliyun/mnstest"
	"roomengine/config"
	apihttp "roomengine/http"
	"roomengine/http/gateway"
	"roomengine/persistence/embedded"
	"roomengine/push"
)

// End to end over the mns push backend: the real stack (embedded store, actors, router,
// gateway) publishing through aliyun.MNSPublisher and aliyun.MNSClient to the verifying
// fake MNS, with the real clock.

const (
	e2eKeyID  = "AKID-e2e"
	e2eSecret = "e2e-Secret-9d2f71"
)

type mnsStackOpts struct {
	dbPath           string // the store file; reused across a restart
	topicDeleteDelay time.Duration
	retryWindow      time.Duration // 0: 60s
	logs             *syncBuffer
}

type mnsStack struct {
	*server
	reg  *prometheus.Registry
	pub  *aliyun.MNSPublisher
	stop func()
}

// subscriptionEndpoint is the configured default (ali.mnsTopic.subscriptionEndpoint).
var subscriptionEndpoint = config.Default().Ali.MNSTopic.SubscriptionEndpoint

func startMNSStack(t *testing.T, fake *mnstest.Server, o mnsStackOpts) *mnsStack {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if o.logs != nil {
		log = slog.New(slog.NewTextHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.retryWindow <= 0 {
		o.retryWindow = time.Minute
	}
	store, err := embedded.Open(o.dbPath, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	client, err := aliyun.NewMNSClient(aliyun.MNSConfig{
		Endpoint: fake.URL, AccessKeyID: e2eKeyID, AccessKeySecret: e2eSecret, Version: aliyun.DefaultMNSVersion,
		Timeout: 5 * time.Second, BreakerOpenTimeout: 200 * time.Millisecond, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	pub := aliyun.NewMNSPublisher(client, aliyun.MNSPublisherOptions{
		SubscriptionEndpoint: subscriptionEndpoint, RetryWindow: o.retryWindow,
		InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: log, Registerer: reg,
	})
	feed := push.NewMemory(push.MemoryOptions{})
	gw := gateway.New(gateway.Options{Feed: feed, Logger: log, Registerer: reg})
	urls := &aliyun.URLBuilder{AppName: "DemoApp", RtmpHost: "push.example", PlayHost: "play.example",
		TemplateName: "_mix", TopicBase: fake.URL}
	eng, err := actors.NewEngine(actors.EngineConfig{
		Room:  actors.RoomConfig{NoPublishTimeout: time.Hour, TopicDeleteDelay: o.topicDeleteDelay},
		Store: store, Publisher: actors.Publishers{feed, pub}, URLs: urls, Logger: log, AskTimeout: 5 * time.Second,
		Mixer: &aliyun.Simulator{Domain: "play.example", App: "DemoApp", Notify: func(string) {}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := apihttp.NewHandler(apihttp.Options{
		Engine: eng, Gateway: gw, Ready: store.Ping, URLs: urls, Logger: log, Registerer: reg, Gatherer: reg,
		MNSInfo: apihttp.MNSInfo{AccessKeyID: e2eKeyID, AccessKeySecret: e2eSecret, OwnerID: "1234", Region: "cn-test"},
	})
	ts := httptest.NewServer(h)
	apiCheck.Watch(ts.URL)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ts.Close()
			_ = gw.Shutdown(context.Background())
			eng.Shutdown()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := pub.Close(ctx); err != nil {
				t.Errorf("MNS publisher not flushed: %v", err)
			}
			_ = store.Close()
		})
	}
	t.Cleanup(stop)
	return &mnsStack{server: &server{URL: ts.URL, Addr: ts.Listener.Addr().String(), engine: eng}, reg: reg, pub: pub, stop: stop}
}

// waitFor polls cond every 5ms until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mnsBody is a published MessageBody decoded: the push {"data", "type", "time"}.
type mnsBody struct {
	Data json.RawMessage `json:"data"`
	Type int             `json:"type"`
	Time int64           `json:"time"`
}

func decodeBody(t *testing.T, m mnstest.Message) mnsBody {
	t.Helper()
	var b mnsBody
	if err := json.Unmarshal([]byte(m.Body), &b); err != nil {
		t.Fatalf("MessageBody is not the push JSON: %q", m.Body)
	}
	return b
}

// checkMessage checks one published message exactly: its tag, importance and body, the
// body being dataJSON wrapped as {"data":..,"type":..,"time":..} with a time between from
// and to.
func checkMessage(t *testing.T, m mnstest.Message, tag string, importance, typ int, dataJSON string, from, to time.Time) {
	t.Helper()
	b := decodeBody(t, m)
	assert.GreaterOrEqual(t, b.Time, from.UnixMilli(), "type %d: time", typ)
	assert.LessOrEqual(t, b.Time, to.UnixMilli(), "type %d: time", typ)
	// Byte for byte: key order and spelling are what old clients parse.
	assert.Equal(t, fmt.Sprintf(`{"data":%s,"type":%d,"time":%d}`, dataJSON, typ, b.Time), m.Body)
	assert.Equal(t, tag, m.Tag, "type %d: tag", typ)
	assert.True(t, m.HasImportance, "type %d: ImportanceLevel set", typ)
	assert.Equal(t, importance, m.Importance, "type %d: importance", typ)
}

func TestMNSEndToEnd(t *testing.T) {
	fake := mnstest.New(t, e2eKeyID, e2eSecret)
	logs := &syncBuffer{}
	const delay = 300 * time.Millisecond
	st := startMNSStack(t, fake, mnsStackOpts{dbPath: filepath.Join(t.TempDir(), "e2e.db"), topicDeleteDelay: delay, logs: logs})

	mustOK(t, st.post(t, "/login", "name", "alice"), nil)
	mustOK(t, st.post(t, "/login", "name", "bob"), nil)
	var room roomObject
	mustOK(t, st.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	if room.MNS["topicLocation"] != fake.URL+"/topics/"+R {
		t.Errorf("topicLocation %q", room.MNS["topicLocation"])
	}

	// create → the topic and its subscription (named like the topic, endpoint from config).
	waitFor(t, 5*time.Second, "topic and subscription created", func() bool { return len(fake.Subscriptions(R)) == 1 })
	wantSub := mnstest.Subscription{Name: R, Endpoint: subscriptionEndpoint, NotifyStrategy: "BACKOFF_RETRY", NotifyContentFormat: "SIMPLIFIED"}
	if subscriptionEndpoint == "" || fake.Subscriptions(R)[0] != wantSub {
		t.Fatalf("subscription %+v, want %+v", fake.Subscriptions(R), wantSub)
	}
	gwSub := st.subscribe(t, "topic="+R)

	// comment / like / invite → PublishMessage with the exact body, tag and importance.
	mustOK(t, st.post(t, "/live/play", "roomId", R, "uid", "2"), nil)
	before := time.Now()
	mustOK(t, st.post(t, "/live/comment", "uid", 2, "roomId", R, "comment", `say "hi" & 'bye' 你好`), nil)
	mustOK(t, st.post(t, "/live/like", "uid", 2, "roomId", R), nil)
	mustOK(t, st.post(t, "/videocall/invite", "inviterUid", 1, "inviteeUid", 2, "liveRoomId", R, "inviterType", 2, "type", "side_by_side"), nil)
	after := time.Now()
	waitFor(t, 5*time.Second, "three messages published", func() bool { return len(fake.Messages(R)) == 3 })
	msgs := fake.Messages(R)
	checkMessage(t, msgs[0], R, 8, 6, `{"uid":"2","name":"bob","comment":"say \"hi\" & 'bye' 你好"}`, before, after)
	checkMessage(t, msgs[1], R, 9, 7, `{"uid":"2","name":"bob"}`, before, after)
	checkMessage(t, msgs[2], "2", 4, 1, `{"inviterUid":"1","inviterName":"alice","inviterType":2,"type":"side_by_side"}`, before, after)
	// The gateway got the same pushes through the fan-out.
	for i, f := range gwSub.frames(3) {
		if raw, _ := json.Marshal(f.Message); f.Message.Type != decodeBody(t, msgs[i]).Type || f.Message.Time != decodeBody(t, msgs[i]).Time {
			t.Fatalf("gateway frame %d: %s, MNS %s", i, raw, msgs[i].Body)
		}
	}

	// leave → type 8 published at once, the topic deleted only after the delay.
	t0 := time.Now()
	mustOK(t, st.post(t, "/live/leave", "roomId", R), nil)
	waitFor(t, 5*time.Second, "type 8 published", func() bool { return len(fake.Messages(R)) == 4 })
	checkMessage(t, fake.Messages(R)[3], R, 5, 8, `{"roomId":"`+R+`"}`, t0, time.Now())
	assertTopicUntil(t, fake, R, t0.Add(delay), delay/3)
	waitFor(t, 5*time.Second, "topic deleted after the delay", func() bool { return !fake.HasTopic(R) })
	if len(fake.Rejections()) != 0 {
		t.Fatalf("the fake refused requests: %+v", fake.Rejections())
	}
	if strings.Contains(logs.String(), e2eSecret) {
		t.Fatal("the MNS secret is in the log")
	}
	if !strings.Contains(logs.String(), e2eKeyID) {
		t.Fatal("expected MNS debug lines with the AccessKeyId in the log")
	}
}

// assertTopicUntil sleeps until margin before deadline and checks that topic still
// exists. The check only counts if it completed before the deadline (a slow machine makes
// it inconclusive, never wrong).
func assertTopicUntil(t *testing.T, fake *mnstest.Server, topic string, deadline time.Time, margin time.Duration) {
	t.Helper()
	time.Sleep(time.Until(deadline.Add(-margin)))
	exists := fake.HasTopic(topic)
	if time.Now().Before(deadline) {
		if !exists {
			t.Fatalf("topic %s deleted before its deadline (%v left)", topic, time.Until(deadline))
		}
		return
	}
	t.Logf("topic check at %v after the deadline: inconclusive", time.Since(deadline))
}

// The topic-delete deadline is durable: an engine stopped before it and a new engine on the
// same store delete the topic at the original deadline, not one delay after the restart.
func TestMNSTopicDeletedAtOriginalDeadlineAcrossRestart(t *testing.T) {
	fake := mnstest.New(t, e2eKeyID, e2eSecret)
	const delay = 3 * time.Second
	db := filepath.Join(t.TempDir(), "restart.db")
	st := startMNSStack(t, fake, mnsStackOpts{dbPath: db, topicDeleteDelay: delay})
	mustOK(t, st.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, st.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	waitFor(t, 5*time.Second, "topic created", func() bool { return fake.HasTopic(R) })

	t0 := time.Now()
	mustOK(t, st.post(t, "/live/leave", "roomId", R), nil)
	deadline := t0.Add(delay)
	waitFor(t, 5*time.Second, "type 8 published", func() bool { return len(fake.Messages(R)) == 1 })
	st.stop()
	// Down for half the delay, so "one delay after the restart" is far from the original
	// deadline.
	assertTopicUntil(t, fake, R, deadline, delay/2)
	st2 := startMNSStack(t, fake, mnsStackOpts{dbPath: db, topicDeleteDelay: delay})
	restarted := time.Now()
	assertTopicUntil(t, fake, R, deadline, delay/6)
	waitFor(t, 10*time.Second, "topic deleted", func() bool { return !fake.HasTopic(R) })
	deletedBy := time.Now()
	if late := deletedBy.Sub(deadline); late > delay*2/5 {
		t.Fatalf("topic deleted %v after the original deadline (restart was %v before it): the deadline was not kept",
			late, deadline.Sub(restarted))
	}
	// The ended room stays ended: no second type 8, and it is gone from the list.
	if n := len(fake.Messages(R)); n != 1 {
		t.Fatalf("%d messages after the restart, want the one type 8", n)
	}
	var rooms []roomObject
	mustOK(t, st2.get(t, "/live/list?roomId=-1"), &rooms)
	if len(rooms) != 0 {
		t.Fatalf("rooms after the restart: %+v", rooms)
	}
}

func commentsOf(t *testing.T, msgs []mnstest.Message) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		b := decodeBody(t, m)
		if b.Type != 6 {
			continue
		}
		var d struct{ Comment string }
		_ = json.Unmarshal(b.Data, &d)
		out = append(out, d.Comment)
	}
	return out
}

// A slow, then down MNS does not hold up the API; once it is back, every message arrives,
// in order.
func TestMNSOutageKeepsTheAPIAnsweringAndOrder(t *testing.T) {
	fake := mnstest.New(t, e2eKeyID, e2eSecret)
	st := startMNSStack(t, fake, mnsStackOpts{dbPath: filepath.Join(t.TempDir(), "outage.db"), topicDeleteDelay: time.Minute})
	mustOK(t, st.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, st.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	waitFor(t, 5*time.Second, "topic created", func() bool { return fake.HasTopic(R) })

	var want []string
	comment := func(text string) {
		t.Helper()
		start := time.Now()
		mustOK(t, st.post(t, "/live/comment", "uid", 1, "roomId", R, "comment", text), nil)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("comment %q took %v while MNS is unavailable", text, took)
		}
		want = append(want, text)
	}
	fake.SetDelay(3 * time.Second) // slow: every answer takes 3 s
	for i := range 100 {
		comment(fmt.Sprintf("slow-%03d", i))
	}
	fake.SetDown(mnstest.Down503) // then down
	fake.SetDelay(0)
	for i := range 100 {
		comment(fmt.Sprintf("down-%03d", i))
	}
	if n := len(fake.Messages(R)); n >= len(want) {
		t.Fatalf("%d messages delivered while MNS was slow and down", n)
	}
	fake.SetDown(mnstest.Up)
	waitFor(t, 30*time.Second, "every comment published after MNS is back", func() bool { return len(fake.Messages(R)) >= len(want) })
	if got := commentsOf(t, fake.Messages(R)); !slices.Equal(got, want) {
		t.Fatalf("published out of order or duplicated:\n got %v\nwant %v", got, want)
	}
	if d := metricValue(t, st.reg, "roomengine_mns_dropped_total", map[string]string{"op": "publish", "reason": aliyun.MNSDropRetryWindow}); d != 0 {
		t.Fatalf("%v publishes dropped within the retry window", d)
	}
}

// Past the retry window, messages are dropped and counted; MNS back, new ones flow again.
func TestMNSDropsBeyondTheRetryWindowAreCounted(t *testing.T) {
	fake := mnstest.New(t, e2eKeyID, e2eSecret)
	const window = 500 * time.Millisecond
	st := startMNSStack(t, fake, mnsStackOpts{dbPath: filepath.Join(t.TempDir(), "drops.db"),
		topicDeleteDelay: time.Minute, retryWindow: window})
	mustOK(t, st.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, st.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	waitFor(t, 5*time.Second, "topic created", func() bool { return fake.HasTopic(R) })

	dropped := func() float64 {
		return metricValue(t, st.reg, "roomengine_mns_dropped_total", map[string]string{"op": "publish", "reason": aliyun.MNSDropRetryWindow})
	}
	fake.SetDown(mnstest.Down503)
	t0 := time.Now()
	for i := range 5 {
		start := time.Now()
		mustOK(t, st.post(t, "/live/comment", "uid", 1, "roomId", R, "comment", fmt.Sprintf("lost-%d", i)), nil)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("comment took %v while MNS is down", took)
		}
	}
	waitFor(t, 10*time.Second, "five publishes dropped after the retry window", func() bool { return dropped() == 5 })
	if took := time.Since(t0); took < window {
		t.Fatalf("dropped after %v, before the retry window of %v", took, window)
	}
	fake.SetDown(mnstest.Up)
	mustOK(t, st.post(t, "/live/comment", "uid", 1, "roomId", R, "comment", "after"), nil)
	waitFor(t, 10*time.Second, "the next comment published", func() bool { return len(fake.Messages(R)) == 1 })
	if got := commentsOf(t, fake.Messages(R)); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("published: %v", got)
	}
	if d := dropped(); d != 5 {
		t.Fatalf("dropped %v, want 5", d)
	}
	// The counter is exported on /metrics.
	res, err := httpGet(st.URL + "/metrics")
	if err != nil || !strings.Contains(res, `roomengine_mns_dropped_total{op="publish",reason="retry_window"} 5`) {
		t.Fatalf("/metrics: %v\n%s", err, res)
	}
}

func httpGet(url string) (string, error) {
	res, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), err
}
