package aliyun

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"roomengine/aliyun/mnstest"
)

const (
	testKeyID  = "testKeyId"
	testSecret = "testSecretDoNotLeak"
)

func newTestMNS(t *testing.T, cfg MNSConfig) (*MNSClient, *mnstest.Server) {
	t.Helper()
	fake := mnstest.New(t, testKeyID, testSecret)
	if cfg.Endpoint == "" {
		cfg.Endpoint = fake.URL
	}
	if cfg.AccessKeyID == "" {
		cfg.AccessKeyID = testKeyID
	}
	if cfg.AccessKeySecret == "" {
		cfg.AccessKeySecret = testSecret
	}
	c, err := NewMNSClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, fake
}

// The published MNS vector (from Aliyun's MNS documentation), through the string-to-sign builder and through the
// client's request signing.
func TestMNSStringToSignPublishedVector(t *testing.T) {
	const (
		date = "Thu, 09 Jul 2015 03:01:34 GMT"
		want = "GET\n\n\nThu, 09 Jul 2015 03:01:34 GMT\nx-mns-version:2015-06-06\n/MyQueue"
	)
	h := http.Header{}
	h.Set("x-mns-version", "2015-06-06")
	h.Set("Date", date)
	h.Set("X-Other", "not signed")
	if got := MNSStringToSign("GET", "", "", date, h, "/MyQueue"); got != want {
		t.Fatalf("MNSStringToSign = %q, want %q", got, want)
	}

	when, err := time.Parse(http.TimeFormat, date)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewMNSClient(MNSConfig{
		Endpoint:        "http://123.mns.cn-hangzhou.aliyuncs.com",
		AccessKeyID:     "TestAccessKeyId",
		AccessKeySecret: "TestAccessSecret",
		Now:             func() time.Time { return when },
	})
	if err != nil {
		t.Fatal(err)
	}
	req, err := c.newRequest(context.Background(), "GET", "/MyQueue", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Date"); got != date {
		t.Errorf("Date = %q, want %q", got, date)
	}
	if got := req.Header.Get("x-mns-version"); got != "2015-06-06" {
		t.Errorf("x-mns-version = %q", got)
	}
	if got, want := req.Header.Get("Authorization"), "MNS TestAccessKeyId:uwx3yeWoILzgmvesW0BQSgfM7b8="; got != want {
		t.Errorf("Authorization = %q, want %q", got, want)
	}
	if got, want := req.URL.String(), "http://123.mns.cn-hangzhou.aliyuncs.com/MyQueue"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}

func TestCanonicalMNSHeadersSortedLowercase(t *testing.T) {
	h := http.Header{}
	h.Set("X-MNS-Version", "2015-06-06")
	h.Set("x-mns-auth-only", " 1 ")
	h.Set("Content-Type", "text/xml")
	if got, want := CanonicalMNSHeaders(h), "x-mns-auth-only:1\nx-mns-version:2015-06-06\n"; got != want {
		t.Fatalf("CanonicalMNSHeaders = %q, want %q", got, want)
	}
	if h.Get("x-mns-auth-only") != " 1 " {
		t.Fatal("CanonicalMNSHeaders modified the header")
	}
}

// The request bodies are exactly the documented XML.
func TestMNSRequestXML(t *testing.T) {
	x, _ := mnsXML(mnsTopicReq{MaximumMessageSize: 65536})
	if want := `<?xml version="1.0" encoding="UTF-8"?><Topic xmlns="http://mns.aliyuncs.com/doc/v1/"><MaximumMessageSize>65536</MaximumMessageSize></Topic>`; string(x) != want {
		t.Errorf("topic XML\n got %s\nwant %s", x, want)
	}
	x, _ = mnsXML(mnsSubscriptionReq{Endpoint: "WebSocket", NotifyStrategy: "BACKOFF_RETRY", NotifyContentFormat: "SIMPLIFIED"})
	if want := `<?xml version="1.0" encoding="UTF-8"?><Subscription xmlns="http://mns.aliyuncs.com/doc/v1/"><Endpoint>WebSocket</Endpoint><NotifyStrategy>BACKOFF_RETRY</NotifyStrategy><NotifyContentFormat>SIMPLIFIED</NotifyContentFormat></Subscription>`; string(x) != want {
		t.Errorf("subscription XML\n got %s\nwant %s", x, want)
	}
	m := mnsMessageReq{MessageBody: `{"a":"<b>&"}`, MessageTag: "room1"}
	m.MessageAttributes.WebSocket.ImportanceLevel = 8
	x, _ = mnsXML(m)
	if want := `<?xml version="1.0" encoding="UTF-8"?><Message xmlns="http://mns.aliyuncs.com/doc/v1/"><MessageBody>{&#34;a&#34;:&#34;&lt;b&gt;&amp;&#34;}</MessageBody><MessageTag>room1</MessageTag><MessageAttributes><WebSocket><ImportanceLevel>8</ImportanceLevel></WebSocket></MessageAttributes></Message>`; string(x) != want {
		t.Errorf("message XML\n got %s\nwant %s", x, want)
	}
}

func TestMNSClientRoundTrip(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, fake := newTestMNS(t, MNSConfig{Logger: logger})
	ctx := context.Background()

	if err := c.CreateTopic(ctx, "a1b2c3d4e5"); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	if got := fake.TopicMaxMessageSize("a1b2c3d4e5"); got != 65536 {
		t.Errorf("MaximumMessageSize = %d", got)
	}
	// Idempotent: 204 for the same attributes.
	if err := c.CreateTopic(ctx, "a1b2c3d4e5"); err != nil {
		t.Fatalf("CreateTopic again: %v", err)
	}
	if err := c.Subscribe(ctx, "a1b2c3d4e5", "a1b2c3d4e5", "WebSocket"); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := c.Subscribe(ctx, "a1b2c3d4e5", "a1b2c3d4e5", "WebSocket"); err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
	// 409 SubscriptionAlreadyExist (other attributes) is success too.
	if err := c.Subscribe(ctx, "a1b2c3d4e5", "a1b2c3d4e5", "OtherEndpoint"); err != nil {
		t.Fatalf("Subscribe with other endpoint: %v", err)
	}
	subs := fake.Subscriptions("a1b2c3d4e5")
	if len(subs) != 1 || subs[0] != (mnstest.Subscription{Name: "a1b2c3d4e5", Endpoint: "WebSocket",
		NotifyStrategy: "BACKOFF_RETRY", NotifyContentFormat: "SIMPLIFIED"}) {
		t.Errorf("subscriptions = %+v", subs)
	}

	bodies := []string{
		`{"data":{"uid":"7","name":"小明","comment":"<b>好看</b> & \"棒\" ]]> 'x'\n\ttab"},"type":6,"time":1700000000000}`,
		`{"data":{"roomId":"a1b2c3d4e5"},"type":8,"time":1700000000001}`,
		``,
	}
	for i, b := range bodies {
		id, err := c.PublishMessage(ctx, "a1b2c3d4e5", []byte(b), "a1b2c3d4e5", 5+i)
		if err != nil {
			t.Fatalf("PublishMessage %d: %v", i, err)
		}
		if id == "" {
			t.Errorf("PublishMessage %d: empty MessageId", i)
		}
	}
	got := fake.Messages("a1b2c3d4e5")
	if len(got) != len(bodies) {
		t.Fatalf("server has %d messages, want %d", len(got), len(bodies))
	}
	for i, m := range got {
		if m.Body != bodies[i] || m.Tag != "a1b2c3d4e5" || m.Importance != 5+i || !m.HasImportance {
			t.Errorf("message %d on the server = %+v, want body %q importance %d", i, m, bodies[i], 5+i)
		}
	}

	if err := c.DeleteTopic(ctx, "a1b2c3d4e5"); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	if fake.HasTopic("a1b2c3d4e5") {
		t.Error("topic still exists after DeleteTopic")
	}
	// Deleting again: 404 TopicNotExist is success.
	if err := c.DeleteTopic(ctx, "a1b2c3d4e5"); err != nil {
		t.Fatalf("DeleteTopic again: %v", err)
	}
	if rej := fake.Rejections(); len(rej) != 0 {
		t.Errorf("the fake refused requests: %+v", rej)
	}

	out := logs.String()
	if strings.Contains(out, testSecret) {
		t.Error("the secret appears in the logs")
	}
	if !strings.Contains(out, "accessKeyId="+testKeyID) {
		t.Errorf("requests are not logged with the AccessKeyId:\n%s", out)
	}
}

func TestMNSClientTopicNotExistTyped(t *testing.T) {
	c, _ := newTestMNS(t, MNSConfig{})
	for i := 0; i < 7; i++ {
		_, err := c.PublishMessage(context.Background(), "nosuchtopic", []byte("{}"), "t", 5)
		var me *MNSError
		if !errors.As(err, &me) || me.Status != 404 || me.Code != "TopicNotExist" || me.RequestID == "" {
			t.Fatalf("publish to unknown topic: %v (%#v)", err, me)
		}
		if !IsMNSCode(err, "TopicNotExist") {
			t.Fatal("IsMNSCode(TopicNotExist) = false")
		}
	}
	// A 4xx is the caller's problem, not an outage.
	if s := c.BreakerState(); s != BreakerClosed {
		t.Fatalf("breaker %s after 7 TopicNotExist answers", s)
	}
	if err := c.Subscribe(context.Background(), "nosuchtopic", "s", "WebSocket"); !IsMNSCode(err, "TopicNotExist") {
		t.Fatalf("subscribe to unknown topic: %v", err)
	}
}

func TestMNSClientWrongSecret(t *testing.T) {
	c, fake := newTestMNS(t, MNSConfig{AccessKeySecret: "wrong-secret"})
	err := c.CreateTopic(context.Background(), "abc")
	var me *MNSError
	if !errors.As(err, &me) || me.Status != 403 || me.Code != "SignatureDoesNotMatch" {
		t.Fatalf("CreateTopic with a wrong secret: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Fatal("the secret appears in the error")
	}
	if fake.HasTopic("abc") {
		t.Fatal("topic created by an unauthenticated request")
	}
}

func TestMNSClientStaleDate(t *testing.T) {
	c, _ := newTestMNS(t, MNSConfig{Now: func() time.Time { return time.Now().Add(-20 * time.Minute) }})
	if err := c.CreateTopic(context.Background(), "abc"); !IsMNSCode(err, "TimeExpired") {
		t.Fatalf("CreateTopic with a 20 min old Date: %v", err)
	}
	c2, _ := newTestMNS(t, MNSConfig{Now: func() time.Time { return time.Now().Add(-10 * time.Minute) }})
	if err := c2.CreateTopic(context.Background(), "abc"); err != nil {
		t.Fatalf("CreateTopic with a 10 min old Date: %v", err)
	}
}

func TestMNSClientServerError(t *testing.T) {
	c, fake := newTestMNS(t, MNSConfig{})
	fake.FailNext(1, 503, "ServiceUnavailable")
	err := c.CreateTopic(context.Background(), "abc")
	var me *MNSError
	if !errors.As(err, &me) || me.Status != 503 || me.Code != "ServiceUnavailable" {
		t.Fatalf("CreateTopic against a 503: %v", err)
	}
	fake.FailNext(1, 500, "InternalError")
	if err := c.DeleteTopic(context.Background(), "abc"); !IsMNSCode(err, "InternalError") {
		t.Fatalf("DeleteTopic against a 500: %v", err)
	}
	// Connection closed without an answer.
	fake.SetDown(mnstest.DownClose)
	if err := c.CreateTopic(context.Background(), "abc"); err == nil {
		t.Fatal("CreateTopic against a closed connection succeeded")
	}
}

func TestMNSClientNonXMLError(t *testing.T) {
	me := parseMNSError(502, []byte("<html>bad gateway</html>"))
	if me.Status != 502 || me.Code != "" || me.Message != "Bad Gateway" {
		t.Fatalf("parseMNSError = %#v", me)
	}
	me = parseMNSError(404, []byte(`<?xml version="1.0"?><Error xmlns="http://mns.aliyuncs.com/doc/v1/"><Code>TopicNotExist</Code><Message>The topic you provided is not exist.</Message><RequestId>5F3B</RequestId><HostId>http://1.mns.cn-hangzhou.aliyuncs.com</HostId></Error>`))
	want := MNSError{Status: 404, Code: "TopicNotExist", Message: "The topic you provided is not exist.",
		RequestID: "5F3B", HostID: "http://1.mns.cn-hangzhou.aliyuncs.com"}
	if *me != want {
		t.Fatalf("parseMNSError = %#v", me)
	}
}

func TestMNSClientTimeout(t *testing.T) {
	c, fake := newTestMNS(t, MNSConfig{Timeout: 100 * time.Millisecond})
	fake.SetDelay(3 * time.Second)
	start := time.Now()
	err := c.CreateTopic(context.Background(), "abc")
	if err == nil {
		t.Fatal("CreateTopic succeeded past the timeout")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout error does not wrap context.DeadlineExceeded: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("CreateTopic took %s with a 100ms timeout", d)
	}
}

func TestMNSClientCallerCancelIsNotAFailure(t *testing.T) {
	c, fake := newTestMNS(t, MNSConfig{Timeout: 5 * time.Second})
	fake.SetDelay(time.Second)
	for i := 0; i < 6; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		if err := c.CreateTopic(ctx, "abc"); err == nil {
			t.Fatal("CreateTopic succeeded though its context ended")
		}
		cancel()
	}
	if s := c.BreakerState(); s != BreakerClosed {
		t.Fatalf("breaker %s after callers gave up", s)
	}
}

func TestMNSClientInvalidNames(t *testing.T) {
	c, fake := newTestMNS(t, MNSConfig{})
	for _, name := range []string{"", "-abc", "a/b", "../topics", "a b", strings.Repeat("a", 257)} {
		if err := c.CreateTopic(context.Background(), name); !errors.Is(err, ErrMNSInvalidRequest) {
			t.Errorf("CreateTopic(%q) = %v", name, err)
		}
	}
	if _, err := c.PublishMessage(context.Background(), "abc", make([]byte, 65537), "", 5); !errors.Is(err, ErrMNSInvalidRequest) {
		t.Errorf("publishing 65537 bytes: %v", err)
	}
	if n := fake.Requests(); n != 0 {
		t.Fatalf("%d requests sent for invalid calls", n)
	}
}

func TestNewMNSClientChecksConfig(t *testing.T) {
	for _, cfg := range []MNSConfig{
		{Endpoint: "http://x", AccessKeyID: "id"},
		{Endpoint: "http://x", AccessKeySecret: "s"},
		{Endpoint: "x.mns.aliyuncs.com", AccessKeyID: "id", AccessKeySecret: "s"},
		{Endpoint: "http://x/prefix", AccessKeyID: "id", AccessKeySecret: "s"},
		{Endpoint: "ftp://x", AccessKeyID: "id", AccessKeySecret: "s"},
	} {
		if _, err := NewMNSClient(cfg); err == nil {
			t.Errorf("NewMNSClient(%+v) accepted", cfg)
		} else if strings.Contains(err.Error(), "s\"") && cfg.AccessKeySecret != "" {
			t.Errorf("error mentions the secret: %v", err)
		}
	}
	c, err := NewMNSClient(MNSConfig{Endpoint: "http://1.mns.cn-hangzhou.aliyuncs.com/", AccessKeyID: "id", AccessKeySecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint() != "http://1.mns.cn-hangzhou.aliyuncs.com" {
		t.Fatalf("Endpoint = %q", c.Endpoint())
	}
}

func TestMNSClientBreaker(t *testing.T) {
	var mu sync.Mutex
	var changes []string
	c, fake := newTestMNS(t, MNSConfig{
		BreakerOpenTimeout: 200 * time.Millisecond,
		OnBreakerStateChange: func(from, to string) {
			mu.Lock()
			changes = append(changes, from+">"+to)
			mu.Unlock()
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx := context.Background()
	fake.FailNext(100, 503, "ServiceUnavailable")
	for i := 0; i < 5; i++ {
		if err := c.CreateTopic(ctx, "abc"); err == nil || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	if n := fake.Requests(); n != 5 {
		t.Fatalf("%d requests, want 5", n)
	}
	// Open: every call fails fast without reaching the server.
	openedAt := time.Now()
	for i := 0; i < 10; i++ {
		start := time.Now()
		_, err := c.PublishMessage(ctx, "abc", []byte("{}"), "t", 5)
		if !errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("open breaker, call %d: %v", i, err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("open breaker took %s to refuse", d)
		}
	}
	if n := fake.Requests(); n != 5 {
		t.Fatalf("open breaker let requests through: %d requests, want 5", n)
	}
	if s := c.BreakerState(); s != BreakerOpen {
		t.Fatalf("state %s, want open", s)
	}
	if time.Since(openedAt) > 150*time.Millisecond {
		t.Skip("machine too slow to check the open period")
	}

	// Half-open after 200ms: one probe goes through; it fails (the fake still answers 503),
	// so the breaker opens again.
	time.Sleep(250 * time.Millisecond)
	if err := c.CreateTopic(ctx, "abc"); err == nil || errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("half-open probe: %v", err)
	}
	if n := fake.Requests(); n != 6 {
		t.Fatalf("%d requests after the probe, want 6", n)
	}
	if err := c.CreateTopic(ctx, "abc"); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("after a failed probe: %v", err)
	}

	// Next probe succeeds and closes the breaker.
	fake.FailNext(0, 0, "")
	time.Sleep(250 * time.Millisecond)
	if err := c.CreateTopic(ctx, "abc"); err != nil {
		t.Fatalf("successful probe: %v", err)
	}
	if s := c.BreakerState(); s != BreakerClosed {
		t.Fatalf("state %s after a successful probe, want closed", s)
	}
	if _, err := c.PublishMessage(ctx, "abc", []byte("{}"), "t", 5); err != nil {
		t.Fatalf("publish after recovery: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed"}
	if strings.Join(changes, " ") != strings.Join(want, " ") {
		t.Errorf("state changes %v, want %v", changes, want)
	}
}

func TestMNSClientBreakerCountsTimeouts(t *testing.T) {
	c, fake := newTestMNS(t, MNSConfig{Timeout: 30 * time.Millisecond, BreakerOpenTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	fake.SetDelay(time.Second)
	for i := 0; i < 5; i++ {
		if err := c.DeleteTopic(context.Background(), "abc"); err == nil {
			t.Fatal("timeout not reported")
		}
	}
	if err := c.DeleteTopic(context.Background(), "abc"); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("after 5 timeouts: %v", err)
	}
}
