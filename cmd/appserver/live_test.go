package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"

	"roomengine/aliyun/livetest"
	"roomengine/config"
)

const (
	liveKeyID  = "LTAI-live-test"
	liveSecret = "live-secret-never-logged"
)

// liveEnv is the environment of an appserver on port mixing with mix: aliyun-live against
// fake (APPSERVER_PORT and APPSERVER_IP left to the caller).
func liveEnv(fake *livetest.Server, port int, dataDir string, extra ...string) []string {
	return append([]string{
		"APPSERVER_MIX=aliyun-live", "APPSERVER_ALI_ACCESSKEYID=" + liveKeyID, "APPSERVER_ALI_ACCESSKEYSECRET=" + liveSecret,
		"APPSERVER_ALI_URLS_LIVE_URL=" + fake.URL, "APPSERVER_DATADIR=" + dataDir,
		fmt.Sprintf("APPSERVER_HTTP_PUBLICURL=http://127.0.0.1:%d", port), "APPSERVER_LOG_LEVEL=error",
		"APPSERVER_PLAYHOST=play.example", "APPSERVER_APPNAME=DemoApp",
	}, extra...)
}

// startLiveApp runs the wired app in process (config → store → engine → HTTP) with mix:
// aliyun-live against fake; it stops with the test.
func startLiveApp(t *testing.T, fake *livetest.Server, extra ...string) *proc {
	t.Helper()
	port := freePort(t)
	env := append([]string{fmt.Sprint("APPSERVER_PORT=", port), "APPSERVER_IP=127.0.0.1"},
		liveEnv(fake, port, t.TempDir(), extra...)...)
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	p := &proc{base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	apiCheck.Watch(p.base)
	return p
}

// code posts a form and returns the envelope's code and data (any code).
func (p *proc) code(t *testing.T, path string, form url.Values) (int, json.RawMessage) {
	t.Helper()
	env := p.post(t, path, form)
	return env.Code, env.Data
}

// topicWatch collects the pushes of a topic from the /ws gateway.
type topicWatch struct {
	mu     sync.Mutex
	frames []pushFrame
}

type pushFrame struct {
	Type int
	Data map[string]any
}

func watchTopic(t *testing.T, base, topic string) *topicWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws?topic="+topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &topicWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			_ = apiCheck.Validator.CheckFrame(b) // a mismatch fails the run (TestMain)
			var f struct {
				Message struct {
					Type int
					Data map[string]any
				}
			}
			if json.Unmarshal(b, &f) == nil {
				w.mu.Lock()
				w.frames = append(w.frames, pushFrame{Type: f.Message.Type, Data: f.Message.Data})
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); conn.CloseNow(); <-done })
	return w
}

func (w *topicWatch) count(typ int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, f := range w.frames {
		if f.Type == typ {
			n++
		}
	}
	return n
}

func (w *topicWatch) last(typ int) map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.frames) - 1; i >= 0; i-- {
		if w.frames[i].Type == typ {
			return w.frames[i].Data
		}
	}
	return nil
}

// waitUntil polls cond until it holds (10 s at most).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 10*time.Second, what, cond)
}

// liveCall is one co-streaming session driven through the HTTP API.
type liveCall struct {
	t          *testing.T
	p          *proc
	hostHost   bool
	uA, uB     string
	roomA      string
	roomB      string
	wA, wB     *topicWatch
	accepted   bool
	closed     bool
	pubA, pubB bool
	readyIn    int // rooms that published while the call was open (or before the accept)
}

func newLiveCall(t *testing.T, p *proc, hostHost bool, n int) *liveCall {
	c := &liveCall{t: t, p: p, hostHost: hostHost}
	c.uA = field(t, p.call(t, "/login", url.Values{"name": {fmt.Sprint("host-", n)}}), "id")
	c.uB = field(t, p.call(t, "/login", url.Values{"name": {fmt.Sprint("guest-", n)}}), "id")
	c.roomA = field(t, p.call(t, "/live/create", url.Values{"uid": {c.uA}}), "roomId")
	c.wA = watchTopic(t, p.base, c.roomA)
	if hostHost {
		c.roomB = field(t, p.call(t, "/live/create", url.Values{"uid": {c.uB}}), "roomId")
		c.wB = watchTopic(t, p.base, c.roomB)
	}
	p.call(t, "/videocall/invite", url.Values{"inviterUid": {c.uA}, "inviteeUid": {c.uB}, "liveRoomId": {c.roomA},
		"inviterType": {"2"}, "type": {"side_by_side"}})
	return c
}

func (c *liveCall) inviteeType() string {
	if c.hostHost {
		return "2"
	}
	return "1"
}

func (c *liveCall) watches() []*topicWatch {
	if c.hostHost {
		return []*topicWatch{c.wA, c.wB}
	}
	return []*topicWatch{c.wA}
}

func (c *liveCall) accept() int {
	code, data := c.p.code(c.t, "/videocall/feedback", url.Values{"status": {"1"}, "inviterUid": {c.uA}, "inviteeUid": {c.uB},
		"inviterType": {"2"}, "inviteeType": {c.inviteeType()}, "type": {"side_by_side"}})
	if code == 200 {
		c.accepted = true
		c.roomB = field(c.t, data, "inviteeRoomId")
		c.readyIn = 0
		for _, pub := range []bool{c.pubA, c.pubB && c.hostHost} {
			if pub {
				c.readyIn++
			}
		}
	}
	return code
}

func (c *liveCall) publish(room string) {
	c.p.call(c.t, "/ali/stream/notify", url.Values{"action": {"publish"}, "id": {room}})
}

// do applies one event (twice with dup) and, once the call is ready to mix, waits for push
// 5, so every order ends in a defined state.
func (c *liveCall) do(ev string, dup bool) {
	t := c.t
	for i := range map[bool]int{false: 1, true: 2}[dup] {
		switch ev {
		case "accept":
			if code := c.accept(); code != 200 && !(i == 1 && code == 3020) {
				t.Fatalf("accept %d: code %d", i, code)
			}
		case "publishA":
			if !c.pubA && c.accepted && !c.closed {
				c.readyIn++
			}
			c.pubA = true
			c.publish(c.roomA)
		case "publishB":
			if !c.pubB && c.accepted && !c.closed {
				c.readyIn++
			}
			c.pubB = true
			c.publish(c.roomB)
		case "close":
			c.p.call(t, "/videocall/close", url.Values{"closeRoomId": {c.roomA}})
			c.closed = true
		}
	}
	if c.mixed() && !c.closed {
		for _, w := range c.watches() {
			waitUntil(t, "push 5", func() bool { return w.count(5) == 1 })
		}
	}
}

// mixed reports whether the call was ready to be mixed before it was closed.
func (c *liveCall) mixed() bool { return c.readyIn == 2 }

func (c *liveCall) outputs() []string {
	out := []string{c.roomA + "_mix"}
	if c.hostHost {
		out = append(out, c.roomB+"_mix")
	}
	return out
}

func callsFor(fake *livetest.Server, action string, outputs []string) []livetest.Call {
	var out []livetest.Call
	for _, call := range fake.Calls(action) {
		stream := call.Output.StreamName
		if action != livetest.ActionCreate {
			stream = call.Params.Get("StreamName")
		}
		if slices.Contains(outputs, stream) {
			out = append(out, call)
		}
	}
	return out
}

func mixesFor(fake *livetest.Server, outputs []string) int {
	n := 0
	for _, m := range fake.Mixes() {
		if slices.Contains(outputs, m.Output.StreamName) {
			n++
		}
	}
	return n
}

// orders are every order of the events in which the accept comes before the close (and, for
// a viewer, whose room exists only once accepted, the viewer's publish after the accept).
func orders(hostHost bool) [][]string {
	var out [][]string
	var perm func(prefix, rest []string)
	perm = func(prefix, rest []string) {
		if len(rest) == 0 {
			i := func(ev string) int { return slices.Index(prefix, ev) }
			if i("accept") < i("close") && (hostHost || i("accept") < i("publishB")) {
				out = append(out, slices.Clone(prefix))
			}
			return
		}
		for k := range rest {
			perm(append(prefix, rest[k]), append(slices.Clone(rest[:k]), rest[k+1:]...))
		}
	}
	perm(nil, []string{"publishA", "publishB", "accept", "close"})
	return out
}

// TestLiveCoStreamingFlow drives host–host and host–viewer calls through every order of
// publish / accept / close, once and with every event delivered twice, against the fake
// Live API: one CreateMixStream per host side with the layout's boxes, one DeleteMixStream
// per created mix with the id it answered, and pushes 4, 5, 14, 15, 17 as documented.
func TestLiveCoStreamingFlow(t *testing.T) {
	fake := livetest.New(liveKeyID, liveSecret)
	t.Cleanup(fake.Close)
	p := startLiveApp(t, fake)
	n := 0
	for _, hostHost := range []bool{true, false} {
		kind := map[bool]string{true: "host-host", false: "host-viewer"}[hostHost]
		for _, order := range orders(hostHost) {
			for _, dup := range []bool{false, true} {
				n++
				name := fmt.Sprintf("%s/%s/dup=%v", kind, strings.Join(order, ","), dup)
				t.Run(name, func(t *testing.T) {
					c := newLiveCall(t, p, hostHost, n)
					for _, ev := range order {
						c.do(ev, dup)
					}
					checkLiveCall(t, fake, c)
				})
			}
		}
	}
}

func checkLiveCall(t *testing.T, fake *livetest.Server, c *liveCall) {
	t.Helper()
	outputs := c.outputs()
	mixed := c.mixed()
	for _, w := range c.watches() {
		waitUntil(t, "push 4", func() bool { return w.count(4) == 1 })
		if mixed {
			waitUntil(t, "push 15", func() bool { return w.count(15) == 1 })
		}
	}
	waitUntil(t, "the mixes deleted", func() bool { return mixesFor(fake, outputs) == 0 })
	creates, deletes := callsFor(fake, livetest.ActionCreate, outputs), callsFor(fake, livetest.ActionDelete, outputs)
	if want := map[bool]int{true: len(outputs), false: 0}[mixed]; len(creates) != want || len(deletes) != want {
		t.Fatalf("%d creates, %d deletes, want %d each", len(creates), len(deletes), want)
	}
	for _, cr := range creates {
		main, partner := c.roomA, c.roomB
		if cr.Output.StreamName == c.roomB+"_mix" {
			main, partner = c.roomB, c.roomA
		}
		boxes := [][4]float64{{0, 0, 0.5, 1}, {0.5, 0, 0.5, 1}} // side_by_side
		for i, room := range []string{main, partner} {
			in := cr.Inputs[i]
			lc := in.LayoutConfig
			got := [4]float64{lc.FillPositionNormalized[0], lc.FillPositionNormalized[1], lc.FillSizeNormalized[0], lc.FillSizeNormalized[1]}
			if in.LayoutChildID != i+1 || in.ResourceValue != "rtmp://play.example/DemoApp/"+room || got != boxes[i] {
				t.Fatalf("create of %s: input %d = %+v %+v", main, i, in, lc)
			}
		}
		if cr.Params.Get("LayoutId") != "USERDEFINED" || cr.Output.AppName != "DemoApp" ||
			!strings.HasSuffix(cr.CallbackURL, "/ali/mix/callback") {
			t.Fatalf("create params %v", cr.Params)
		}
		deleted := 0
		for _, d := range deletes {
			if d.MixStreamID == cr.MixStreamID {
				deleted++
			}
		}
		if deleted != 1 {
			t.Fatalf("mix %s deleted %d times", cr.MixStreamID, deleted)
		}
	}
	want5 := map[bool]int{true: 1, false: 0}[mixed]
	for _, w := range c.watches() {
		if w.count(5) != want5 || w.count(15) != want5 || w.count(14) != 0 || w.count(4) != 1 || w.count(17) != c.readyIn {
			t.Fatalf("pushes 4:%d 5:%d 14:%d 15:%d 17:%d, want 1 %d 0 %d %d", w.count(4), w.count(5), w.count(14),
				w.count(15), w.count(17), want5, want5, c.readyIn)
		}
		if mixed {
			d := w.last(5)
			wantB := "[]"
			if c.hostHost {
				wantB = "[http://play.example/DemoApp/" + c.roomB + "_mix.flv]"
			}
			if fmt.Sprint(d["inviterMixPlayUrls"]) != "[http://play.example/DemoApp/"+c.roomA+"_mix.flv]" ||
				fmt.Sprint(d["inviteeMixPlayUrls"]) != wantB {
				t.Fatalf("push 5: %v", d)
			}
		}
	}
}

// TestLiveCoStreamingErrors: CDN errors, timeouts and an outage with mix: aliyun-live behave
// as with the old driver: push 14 with the mapped code, an unsure (timed out) Start is
// stopped on close (found by its output stream, as it has no id), the breaker opens after 5
// failures and then accepts answer 503 at once without calling Aliyun, and it recovers.
func TestLiveCoStreamingErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		inject     func(fake *livetest.Server)
		wantCode   float64
		wantStopIn bool // close deletes what the failed Start created
		unsure     bool // the Start failed without a definite refusal: close looks for its mix
	}{
		"refused (InvalidArgument) → 3400, nothing to stop": {
			inject:   func(f *livetest.Server) { f.FailWith(livetest.ActionCreate, 400, "InvalidArgument", "bad input") },
			wantCode: 3400,
		},
		"NoSuchStream → 3404": {
			inject:   func(f *livetest.Server) { f.FailWith(livetest.ActionCreate, 404, "NoSuchStream", "no stream") },
			wantCode: 3404,
		},
		"other error → 3000, unsure (not a definite refusal): stopped on close": {
			inject:   func(f *livetest.Server) { f.FailWith(livetest.ActionCreate, 403, "Forbidden.RAM", "no permission") },
			wantCode: 3000,
			unsure:   true,
		},
		"InternalError → 3500, unsure: stopped on close": {
			inject:   func(f *livetest.Server) { f.FailWith(livetest.ActionCreate, 500, "InternalError", "oops") },
			wantCode: 3500,
			unsure:   true,
		},
		"timeout → 503, the mix Aliyun made anyway is deleted on close": {
			inject:     func(f *livetest.Server) { f.SetDelay(time.Hour) },
			wantCode:   503,
			wantStopIn: true,
			unsure:     true,
		},
	} {
		t.Run(name, func(t *testing.T) {
			fake := livetest.New(liveKeyID, liveSecret)
			t.Cleanup(fake.Close)
			p := startLiveApp(t, fake, "APPSERVER_ALI_TIMEOUT=300ms")
			c := newLiveCall(t, p, true, 1)
			c.do("publishA", false)
			c.do("publishB", false)
			tc.inject(fake)
			if code := c.accept(); code != 200 {
				t.Fatalf("accept: %d", code)
			}
			for _, w := range c.watches() {
				waitUntil(t, "push 14", func() bool { return w.count(14) == 1 })
				msg, _ := w.last(14)["message"].(map[string]any)
				if msg["code"] != tc.wantCode || w.count(5) != 0 {
					t.Fatalf("push 14 message %v, 5s %d", msg, w.count(5))
				}
			}
			fake.Succeed()
			c.do("close", false)
			for _, w := range c.watches() {
				waitUntil(t, "push 4", func() bool { return w.count(4) == 1 })
			}
			if tc.unsure {
				waitUntil(t, "both legs looked up", func() bool { return len(fake.Calls(livetest.ActionDescribe)) == 2 })
			}
			waitUntil(t, "no mix left", func() bool { return mixesFor(fake, c.outputs()) == 0 })
			deletes := callsFor(fake, livetest.ActionDelete, c.outputs())
			if tc.wantStopIn && len(deletes) != 2 || !tc.wantStopIn && len(deletes) != 0 {
				t.Fatalf("%d deletes", len(deletes))
			}
			if looked := len(fake.Calls(livetest.ActionDescribe)); tc.unsure != (looked == 2) || looked > 2 {
				t.Fatalf("%d DescribeMixStreamList calls (unsure %v)", looked, tc.unsure)
			}
			for _, w := range c.watches() {
				if w.count(15) != 0 {
					t.Fatal("push 15 though no mix ran")
				}
			}
		})
	}
}

func TestLiveBreakerOutage(t *testing.T) {
	fake := livetest.New(liveKeyID, liveSecret)
	t.Cleanup(fake.Close)
	p := startLiveApp(t, fake, "APPSERVER_ALI_BREAKEROPENTIMEOUT=500ms")
	fake.FailWith("", 503, "ServiceUnavailable", "down")
	c := newLiveCall(t, p, true, 1)
	c.do("publishA", false)
	c.do("publishB", false)
	if code := c.accept(); code != 200 {
		t.Fatalf("accept: %d", code)
	}
	// Two legs fail per attempt; a repeated publish retries a failed call: 6 calls, and the
	// breaker opens at the 5th failure.
	waitUntil(t, "first 14", func() bool { return c.wA.count(14) == 1 })
	c.publish(c.roomA)
	waitUntil(t, "second 14", func() bool { return c.wA.count(14) == 2 })
	c.publish(c.roomB)
	waitUntil(t, "third 14", func() bool { return c.wA.count(14) == 3 })
	// (The retries of an unsure Start look for the mix first: DescribeMixStreamList.)
	// The last two run in parallel: both may be let through before the 5th failure counts.
	if got := len(fake.Calls()); got < 5 || got > 6 || len(fake.Calls(livetest.ActionCreate)) != 2 {
		t.Fatalf("%d calls reached Aliyun, want 5 or 6 (the breaker opened): %d creates", got, len(fake.Calls(livetest.ActionCreate)))
	}
	// While open: an accept needs the CDN and is refused at once, changing nothing.
	other := newLiveCall(t, p, true, 2)
	requests := fake.Requests()
	start := time.Now()
	if code := other.accept(); code != 503 || time.Since(start) > time.Second || fake.Requests() != requests {
		t.Fatalf("accept while open: code %d after %v, %d requests", code, time.Since(start), fake.Requests()-requests)
	}
	// The inviter, waiting for push 2 or 3, is told: a 3 with status 2 and code 503.
	waitUntil(t, "push 3 to the inviter", func() bool { return other.wA.count(3) == 1 })
	refused := other.wA.last(3)
	assert.Equal(t, other.uB, refused["inviteeUid"])
	assert.EqualValues(t, 2, refused["status"])
	assert.EqualValues(t, 503, refused["code"])
	assert.NotEmpty(t, refused["message"])
	assert.Zero(t, other.wA.count(2), "no push 2 for a refused accept")
	// Closing a call that has no running mix needs no CDN.
	c.do("close", false)
	waitUntil(t, "push 4", func() bool { return c.wA.count(4) == 1 })
	// Aliyun recovers; after the open timeout the breaker lets a probe through.
	fake.Succeed()
	waitUntil(t, "accept works again", func() bool { return other.accept() == 200 })
	// The half-open breaker lets one probe through: of the two legs' Starts one may be
	// refused (push 14), and the next readiness retries it, as with the old driver.
	other.publish(other.roomA)
	other.publish(other.roomB)
	waitUntil(t, "push 5 or 14", func() bool { return other.wA.count(5)+other.wA.count(14) > 0 })
	if other.wA.count(14) > 0 {
		other.publish(other.roomA)
	}
	for _, w := range other.watches() {
		waitUntil(t, "push 5", func() bool { return w.count(5) == 1 })
	}
	other.do("close", false)
	for _, w := range other.watches() {
		waitUntil(t, "push 15", func() bool { return w.count(15) == 1 })
	}
	waitUntil(t, "no mix left", func() bool { return mixesFor(fake, other.outputs()) == 0 })
	creates, deletes := callsFor(fake, livetest.ActionCreate, other.outputs()), callsFor(fake, livetest.ActionDelete, other.outputs())
	if len(creates) < 2 || len(deletes) != len(creates) {
		t.Fatalf("%d creates, %d deletes", len(creates), len(deletes))
	}
}

// TestLiveKillNineAndRestart: a process killed with SIGKILL while CreateMixStream was in
// flight (Aliyun made the mix, the answer was lost) or after the mix started: after a
// restart the call goes on, no second mix is created, and closing it deletes every mix —
// found with DescribeMixStreamList when the id was never answered, by the stored id
// otherwise.
func TestLiveKillNineAndRestart(t *testing.T) {
	bin := binary(t)
	for name, tc := range map[string]struct {
		inFlight bool
	}{
		"killed between CreateMixStream and its answer": {inFlight: true},
		"killed after the mix started":                  {inFlight: false},
	} {
		t.Run(name, func(t *testing.T) {
			fake := livetest.New(liveKeyID, liveSecret)
			t.Cleanup(fake.Close)
			port := freePort(t)
			// A Start waits long enough to be in flight when the process dies.
			env := liveEnv(fake, port, t.TempDir(), "APPSERVER_ALI_TIMEOUT=30s")
			p := start(t, bin, port, env...)
			c := newLiveCall(t, p, true, 1)
			if tc.inFlight {
				fake.SetDelay(time.Hour)
			}
			c.do("publishA", false)
			c.do("publishB", false)
			if code := c.accept(); code != 200 {
				t.Fatalf("accept: %d", code)
			}
			waitUntil(t, "both CreateMixStream calls", func() bool { return len(fake.Calls(livetest.ActionCreate)) == 2 })
			if !tc.inFlight {
				for _, w := range c.watches() {
					waitUntil(t, "push 5", func() bool { return w.count(5) == 1 })
				}
			}
			created := fake.Mixes()
			fake.Succeed()
			p = p.killAndRestart(t, bin, port, env...)

			if tc.inFlight {
				// The re-issued Starts adopt the mixes Aliyun made.
				waitUntil(t, "the mix adopted", func() bool { return len(fake.Calls(livetest.ActionDescribe)) >= 2 })
			}
			p.call(t, "/videocall/close", url.Values{"closeRoomId": {c.roomA}})
			waitUntil(t, "every mix deleted", func() bool { return len(fake.Mixes()) == 0 })
			deletes := fake.Calls(livetest.ActionDelete)
			if len(fake.Calls(livetest.ActionCreate)) != 2 || len(deletes) != 2 || len(created) != 2 {
				t.Fatalf("%d creates, %d deletes, %d mixes before the kill", len(fake.Calls(livetest.ActionCreate)), len(deletes), len(created))
			}
			for _, m := range created {
				if !slices.ContainsFunc(deletes, func(d livetest.Call) bool { return d.MixStreamID == m.ID }) {
					t.Fatalf("mix %s not deleted by its id: %+v", m.ID, deletes)
				}
			}
			if !tc.inFlight && len(fake.Calls(livetest.ActionDescribe)) != 0 {
				t.Fatal("the stored ids were not used: DescribeMixStreamList was called")
			}
		})
	}
}
