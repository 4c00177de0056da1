package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// watchRun is one `appserver watch` running in process against a test server.
type watchRun struct {
	out, errOut *syncBuffer
	cancel      context.CancelFunc
	exited      chan struct{} // closed when runWatch returned
	code        int           // its exit status, once exited
}

func startWatch(t *testing.T, args ...string) *watchRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchRun{out: &syncBuffer{}, errOut: &syncBuffer{}, cancel: cancel, exited: make(chan struct{})}
	go func() {
		defer close(w.exited)
		w.code = runWatch(ctx, args, w.out, w.errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.exited:
		case <-time.After(10 * time.Second):
			t.Error("watch did not stop")
		}
	})
	return w
}

// watchedFrame is one line of watch's output.
type watchedFrame struct {
	Topic      string `json:"topic"`
	Seq        int64  `json:"seq"`
	Tag        string `json:"tag"`
	Importance int    `json:"importance"`
	Message    struct {
		Type int            `json:"type"`
		Time int64          `json:"time"`
		Data map[string]any `json:"data"`
	} `json:"message"`
}

// frames parses what watch printed so far; every line must be one JSON frame.
func (w *watchRun) frames(t *testing.T) []watchedFrame {
	t.Helper()
	var out []watchedFrame
	for line := range strings.Lines(w.out.String()) {
		var f watchedFrame
		require.NoError(t, json.Unmarshal([]byte(line), &f), "line %q", line)
		require.NoError(t, apiCheck.Validator.CheckFrame([]byte(line)))
		require.True(t, strings.HasSuffix(line, "}\n"), "one frame per line: %q", line)
		out = append(out, f)
	}
	return out
}

func (w *watchRun) types(t *testing.T) []int {
	var types []int
	for _, f := range w.frames(t) {
		types = append(types, f.Message.Type)
	}
	return types
}

// waitTypes waits until watch has printed frames of exactly these types, in this order.
func (w *watchRun) waitTypes(t *testing.T, want ...int) {
	t.Helper()
	waitUntil(t, fmt.Sprint("frames of types ", want), func() bool { return slices.Equal(w.types(t), want) })
}

// waitFor waits until watch has printed frames of these types, whatever their order.
func (w *watchRun) waitFor(t *testing.T, want ...int) {
	t.Helper()
	waitUntil(t, fmt.Sprint("frames of types ", want), func() bool {
		got := w.types(t)
		slices.Sort(got)
		return slices.Equal(got, slices.Sorted(slices.Values(want)))
	})
}

// `appserver watch` prints each frame as one JSON line, filters by tags, replays with
// -since, and exits 0 when the server closes the topic.
func TestWatchCommand(t *testing.T) {
	p := startApp(t, io.Discard, "APPSERVER_LIVE_TOPICDELETEDELAY=200ms")
	addr := strings.TrimPrefix(p.base, "http://")
	host := field(t, p.call(t, "/login", url.Values{"name": {"host"}}), "id")
	fan := field(t, p.call(t, "/login", url.Values{"name": {"fan"}}), "id")
	room := field(t, p.call(t, "/live/create", url.Values{"uid": {host}}), "roomId")

	all := startWatch(t, "-addr", addr, "-topic", room)
	forFan := startWatch(t, "-addr", "http://"+addr+"/", "-topic", room, "-tags", fan)
	waitUntil(t, "both subscribed", func() bool { return p.metric(t, "roomengine_ws_connections") == 2 })

	p.call(t, "/live/comment", url.Values{"uid": {fan}, "roomId": {room}, "comment": {"hello\nworld"}})
	p.call(t, "/live/like", url.Values{"uid": {fan}, "roomId": {room}})
	all.waitTypes(t, 6, 7)
	frames := all.frames(t)
	assert.Equal(t, room, frames[0].Topic)
	assert.Equal(t, room, frames[0].Tag)
	assert.Equal(t, 8, frames[0].Importance)
	assert.Equal(t, "hello\nworld", frames[0].Message.Data["comment"])
	assert.Equal(t, frames[0].Seq+1, frames[1].Seq)
	assert.Empty(t, forFan.types(t), "messages tagged with the room do not reach a watch of the fan's tag")

	replay := startWatch(t, "-addr", addr, "-topic", room, "-since", fmt.Sprint(frames[0].Seq))
	replay.waitTypes(t, 7)

	// The host leaves: push 8, and live.topicDeleteDelay later the topic is deleted: the
	// server closes with 1000 and watch exits 0.
	p.call(t, "/live/leave", url.Values{"roomId": {room}})
	all.waitTypes(t, 6, 7, 8)
	select {
	case <-all.exited:
		assert.Equal(t, 0, all.code)
		assert.Contains(t, all.errOut.String(), "1000")
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not exit when the topic was deleted")
	}
}

func TestWatchCommandErrors(t *testing.T) {
	p := startApp(t, io.Discard)
	addr := strings.TrimPrefix(p.base, "http://")
	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"no topic":              {[]string{"-addr", addr}, 2, "usage"},
		"bad flag":              {[]string{"-nope"}, 2, "nope"},
		"bad addr":              {[]string{"-topic", "x", "-addr", "ftp://h"}, 2, "ftp"},
		"refused by the server": {[]string{"-topic", " ", "-addr", addr}, 1, "20001"},
		"nothing listening":     {[]string{"-topic", "x", "-addr", "127.0.0.1:1"}, 1, "127.0.0.1:1"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := runWatch(t.Context(), tc.args, &out, &errOut)
			assert.Equal(t, tc.code, code)
			assert.Contains(t, errOut.String(), tc.want)
			assert.Empty(t, out.String())
		})
	}
}

// metric reads one unlabelled gauge or counter from /metrics.
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	res, err := client.Get(p.base + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			require.NoError(t, err)
			return f
		}
	}
	return 0
}

// The README's walkthrough, step by step, with `appserver watch` as the WebSocket client:
// each step pushes what the README says it does.
func TestREADMEWalkthrough(t *testing.T) {
	p := startApp(t, io.Discard)
	addr := strings.TrimPrefix(p.base, "http://")
	post := func(path, form string) json.RawMessage {
		t.Helper()
		values, err := url.ParseQuery(form)
		require.NoError(t, err)
		return p.call(t, path, values)
	}
	get := func(path string) json.RawMessage {
		t.Helper()
		return p.get(t, path)
	}

	// Try it with curl and appserver watch.
	require.Equal(t, "1", field(t, post("/login", "name=alice"), "id"))
	require.Equal(t, "2", field(t, post("/login", "name=carol"), "id"))
	R := field(t, post("/live/create", "uid=1&desc=hello"), "roomId")
	w := startWatch(t, "-addr", addr, "-topic", R, "-tags", R+",2")
	waitUntil(t, "watch subscribed", func() bool { return p.metric(t, "roomengine_ws_connections") == 1 })
	post("/live/play", "roomId="+R+"&uid=2")
	post("/live/comment", "roomId="+R+"&uid=2&comment=hi")
	w.waitTypes(t, 6)
	post("/live/like", "roomId="+R+"&uid=2")
	w.waitTypes(t, 6, 7)
	get("/ali/stream/notify?action=publish&id=" + R)
	w.waitTypes(t, 6, 7, 9)
	get("/ali/mix/availability/notify?Stream=" + R + "_mix&Event=MixAvailable")
	var listed []map[string]any
	require.NoError(t, json.Unmarshal(get("/live/list"), &listed))
	require.Len(t, listed, 1, "the room is listed now")
	assert.Equal(t, R, listed[0]["roomId"])
	post("/live/audience/leave", "roomId="+R+"&uid=2")
	post("/live/leave", "roomId="+R)
	w.waitTypes(t, 6, 7, 9, 8)

	// Co-streaming with the simulated CDN.
	require.Equal(t, "3", field(t, post("/login", "name=bob"), "id"))
	R = field(t, post("/live/create", "uid=1"), "roomId")
	B := field(t, post("/live/create", "uid=3"), "roomId")
	wR := startWatch(t, "-addr", addr, "-topic", R)
	wB := startWatch(t, "-addr", addr, "-topic", B, "-tags", B+",3")
	waitUntil(t, "watches subscribed", func() bool { return p.metric(t, "roomengine_ws_connections") == 3 })
	post("/videocall/invite", "inviterUid=1&inviteeUid=3&liveRoomId="+R+"&inviterType=2&type=side_by_side")
	wB.waitTypes(t, 1) // on bob's own room, tagged with his uid
	inv := wB.frames(t)[0]
	assert.Equal(t, "3", inv.Tag)
	assert.Equal(t, "1", inv.Message.Data["inviterUid"])
	accepted := post("/videocall/feedback", "status=1&inviterUid=1&inviteeUid=3&inviterType=2&inviteeType=2&type=side_by_side")
	assert.Equal(t, B, field(t, accepted, "inviteeRoomId"))
	wR.waitTypes(t, 2)
	assert.Equal(t, "1", wR.frames(t)[0].Tag, "push 2 is tagged with the inviter's uid")
	get("/ali/mix/availability/notify?Stream=" + R + "_mix&Event=MixAvailable")
	wR.waitTypes(t, 2, 17)
	get("/ali/mix/availability/notify?Stream=" + B + "_mix&Event=MixAvailable")
	wR.waitFor(t, 2, 17, 17, 5, 16, 16) // a MixResult (16) per host side
	var all []map[string]any
	require.NoError(t, json.Unmarshal(get("/live/list?roomId=-1"), &all))
	require.Len(t, all, 2)
	for _, room := range all {
		assert.Equal(t, true, room["isMixed"])
		assert.EqualValues(t, 1, room["mixedStatus"])
	}
	post("/videocall/close", "closeRoomId="+R+"&notifiedRoomId="+B)
	wR.waitFor(t, 2, 17, 17, 5, 16, 16, 4, 15)
}
