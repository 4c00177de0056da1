package aliyun_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roomengine/actors"
	"roomengine/aliyun"
	"roomengine/aliyun/cdntest"
)

const (
	testKeyID  = "LTAI-test-key-id"
	testSecret = "S3cr3t-do-NOT-leak-4f9a2c"
	testHost   = "play.example.com"
	testApp    = "DemoApp"
)

// recorder is a RoundTripper that keeps every URL sent, to check the wire format and to
// know every signature that was ever computed.
type recorder struct {
	mu   sync.Mutex
	urls []*url.URL
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	u := *req.URL
	r.urls = append(r.urls, &u)
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) sent() []*url.URL {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.urls)
}

func newClient(t *testing.T, fake *cdntest.Server, mod func(*aliyun.CDNConfig)) (*aliyun.CDNClient, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg := aliyun.CDNConfig{
		URL: fake.URL, AccessKeyID: testKeyID, AccessKeySecret: testSecret,
		AppName: testApp, PlayHost: testHost,
		HTTPClient: &http.Client{Transport: rec},
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := aliyun.NewCDNClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func newFake(t *testing.T) *cdntest.Server {
	t.Helper()
	fake := cdntest.New(testKeyID, testSecret)
	t.Cleanup(fake.Close)
	return fake
}

// mixErr asserts err is an *actors.Error with the code and returns it.
func mixErr(t *testing.T, err error, code int) *actors.Error {
	t.Helper()
	var ae *actors.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *actors.Error", err, err)
	}
	if ae.Code != code {
		t.Fatalf("error code %d (%q), want %d", ae.Code, ae.Message, code)
	}
	return ae
}

var ctx = context.Background()

func TestCDNStartStopRoundTrip(t *testing.T) {
	fake := newFake(t)
	c, rec := newClient(t, fake, nil)

	got, err := c.StartMix(ctx, actors.MixRequest{MainStream: "a1b2c3d4e5", MixStream: "f6a7b8c9d0"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a1b2c3d4e5_f6a7b8c9d0"}; !slices.Equal(got.Streams, want) {
		t.Fatalf("streams %v, want %v", got.Streams, want)
	}
	// Names with bytes that the two encoders must agree on (space, *, ~, +, /, UTF-8).
	odd := actors.MixRequest{MainStream: "a b*c~d+e/f", MixStream: "混流 1", Template: "side_by_side"}
	if _, err := c.StartMix(ctx, odd); err != nil {
		t.Fatalf("start with odd names: %v", err)
	}
	if err := c.StopMix(ctx, actors.MixRequest{MainStream: "a1b2c3d4e5", MixStream: "f6a7b8c9d0", Template: "x"}); err != nil {
		t.Fatal(err)
	}

	calls := fake.Calls()
	if len(calls) != 3 {
		t.Fatalf("fake recorded %d calls, want 3", len(calls))
	}
	start, start2, stop := calls[0], calls[1], calls[2]
	if start.Action != cdntest.ActionStart || start.Main != "a1b2c3d4e5" || start.Mix != "f6a7b8c9d0" ||
		start.Template != "picture_in_picture" || start.MixType != "channel" {
		t.Errorf("start call %+v", start)
	}
	if start2.Main != odd.MainStream || start2.Mix != odd.MixStream || start2.Template != "side_by_side" {
		t.Errorf("second start call %+v", start2)
	}
	if stop.Action != cdntest.ActionStop || stop.Main != "a1b2c3d4e5" || stop.Mix != "f6a7b8c9d0" {
		t.Errorf("stop call %+v", stop)
	}
	if stop.Params.Has("MixTemplate") || stop.Params.Has("MixType") {
		t.Errorf("stop sent MixTemplate/MixType: %v", stop.Params)
	}
	for name, want := range map[string]string{
		"MainDomainName": testHost, "MixDomainName": testHost, "MainAppName": testApp, "MixAppName": testApp,
		"Format": "JSON", "Version": "2014-11-11", "AccessKeyId": testKeyID,
		"SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
	} {
		for _, call := range calls {
			if got := call.Params.Get(name); got != want {
				t.Errorf("%s %s = %q, want %q", call.Action, name, got, want)
			}
		}
	}
	ts, err := time.Parse("2006-01-02T15:04:05Z", start.Params.Get("Timestamp"))
	if err != nil || time.Since(ts).Abs() > time.Minute {
		t.Errorf("Timestamp %q: %v", start.Params.Get("Timestamp"), err)
	}

	// What was signed is what was sent: the raw query is the canonical form + Signature.
	for _, u := range rec.sent() {
		params := map[string]string{}
		for k, v := range u.Query() {
			params[k] = v[0]
		}
		want := aliyun.CanonicalQuery(params) + "&Signature=" + aliyun.PercentEncode(params["Signature"])
		if u.RawQuery != want {
			t.Errorf("sent query\n %s\nwant canonical\n %s", u.RawQuery, want)
		}
		if u.Path != "/" {
			t.Errorf("path %q, want /", u.Path)
		}
	}
}

func TestCDNTrailingSlashAndStreams(t *testing.T) {
	fake := newFake(t)
	fake.SetStreams(func(main, mix string) []string { return []string{main + "_mix", mix + "_mix"} })
	c, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) { cfg.URL += "/" })
	got, err := c.StartMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"m_mix", "x_mix"}; !slices.Equal(got.Streams, want) {
		t.Fatalf("streams %v, want %v", got.Streams, want)
	}
}

func TestCDNWrongSecret(t *testing.T) {
	fake := newFake(t)
	c, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) { cfg.AccessKeySecret = "not-the-secret" })
	_, err := c.StartMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"})
	ae := mixErr(t, err, actors.CodeMixFailed)
	if !strings.Contains(ae.Message, "SignatureDoesNotMatch") {
		t.Fatalf("message %q does not name SignatureDoesNotMatch", ae.Message)
	}
	if len(fake.Calls()) != 0 {
		t.Fatal("fake accepted a badly signed call")
	}
}

func TestCDNWrongAccessKeyID(t *testing.T) {
	fake := newFake(t)
	c, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) { cfg.AccessKeyID = "someone-else" })
	err := c.StopMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"})
	ae := mixErr(t, err, actors.CodeMixFailed)
	if !strings.Contains(ae.Message, "InvalidAccessKeyId") {
		t.Fatalf("message %q", ae.Message)
	}
}

func TestCDNNonceReuseRejected(t *testing.T) {
	fake := newFake(t)
	c, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) { cfg.Nonce = func() string { return "always-the-same" } })
	req := actors.MixRequest{MainStream: "m", MixStream: "x"}
	if err := c.StopMix(ctx, req); err != nil {
		t.Fatal(err)
	}
	ae := mixErr(t, c.StopMix(ctx, req), actors.CodeMixFailed)
	if !strings.Contains(ae.Message, "SignatureNonceUsed") {
		t.Fatalf("message %q", ae.Message)
	}
}

func TestCDNTimestamp(t *testing.T) {
	fake := newFake(t)
	// Any time zone is sent as UTC.
	shanghai := time.FixedZone("CST", 8*3600)
	c, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) { cfg.Now = func() time.Time { return time.Now().In(shanghai) } })
	if err := c.StopMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"}); err != nil {
		t.Fatalf("local-zone clock: %v", err)
	}
	if ts := fake.Calls()[0].Params.Get("Timestamp"); !strings.HasSuffix(ts, "Z") {
		t.Fatalf("Timestamp %q not UTC", ts)
	}

	stale, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) {
		cfg.Now = func() time.Time { return time.Now().Add(-20 * time.Minute) }
	})
	ae := mixErr(t, stale.StopMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"}), actors.CodeMixFailed)
	if !strings.Contains(ae.Message, "InvalidTimeStamp.Expired") {
		t.Fatalf("message %q", ae.Message)
	}
}

func TestCDNErrorCodeMapping(t *testing.T) {
	for _, tc := range []struct {
		status    int
		code, msg string
		want      int
	}{
		{400, "InvalidArgument", "The specified MixTemplate is invalid.", actors.CodeMixInvalidArg},
		{404, "NoSuchStream", "The main stream does not exist.", actors.CodeMixNoSuchStream},
		{500, "InternalError", "The request processing has failed due to some unknown error.", actors.CodeMixInternal},
		{400, "Throttling", "Request was denied due to request throttling.", actors.CodeMixFailed},
		{503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.", actors.CodeMixFailed},
		{403, "Forbidden.RAM", "User not authorized to operate on the specified resource.", actors.CodeMixFailed},
	} {
		t.Run(tc.code, func(t *testing.T) {
			fake := newFake(t)
			fake.FailWith(tc.status, tc.code, tc.msg)
			c, _ := newClient(t, fake, nil)
			_, err := c.StartMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"})
			ae := mixErr(t, err, tc.want)
			if !strings.Contains(ae.Message, tc.code) || !strings.Contains(ae.Message, tc.msg) {
				t.Errorf("message %q lacks Aliyun's Code/Message", ae.Message)
			}
			ae = mixErr(t, c.StopMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"}), tc.want)
			if !strings.Contains(ae.Message, "StopMixStreamsService") {
				t.Errorf("stop message %q does not name the action", ae.Message)
			}
		})
	}
}

func TestCDNLongMessageShortened(t *testing.T) {
	fake := newFake(t)
	fake.FailWith(400, "InvalidArgument", strings.Repeat("x", 5000))
	c, _ := newClient(t, fake, nil)
	ae := mixErr(t, c.StopMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"}), actors.CodeMixInvalidArg)
	if len(ae.Message) > 400 {
		t.Fatalf("message is %d bytes long", len(ae.Message))
	}
}

func TestCDNNonceUnique(t *testing.T) {
	fake := newFake(t)
	c, _ := newClient(t, fake, nil)
	const n, workers = 1000, 16
	var wg sync.WaitGroup
	var failed atomic.Int32
	jobs := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if err := c.StopMix(ctx, actors.MixRequest{MainStream: fmt.Sprint("m", i), MixStream: "x"}); err != nil {
					if failed.Add(1) == 1 {
						t.Errorf("request %d: %v", i, err)
					}
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	calls := fake.Calls()
	if len(calls) != n {
		t.Fatalf("fake accepted %d of %d calls", len(calls), n)
	}
	seen := map[string]bool{}
	for _, call := range calls {
		nonce := call.Params.Get("SignatureNonce")
		if nonce == "" || seen[nonce] {
			t.Fatalf("nonce %q empty or repeated", nonce)
		}
		seen[nonce] = true
	}
}

func TestCDNTimeout(t *testing.T) {
	fake := newFake(t)
	fake.SetDelay(10 * time.Second)
	c, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) { cfg.Timeout = 100 * time.Millisecond })
	start := time.Now()
	_, err := c.StartMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"})
	elapsed := time.Since(start)
	ae := mixErr(t, err, actors.CodeUnavailable)
	if !strings.Contains(ae.Message, "timeout") {
		t.Errorf("message %q does not say timeout", ae.Message)
	}
	if elapsed > time.Second {
		t.Errorf("timed-out call took %v, want it bounded by the 100ms timeout", elapsed)
	}
}

func TestCDNConnectionRefused(t *testing.T) {
	fake := newFake(t)
	c, _ := newClient(t, fake, nil)
	fake.Refuse()
	start := time.Now()
	err := c.StopMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"})
	ae := mixErr(t, err, actors.CodeUnavailable)
	if !strings.Contains(ae.Message, "connection refused") {
		t.Errorf("message %q does not say connection refused", ae.Message)
	}
	if time.Since(start) > time.Second {
		t.Errorf("refused call took %v", time.Since(start))
	}
}

func TestCDNCallerCancelled(t *testing.T) {
	fake := newFake(t)
	fake.SetDelay(10 * time.Second)
	c, _ := newClient(t, fake, nil)
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	for range 6 {
		mixErr(t, c.StopMix(cctx, actors.MixRequest{MainStream: "m", MixStream: "x"}), actors.CodeUnavailable)
	}
	// A caller giving up is no CDN outage.
	if s := c.BreakerState(); s != aliyun.BreakerClosed {
		t.Fatalf("breaker %s after cancelled calls, want closed", s)
	}
}

// stateLog records breaker state changes.
type stateLog struct {
	mu      sync.Mutex
	changes []string
}

func (l *stateLog) record(name, from, to string) {
	l.mu.Lock()
	l.changes = append(l.changes, name+":"+from+"->"+to)
	l.mu.Unlock()
}

func (l *stateLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.changes)
}

func waitState(t *testing.T, c *aliyun.CDNClient, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.BreakerState() != want {
		if time.Now().After(deadline) {
			t.Fatalf("breaker still %s, want %s", c.BreakerState(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertFastFail checks that calls fail with 503 quickly and never reach the server.
func assertFastFail(t *testing.T, fake *cdntest.Server, c *aliyun.CDNClient, n int) {
	t.Helper()
	before := fake.Requests()
	for i := range n {
		start := time.Now()
		_, err := c.StartMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"})
		elapsed := time.Since(start)
		ae := mixErr(t, err, actors.CodeUnavailable)
		if ae.Message != "CDN mixing unavailable: circuit breaker open" {
			t.Errorf("call %d: message %q", i, ae.Message)
		}
		if elapsed >= 100*time.Millisecond {
			t.Errorf("call %d with the breaker open took %v, want < 100ms", i, elapsed)
		}
	}
	if got := fake.Requests(); got != before {
		t.Fatalf("%d requests reached the server while the breaker was open", got-before)
	}
}

func TestCDNBreakerOpensHalfOpensCloses(t *testing.T) {
	fake := newFake(t)
	log := &stateLog{}
	c, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) {
		cfg.Timeout = 100 * time.Millisecond
		cfg.BreakerOpenTimeout = 200 * time.Millisecond
		cfg.OnBreakerStateChange = log.record
	})
	req := actors.MixRequest{MainStream: "m", MixStream: "x"}

	// 3 x 5xx and 2 timeouts: 5 consecutive failures.
	fake.FailWith(500, "InternalError", "boom")
	for i := range 3 {
		_, err := c.StartMix(ctx, req)
		mixErr(t, err, actors.CodeMixInternal)
		if s := c.BreakerState(); s != aliyun.BreakerClosed {
			t.Fatalf("breaker %s after %d failures", s, i+1)
		}
	}
	fake.Succeed()
	fake.SetDelay(10 * time.Second)
	mixErr(t, c.StopMix(ctx, req), actors.CodeUnavailable)
	if s := c.BreakerState(); s != aliyun.BreakerClosed {
		t.Fatalf("breaker %s after 4 failures", s)
	}
	mixErr(t, c.StopMix(ctx, req), actors.CodeUnavailable)
	if s := c.BreakerState(); s != aliyun.BreakerOpen {
		t.Fatalf("breaker %s after 5 failures, want open", s)
	}

	assertFastFail(t, fake, c, 20)

	fake.Succeed()
	waitState(t, c, aliyun.BreakerHalfOpen)
	if _, err := c.StartMix(ctx, req); err != nil {
		t.Fatalf("probe in half-open: %v", err)
	}
	if s := c.BreakerState(); s != aliyun.BreakerClosed {
		t.Fatalf("breaker %s after a successful probe, want closed", s)
	}
	want := []string{"cdn:closed->open", "cdn:open->half-open", "cdn:half-open->closed"}
	if got := log.get(); !slices.Equal(got, want) {
		t.Fatalf("state changes %v, want %v", got, want)
	}
}

func TestCDNBreakerFailedProbeReopens(t *testing.T) {
	fake := newFake(t)
	c, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) { cfg.BreakerOpenTimeout = 200 * time.Millisecond })
	req := actors.MixRequest{MainStream: "m", MixStream: "x"}
	fake.FailWith(502, "BadGateway", "upstream")
	for range 5 {
		mixErr(t, c.StopMix(ctx, req), actors.CodeMixFailed)
	}
	waitState(t, c, aliyun.BreakerHalfOpen)
	mixErr(t, c.StopMix(ctx, req), actors.CodeMixFailed) // the probe fails
	if s := c.BreakerState(); s != aliyun.BreakerOpen {
		t.Fatalf("breaker %s after a failed probe, want open", s)
	}
	assertFastFail(t, fake, c, 3)
}

func TestCDNBreakerOneProbe(t *testing.T) {
	fake := newFake(t)
	c, _ := newClient(t, fake, func(cfg *aliyun.CDNConfig) { cfg.BreakerOpenTimeout = 200 * time.Millisecond })
	req := actors.MixRequest{MainStream: "m", MixStream: "x"}
	fake.FailWith(500, "InternalError", "boom")
	for range 5 {
		mixErr(t, c.StopMix(ctx, req), actors.CodeMixInternal)
	}
	waitState(t, c, aliyun.BreakerHalfOpen)
	fake.Succeed()
	fake.SetDelay(300 * time.Millisecond)
	before := fake.Requests()
	probe := make(chan error, 1)
	go func() { probe <- c.StopMix(ctx, req) }()
	for fake.Requests() == before {
		time.Sleep(5 * time.Millisecond)
	}
	// The probe is in flight: everyone else is refused at once.
	assertFastFail(t, fake, c, 3)
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if s := c.BreakerState(); s != aliyun.BreakerClosed {
		t.Fatalf("breaker %s after the probe, want closed", s)
	}
}

func TestCDNClientErrorsDoNotTrip(t *testing.T) {
	fake := newFake(t)
	c, _ := newClient(t, fake, nil)
	fake.FailWith(400, "InvalidArgument", "bad")
	for range 10 {
		_, err := c.StartMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"})
		mixErr(t, err, actors.CodeMixInvalidArg)
	}
	if s := c.BreakerState(); s != aliyun.BreakerClosed {
		t.Fatalf("breaker %s after 4xx answers, want closed", s)
	}
	// 4 failures, a 4xx (the CDN answered), 4 failures: never 5 consecutive.
	fake.FailNext(4, 500, "InternalError", "boom")
	for range 4 {
		mixErr(t, c.StopMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"}), actors.CodeMixInternal)
	}
	fake.FailNext(1, 404, "NoSuchStream", "gone")
	mixErr(t, c.StopMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"}), actors.CodeMixNoSuchStream)
	fake.FailNext(4, 500, "InternalError", "boom")
	for range 4 {
		mixErr(t, c.StopMix(ctx, actors.MixRequest{MainStream: "m", MixStream: "x"}), actors.CodeMixInternal)
	}
	if s := c.BreakerState(); s != aliyun.BreakerClosed {
		t.Fatalf("breaker %s, want closed", s)
	}
}

func TestCDNSecretNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	var bufMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &bufMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fake := newFake(t)
	c, rec := newClient(t, fake, func(cfg *aliyun.CDNConfig) {
		cfg.Logger = logger
		cfg.Timeout = 100 * time.Millisecond
		cfg.BreakerOpenTimeout = time.Minute
	})
	req := actors.MixRequest{MainStream: "m", MixStream: "x"}
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	_, err := c.StartMix(ctx, req)
	note(err)
	note(c.StopMix(ctx, req))
	fake.FailWith(400, "InvalidArgument", "bad")
	_, err = c.StartMix(ctx, req)
	note(err)
	fake.FailWith(500, "InternalError", "boom")
	note(c.StopMix(ctx, req))
	fake.Succeed()
	fake.SetDelay(10 * time.Second)
	note(c.StopMix(ctx, req))
	fake.Refuse()
	for range 5 { // refused until the breaker opens, then refused by the breaker
		note(c.StopMix(ctx, req))
	}
	// A client with the wrong secret, logging to the same buffer.
	bad, badRec := newClient(t, newFake(t), func(cfg *aliyun.CDNConfig) {
		cfg.Logger = logger
		cfg.AccessKeySecret = testSecret + "-wrong"
	})
	_, err = bad.StartMix(ctx, req)
	note(err)

	if c.BreakerState() != aliyun.BreakerOpen {
		t.Fatalf("breaker %s: the scenario should end with it open", c.BreakerState())
	}
	if len(errs) < 8 {
		t.Fatalf("only %d calls failed", len(errs))
	}
	var sigs []string
	for _, u := range append(rec.sent(), badRec.sent()...) {
		sig := u.Query().Get("Signature")
		if sig == "" {
			t.Fatalf("sent request without Signature: %s", u.Redacted())
		}
		sigs = append(sigs, sig, aliyun.PercentEncode(sig))
	}
	bufMu.Lock()
	logs := buf.String()
	bufMu.Unlock()
	if !strings.Contains(logs, testKeyID) || !strings.Contains(logs, "level=DEBUG") {
		t.Fatalf("debug request logs missing:\n%s", logs)
	}
	texts := map[string]string{"logs": logs}
	for i, err := range errs {
		texts[fmt.Sprint("error ", i)] = err.Error()
	}
	for what, text := range texts {
		if strings.Contains(text, testSecret) {
			t.Errorf("%s contain the secret:\n%s", what, text)
		}
		for _, sig := range sigs {
			if strings.Contains(text, sig) {
				t.Errorf("%s contain the signature %s:\n%s", what, sig, text)
			}
		}
		if strings.Contains(text, "Signature=") {
			t.Errorf("%s contain a Signature parameter:\n%s", what, text)
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNewCDNClientValidates(t *testing.T) {
	ok := aliyun.CDNConfig{URL: "https://cdn.aliyuncs.com", AccessKeyID: "id", AccessKeySecret: "s",
		AppName: "a", PlayHost: "p"}
	if _, err := aliyun.NewCDNClient(ok); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*aliyun.CDNConfig){
		"no URL":      func(c *aliyun.CDNConfig) { c.URL = "" },
		"bad scheme":  func(c *aliyun.CDNConfig) { c.URL = "ftp://cdn.aliyuncs.com" },
		"query":       func(c *aliyun.CDNConfig) { c.URL = "https://cdn.aliyuncs.com/?a=b" },
		"no key id":   func(c *aliyun.CDNConfig) { c.AccessKeyID = "" },
		"no secret":   func(c *aliyun.CDNConfig) { c.AccessKeySecret = "" },
		"no app":      func(c *aliyun.CDNConfig) { c.AppName = "" },
		"no playHost": func(c *aliyun.CDNConfig) { c.PlayHost = "" },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := aliyun.NewCDNClient(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cfg := ok
	cfg.AccessKeySecret = testSecret
	cfg.URL = "::bad"
	if _, err := aliyun.NewCDNClient(cfg); err == nil || strings.Contains(err.Error(), testSecret) {
		t.Fatalf("bad URL: %v", err)
	}
}

func TestBreaker(t *testing.T) {
	errDown := errors.New("down")
	errClient := errors.New("client error")
	var changes stateLog
	b := aliyun.NewBreaker("mns", 100*time.Millisecond, func(err error) bool { return errors.Is(err, errDown) },
		aliyun.WithStateChange(changes.record))
	if b.Name() != "mns" || b.State() != aliyun.BreakerClosed {
		t.Fatalf("new breaker %s %s", b.Name(), b.State())
	}
	for range 4 {
		if err := b.Execute(func() error { return errDown }); !errors.Is(err, errDown) {
			t.Fatalf("Execute returned %v, want fn's error", err)
		}
	}
	// A non-failure error counts as a success and resets the run; cancellation is neutral.
	if err := b.Execute(func() error { return errClient }); err != errClient {
		t.Fatal(err)
	}
	for range 4 {
		_ = b.Execute(func() error { return errDown })
	}
	_ = b.Execute(func() error { return fmt.Errorf("gave up: %w", context.Canceled) })
	if b.State() != aliyun.BreakerClosed {
		t.Fatalf("state %s, want closed", b.State())
	}
	_ = b.Execute(func() error { return errDown })
	if b.State() != aliyun.BreakerOpen {
		t.Fatalf("state %s after 5 consecutive failures, want open", b.State())
	}
	called := false
	err := b.Execute(func() error { called = true; return nil })
	if called || !errors.Is(err, aliyun.ErrBreakerOpen) || !strings.Contains(err.Error(), "mns") {
		t.Fatalf("open breaker: called=%v err=%v", called, err)
	}
	time.Sleep(150 * time.Millisecond)
	if b.State() != aliyun.BreakerHalfOpen {
		t.Fatalf("state %s after the open timeout, want half-open", b.State())
	}
	if err := b.Execute(func() error { return nil }); err != nil || b.State() != aliyun.BreakerClosed {
		t.Fatalf("probe: %v, state %s", err, b.State())
	}
	want := []string{"mns:closed->open", "mns:open->half-open", "mns:half-open->closed"}
	if got := changes.get(); !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
}
