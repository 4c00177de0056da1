package http_test

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	apihttp "roomengine/http"
)

// rawGetHeaders is rawGet with extra request headers (name, value pairs).
func rawGetHeaders(addr, target string, header []string) int {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var extra strings.Builder
	for i := 0; i+1 < len(header); i += 2 {
		extra.WriteString(header[i] + ": " + header[i+1] + "\r\n")
	}
	_, _ = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", target, addr, extra.String())
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	_ = apiCheck.Validator.Check("GET", target, res.StatusCode, res.Header, body) // reported by TestMain
	return res.StatusCode
}

// signedHeaders are the callback headers for a request sent at t, computed here from the
// formula of docs/api.md (Callbacks) rather than with the package's own signer.
func signedHeaders(rtmpHost, key string, t time.Time) []string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return []string{"ALI-LIVE-TIMESTAMP", ts, "ALI-LIVE-SIGNATURE", md5hex(rtmpHost + "|" + ts + "|" + key)}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// metricValue is the value of the counter or gauge name with exactly these labels (0 when
// the series does not exist).
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func roomStatus(t *testing.T, s *server, roomID string) roomObject {
	t.Helper()
	var rooms []roomObject
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &rooms)
	for _, r := range rooms {
		if r.RoomID == roomID {
			return r
		}
	}
	t.Fatalf("room %s not listed", roomID)
	return roomObject{}
}

func TestCallbackSignatureVector(t *testing.T) {
	// echo -n 'push.example|1700000000|cb-key' | md5sum
	if got := apihttp.CallbackSignature("push.example", "1700000000", "cb-key"); got != "3264ecadb4352bbb4ccc4e6e369a2080" {
		t.Fatalf("signature %s", got)
	}
	req, _ := http.NewRequest("GET", "/ali/stream/notify", nil)
	apihttp.SignCallback(req, "push.example", "cb-key", time.Unix(1700000000, 0))
	if req.Header.Get("ALI-LIVE-TIMESTAMP") != "1700000000" || req.Header.Get("ALI-LIVE-SIGNATURE") != "3264ecadb4352bbb4ccc4e6e369a2080" {
		t.Fatalf("signed headers: %v", req.Header)
	}
	req, _ = http.NewRequest("GET", "/ali/stream/notify", nil)
	apihttp.SignCallback(req, "push.example", "", time.Now())
	if len(req.Header) != 0 {
		t.Fatalf("signing without a key set headers: %v", req.Header)
	}
}

// Unsigned, wrongly signed, stale, future and malformed callbacks are refused with 403 and
// change nothing; only the correctly signed one reaches the handler.
func TestCallbackAuthRefusesAndAccepts(t *testing.T) {
	const key = "cb-key"
	reg := prometheus.NewRegistry()
	s := newServer(t, serverOpts{callbackAuthKey: key, reg: reg})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	sub := s.subscribe(t, "topic="+R)
	publish := "/ali/stream/notify?action=publish&id=" + R + "&app=DemoApp&appname=DemoApp&node=n1"
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)

	cases := []struct {
		name   string
		header []string
		reason string
	}{
		{"unsigned", nil, "missing"},
		{"timestamp only", []string{"ALI-LIVE-TIMESTAMP", ts}, "missing"},
		{"signature only", []string{"ALI-LIVE-SIGNATURE", md5hex("push.example|" + ts + "|" + key)}, "missing"},
		{"wrong key", signedHeaders("push.example", "not-the-key", now), "bad_signature"},
		{"wrong host", signedHeaders("other.example", key, now), "bad_signature"},
		{"timestamp not signed", []string{"ALI-LIVE-TIMESTAMP", strconv.FormatInt(now.Unix()+1, 10),
			"ALI-LIVE-SIGNATURE", md5hex("push.example|" + ts + "|" + key)}, "bad_signature"},
		{"malformed timestamp", []string{"ALI-LIVE-TIMESTAMP", "yesterday", "ALI-LIVE-SIGNATURE", md5hex("push.example|yesterday|" + key)}, "bad_signature"},
		{"negative timestamp", []string{"ALI-LIVE-TIMESTAMP", "-5", "ALI-LIVE-SIGNATURE", md5hex("push.example|-5|" + key)}, "bad_signature"},
		{"stale", signedHeaders("push.example", key, now.Add(-6*time.Minute)), "stale"},
		{"future", signedHeaders("push.example", key, now.Add(6*time.Minute)), "stale"},
	}
	want := map[string]float64{}
	for _, c := range cases {
		r := s.do(t, "GET", publish, "", "", c.header...)
		if r.Status != http.StatusForbidden || r.Code != 403 || r.Message == "" {
			t.Fatalf("%s: want HTTP 403 code 403, got HTTP %d %+v", c.name, r.Status, r)
		}
		want[c.reason]++
		if got := roomStatus(t, s, R); got.Status != 0 {
			t.Fatalf("%s: a refused publish callback changed the room: status %d", c.name, got.Status)
		}
	}
	for reason, n := range want {
		got := metricValue(t, reg, "roomengine_callbacks_refused_total", map[string]string{"route": "/ali/stream/notify", "reason": reason})
		if got != n {
			t.Errorf("refused{reason=%s} = %v, want %v", reason, got, n)
		}
	}

	// The same callback, signed right (upper-case hex is accepted too), goes through.
	h := signedHeaders("push.example", key, time.Now())
	h[3] = strings.ToUpper(h[3])
	mustOK(t, s.do(t, "GET", publish, "", "", h...), nil)
	if got := roomStatus(t, s, R); got.Status != 1 {
		t.Fatalf("signed publish: status %d, want 1", got.Status)
	}
	// Nothing was pushed for the refused ones: the first frame is the accepted publish.
	sub.expect(9, R, 5, map[string]any{"uid": "1", "roomId": R})

	// The mix routes are guarded as well.
	avail := "/ali/mix/availability/notify?Domain=play.example&App=DemoApp&Stream=" + R + "_mix&Event=MixAvailable"
	if r := s.get(t, avail); r.Status != http.StatusForbidden || r.Code != 403 {
		t.Fatalf("unsigned MixAvailable: HTTP %d %+v", r.Status, r)
	}
	if roomStatus(t, s, R).IsMixReady {
		t.Fatal("a refused MixAvailable made the room mix-ready")
	}
	status := "/ali/mix/status/notify?MainMixStream=" + R + "&MixStream=x&Event=MixResult&Code=Success"
	if r := s.do(t, "GET", status, "", "", signedHeaders("push.example", key, time.Now().Add(-time.Hour))...); r.Status != http.StatusForbidden {
		t.Fatalf("stale MixResult: HTTP %d %+v", r.Status, r)
	}
	mustOK(t, s.do(t, "GET", avail, "", "", signedHeaders("push.example", key, time.Now())...), nil)
	if !roomStatus(t, s, R).IsMixReady {
		t.Fatal("a signed MixAvailable did not make the room mix-ready")
	}
	// The Live API's mix callback too: unsigned is refused, signed answers 200 whatever
	// its body says.
	if r := s.do(t, "POST", "/ali/mix/callback", "application/json", `{"MixStreamId":"m"}`); r.Status != http.StatusForbidden || r.Code != 403 {
		t.Fatalf("unsigned mix callback: HTTP %d %+v", r.Status, r)
	}
	mustOK(t, s.do(t, "POST", "/ali/mix/callback", "application/json", `{"MixStreamId":"m","Event":"x"}`,
		signedHeaders("push.example", key, time.Now())...), nil)
	for route, reason := range map[string]string{"/ali/mix/availability/notify": "missing", "/ali/mix/status/notify": "stale",
		"/ali/mix/callback": "missing"} {
		if got := metricValue(t, reg, "roomengine_callbacks_refused_total", map[string]string{"route": route, "reason": reason}); got != 1 {
			t.Errorf("refused{route=%s,reason=%s} = %v, want 1", route, reason, got)
		}
	}
	// Refusals are visible in the request metrics under code 403 as well.
	if got := metricValue(t, reg, "roomengine_http_requests_total", map[string]string{"route": "/ali/stream/notify", "code": "403"}); got != float64(len(cases)) {
		t.Errorf("http requests with code 403: %v, want %d", got, len(cases))
	}
}

// The window is CallbackMaxSkew into the past and at most 30 s into the future, inclusive, on
// the handler's clock.
func TestCallbackAuthSkewWindow(t *testing.T) {
	const key = "k"
	base := time.Unix(1700000000, 0)
	reg := prometheus.NewRegistry()
	s := newServer(t, serverOpts{callbackAuthKey: key, callbackMaxSkew: 2 * time.Minute, now: func() time.Time { return base }, reg: reg})
	path := "/ali/stream/notify?action=publish&id=unknownstream"
	for _, c := range []struct {
		offset time.Duration
		ok     bool
	}{
		{0, true}, {-120 * time.Second, true}, {30 * time.Second, true},
		{-121 * time.Second, false}, {31 * time.Second, false}, {120 * time.Second, false}, {-time.Hour, false},
	} {
		r := s.do(t, "GET", path, "", "", signedHeaders("push.example", key, base.Add(c.offset))...)
		if ok := r.Status == 200 && r.Code == 200; ok != c.ok {
			t.Errorf("offset %v: HTTP %d %+v, want accepted=%v", c.offset, r.Status, r, c.ok)
		}
	}
	if got := metricValue(t, reg, "roomengine_callbacks_refused_total", map[string]string{"route": "/ali/stream/notify", "reason": "stale"}); got != 4 {
		t.Fatalf("stale refusals %v, want 4", got)
	}
}

// Without a key, callbacks are not checked (as the old server did).
func TestCallbackAuthOff(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newServer(t, serverOpts{reg: reg})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	mustOK(t, s.get(t, "/ali/stream/notify?action=publish&id="+room.RoomID), nil)
	if got := roomStatus(t, s, room.RoomID); got.Status != 1 {
		t.Fatalf("unsigned publish with auth off: status %d", got.Status)
	}
	// Even a garbage signature is ignored when auth is off.
	mustOK(t, s.do(t, "GET", "/ali/stream/notify?action=publish_done&id="+room.RoomID, "", "", "ALI-LIVE-SIGNATURE", "x"), nil)
	if got := roomStatus(t, s, room.RoomID); got.Status != 0 {
		t.Fatalf("publish_done with auth off: status %d", got.Status)
	}
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() == "roomengine_callbacks_refused_total" {
			t.Fatal("the refusal counter is registered while callback auth is off")
		}
	}
}

// With callback auth on, the simulated CDN's MixResult (sent by the harness like
// app.go's simulator, signed) still reaches the handler: type 16 arrives.
func TestCallbackAuthSimulatedMixResult(t *testing.T) {
	const key = "cb-key"
	s := newServer(t, serverOpts{callbackAuthKey: key})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	mustOK(t, s.post(t, "/login", "name", "bob"), nil)
	var a, b roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &a)
	mustOK(t, s.post(t, "/live/create", "uid", "2"), &b)
	mustOK(t, s.post(t, "/videocall/feedback", "status", 1, "inviterUid", 1, "inviteeUid", 2, "inviterType", 2, "inviteeType", 2), nil)
	sub := s.subscribe(t, "topic="+a.RoomID)
	for _, r := range []string{a.RoomID, b.RoomID} {
		mustOK(t, s.do(t, "GET", "/ali/mix/availability/notify?Stream="+r+"_mix&Event=MixAvailable", "", "",
			signedHeaders("push.example", key, time.Now())...), nil)
	}
	fs := sub.frames(5) // 17, 17, then 5 and two 16 in any order
	if n := len(byType(t, fs, 16)); n != 2 {
		t.Fatalf("type 16 frames: %d of %v", n, typesOf(fs))
	}
}

// A captured publish_done sent again after a new publish changes nothing: an exact repeat of
// a callback is answered 200, counted as a replay, and not applied. The same callback with
// other parameters, or signed anew, is a new callback.
func TestCallbackReplayChangesNothing(t *testing.T) {
	const key = "cb-key"
	reg := prometheus.NewRegistry()
	s := newServer(t, serverOpts{callbackAuthKey: key, reg: reg})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	notify := "/ali/stream/notify?app=DemoApp&appname=DemoApp&id=" + R + "&action="
	now := time.Now()
	mustOK(t, s.do(t, "GET", notify+"publish", "", "", signedHeaders("push.example", key, now)...), nil)
	captured := signedHeaders("push.example", key, now.Add(-time.Second))
	mustOK(t, s.do(t, "GET", notify+"publish_done", "", "", captured...), nil)
	if got := roomStatus(t, s, R).Status; got != 0 {
		t.Fatalf("after publish_done: status %d", got)
	}
	// The host publishes again (Aliyun signs each callback when it sends it).
	mustOK(t, s.do(t, "GET", notify+"publish", "", "", signedHeaders("push.example", key, now.Add(time.Second))...), nil)
	r := s.do(t, "GET", notify+"publish_done", "", "", captured...)
	if r.Status != http.StatusOK || r.Code != 200 {
		t.Fatalf("replayed publish_done: HTTP %d %+v, want 200", r.Status, r)
	}
	if got := roomStatus(t, s, R).Status; got != 1 {
		t.Fatalf("a replayed publish_done ended the stream: status %d, want 1 (publishing)", got)
	}
	if got := metricValue(t, reg, "roomengine_callbacks_refused_total", map[string]string{"route": "/ali/stream/notify", "reason": "replay"}); got != 1 {
		t.Fatalf("replays counted %v, want 1", got)
	}
	// The same signature with other parameters is not a repeat (and its signature covers
	// only the time, as Aliyun's does): applied.
	mustOK(t, s.do(t, "GET", notify+"publish_done&node=other", "", "", captured...), nil)
	if got := roomStatus(t, s, R).Status; got != 0 {
		t.Fatalf("a different callback was taken for a repeat: status %d", got)
	}
}
