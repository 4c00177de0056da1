package aliyun_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"roomengine/actors"
	"roomengine/aliyun"
	"roomengine/aliyun/livetest"
)

func newLive(t *testing.T, mod func(*aliyun.LiveConfig)) (*aliyun.LiveClient, *livetest.Server) {
	t.Helper()
	fake := livetest.New(testKeyID, testSecret)
	t.Cleanup(fake.Close)
	cfg := aliyun.LiveConfig{URL: fake.URL, AccessKeyID: testKeyID, AccessKeySecret: testSecret,
		AppName: testApp, PlayHost: testHost, CallbackURL: "https://app.example/ali/mix/callback"}
	if mod != nil {
		mod(&cfg)
	}
	c, err := aliyun.NewLiveClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, fake
}

func TestLiveStartStop(t *testing.T) {
	for name, tc := range map[string]struct {
		layout        string
		host, partner [4]float64
	}{
		"side_by_side: two halves":                     {layout: "side_by_side", host: [4]float64{0, 0, 0.5, 1}, partner: [4]float64{0.5, 0, 0.5, 1}},
		"picture_in_picture: host full, guest corner":  {layout: "picture_in_picture", host: [4]float64{0, 0, 1, 1}, partner: [4]float64{0.72, 0.7, 0.25, 0.25}},
		"no layout: picture_in_picture is the default": {layout: "", host: [4]float64{0, 0, 1, 1}, partner: [4]float64{0.72, 0.7, 0.25, 0.25}},
	} {
		t.Run(name, func(t *testing.T) {
			c, fake := newLive(t, nil)
			got, err := c.StartMix(ctx, actors.MixRequest{MainStream: "roomA", MixStream: "roomB", Template: tc.layout})
			if err != nil {
				t.Fatal(err)
			}
			creates := fake.Calls(livetest.ActionCreate)
			if len(creates) != 1 || got.ID != creates[0].MixStreamID || len(got.Streams) != 1 || got.Streams[0] != "roomA_mix.flv" {
				t.Fatalf("started %+v, creates %+v", got, creates)
			}
			cr := creates[0]
			if cr.Params.Get("LayoutId") != "USERDEFINED" || cr.Params.Get("DomainName") != testHost ||
				cr.Params.Get("RegionId") != "cn-shanghai" || cr.Output.AppName != testApp ||
				cr.Output.StreamName != "roomA_mix" || cr.CallbackURL != "https://app.example/ali/mix/callback" {
				t.Fatalf("create params %v output %+v callback %q", cr.Params, cr.Output, cr.CallbackURL)
			}
			for i, want := range []struct {
				stream string
				box    [4]float64
			}{{"roomA", tc.host}, {"roomB", tc.partner}} {
				in := cr.Inputs[i]
				lc := in.LayoutConfig
				box := [4]float64{lc.FillPositionNormalized[0], lc.FillPositionNormalized[1], lc.FillSizeNormalized[0], lc.FillSizeNormalized[1]}
				if in.LayoutChildID != i+1 || in.ResourceValue != "rtmp://"+testHost+"/"+testApp+"/"+want.stream || box != want.box ||
					lc.FillMode != "fit" || lc.PositionRefer != "topLeft" {
					t.Fatalf("input %d: %+v %+v", i, in, lc)
				}
			}
			if err := c.StopMix(ctx, actors.MixRequest{MainStream: "roomA", MixStream: "roomB", MixID: got.ID}); err != nil {
				t.Fatal(err)
			}
			if d := fake.Calls(livetest.ActionDelete); len(d) != 1 || d[0].MixStreamID != got.ID || len(fake.Mixes()) != 0 {
				t.Fatalf("deletes %+v, mixes %+v", d, fake.Mixes())
			}
		})
	}
}

// An unsure Start has no id: Stop finds the mix by its output stream; Start with Adopt
// reuses it instead of creating a second one.
func TestLiveStopAndAdoptWithoutID(t *testing.T) {
	c, fake := newLive(t, func(cfg *aliyun.LiveConfig) { cfg.Timeout = 200 * time.Millisecond; cfg.CallbackURL = "" })
	fake.SetDelay(time.Hour) // Aliyun creates the mix, the answer never comes
	_, err := c.StartMix(ctx, actors.MixRequest{MainStream: "roomA", MixStream: "roomB"})
	mixErr(t, err, actors.CodeUnavailable)
	fake.Succeed()
	if len(fake.Mixes()) != 1 {
		t.Fatalf("mixes %+v", fake.Mixes())
	}
	// Another room's mix is never touched.
	other, err := c.StartMix(ctx, actors.MixRequest{MainStream: "roomC", MixStream: "roomD"})
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := c.StartMix(ctx, actors.MixRequest{MainStream: "roomA", MixStream: "roomB", Adopt: true})
	if err != nil || adopted.ID != fake.Calls(livetest.ActionCreate)[0].MixStreamID || len(fake.Calls(livetest.ActionCreate)) != 2 {
		t.Fatalf("adopted %+v %v, creates %d", adopted, err, len(fake.Calls(livetest.ActionCreate)))
	}
	if err := c.StopMix(ctx, actors.MixRequest{MainStream: "roomA", MixStream: "roomB"}); err != nil {
		t.Fatal(err)
	}
	if m := fake.Mixes(); len(m) != 1 || m[0].ID != other.ID {
		t.Fatalf("left running: %+v", m)
	}
	// Nothing to find is a success; so is deleting a mix Aliyun no longer knows.
	if err := c.StopMix(ctx, actors.MixRequest{MainStream: "roomA", MixStream: "roomB"}); err != nil {
		t.Fatal(err)
	}
	if err := c.StopMix(ctx, actors.MixRequest{MainStream: "roomA", MixStream: "roomB", MixID: "gone"}); err != nil {
		t.Fatal(err)
	}
	for _, cr := range fake.Calls(livetest.ActionCreate) {
		if cr.Params.Has("CallbackConfig") {
			t.Fatal("CallbackConfig sent without a callback URL")
		}
	}
}

func TestLiveErrorMapping(t *testing.T) {
	for name, tc := range map[string]struct {
		status int
		code   string
		want   int
	}{
		"InvalidArgument": {400, "InvalidArgument", actors.CodeMixInvalidArg},
		"NoSuchStream":    {404, "NoSuchStream", actors.CodeMixNoSuchStream},
		"InternalError":   {500, "InternalError", actors.CodeMixInternal},
		"other code":      {403, "Forbidden.RAM", actors.CodeMixFailed},
		"throttled":       {400, "Throttling.User", actors.CodeMixFailed},
	} {
		t.Run(name, func(t *testing.T) {
			c, fake := newLive(t, nil)
			fake.FailWith("", tc.status, tc.code, "it went wrong")
			_, err := c.StartMix(ctx, actors.MixRequest{MainStream: "a", MixStream: "b"})
			ae := mixErr(t, err, tc.want)
			if !strings.Contains(ae.Message, tc.code) || !strings.Contains(ae.Message, "CreateMixStream") || len(fake.Mixes()) != 0 {
				t.Fatalf("message %q, mixes %v", ae.Message, fake.Mixes())
			}
		})
	}
}

func TestLiveSignatureChecked(t *testing.T) {
	c, fake := newLive(t, func(cfg *aliyun.LiveConfig) { cfg.AccessKeySecret = "wrong" })
	_, err := c.StartMix(ctx, actors.MixRequest{MainStream: "a", MixStream: "b"})
	if ae := mixErr(t, err, actors.CodeMixFailed); !strings.Contains(ae.Message, "SignatureDoesNotMatch") || fake.Requests() != 1 {
		t.Fatalf("%v", ae)
	}
}

// Outages open the breaker after 5 failures; while open nothing is sent (fast 503); after
// the open timeout one probe closes it again.
func TestLiveBreaker(t *testing.T) {
	var mu sync.Mutex
	var states []string
	c, fake := newLive(t, func(cfg *aliyun.LiveConfig) {
		cfg.BreakerOpenTimeout = 300 * time.Millisecond
		cfg.OnBreakerStateChange = func(name, from, to string) {
			mu.Lock()
			states = append(states, name+":"+to)
			mu.Unlock()
		}
	})
	fake.FailWith("", 503, "ServiceUnavailable", "down")
	for range 5 {
		_, err := c.StartMix(ctx, actors.MixRequest{MainStream: "a", MixStream: "b"})
		mixErr(t, err, actors.CodeMixFailed)
	}
	before := fake.Requests()
	start := time.Now()
	err := c.StopMix(ctx, actors.MixRequest{MainStream: "a", MixStream: "b", MixID: "x"})
	if mixErr(t, err, actors.CodeUnavailable); fake.Requests() != before || time.Since(start) > 100*time.Millisecond ||
		c.BreakerState() != aliyun.BreakerOpen {
		t.Fatalf("breaker %s, requests %d→%d", c.BreakerState(), before, fake.Requests())
	}
	fake.Succeed()
	deadline := time.Now().Add(5 * time.Second)
	for c.BreakerState() != aliyun.BreakerHalfOpen && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.StartMix(ctx, actors.MixRequest{MainStream: "a", MixStream: "b"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(states, ",") != "cdn:open,cdn:half-open,cdn:closed" {
		t.Fatalf("states %v", states)
	}
}

func TestLiveSecretNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var sigs []string
	c, fake := newLive(t, func(cfg *aliyun.LiveConfig) {
		cfg.Logger = logger
		cfg.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			auth := r.Header.Get("Authorization")
			sigs = append(sigs, auth[strings.LastIndex(auth, "=")+1:])
			mu.Unlock()
			return http.DefaultTransport.RoundTrip(r)
		})}
	})
	fake.FailNext("", 1, 400, "InvalidArgument", "bad")
	_, _ = c.StartMix(ctx, actors.MixRequest{MainStream: "a", MixStream: "b"})
	started, _ := c.StartMix(ctx, actors.MixRequest{MainStream: "a", MixStream: "b"})
	_ = c.StopMix(ctx, actors.MixRequest{MainStream: "a", MixID: started.ID})
	mu.Lock()
	defer mu.Unlock()
	logs := buf.String()
	if !strings.Contains(logs, testKeyID) || len(sigs) != 3 {
		t.Fatalf("expected debug logs with the key id and 3 requests: %d\n%s", len(sigs), logs)
	}
	for _, secret := range append(sigs, testSecret) {
		if strings.Contains(logs, secret) {
			t.Fatalf("log contains a secret or signature %q", secret)
		}
	}
}

func TestNewLiveClientValidates(t *testing.T) {
	for name, cfg := range map[string]aliyun.LiveConfig{
		"bad URL":    {URL: "ftp://x", AccessKeyID: "a", AccessKeySecret: "b", AppName: "c", PlayHost: "d"},
		"no key id":  {AccessKeySecret: "b", AppName: "c", PlayHost: "d"},
		"no secret":  {AccessKeyID: "a", AppName: "c", PlayHost: "d"},
		"no app":     {AccessKeyID: "a", AccessKeySecret: "b", PlayHost: "d"},
		"no domain":  {AccessKeyID: "a", AccessKeySecret: "b", AppName: "c"},
		"with query": {URL: "https://live.aliyuncs.com/?a=b", AccessKeyID: "a", AccessKeySecret: "b", AppName: "c", PlayHost: "d"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := aliyun.NewLiveClient(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
