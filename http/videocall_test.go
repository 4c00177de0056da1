package http_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawGet sends one GET with the target written as is (spaces and all) and returns the
// status code, or 0 if the exchange failed.
func rawGet(addr, target string) int {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	_ = apiCheck.Validator.Check("GET", target, res.StatusCode, res.Header, body) // reported by TestMain
	return res.StatusCode
}

// twoHosts logs in alice (1) and bob (2) and opens a host room for each.
func twoHosts(t *testing.T, s *server) (a, b roomObject) {
	t.Helper()
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	mustOK(t, s.post(t, "/login", "name", "bob"), nil)
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &a)
	mustOK(t, s.post(t, "/live/create", "uid", "2"), &b)
	return a, b
}

// frames reads n frames and returns them keyed "type" with their data, in arrival order.
func (sub *subscriber) frames(n int) []frame {
	sub.t.Helper()
	out := make([]frame, 0, n)
	for range n {
		out = append(out, sub.next())
	}
	return out
}

func typesOf(fs []frame) []int {
	var out []int
	for _, f := range fs {
		out = append(out, f.Message.Type)
	}
	return out
}

func dataOf(t *testing.T, f frame) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(f.Message.Data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkFrame checks a frame's type, tag and importance (the rest is meaningless if they are
// wrong), selected data fields (compared as text: 2 and "2" are equal) and that it has a time.
func checkFrame(t *testing.T, f frame, typ int, tag string, importance int, data map[string]any) {
	t.Helper()
	require.Equal(t, fmt.Sprintf("type %d tag %q importance %d", typ, tag, importance),
		fmt.Sprintf("type %d tag %q importance %d", f.Message.Type, f.Tag, f.Importance), "frame %s", f.Message.Data)
	got := dataOf(t, f)
	for k, want := range data {
		assert.Equal(t, fmt.Sprint(want), fmt.Sprint(got[k]), "type %d: data[%s] (all: %v)", typ, k, got)
	}
	assert.NotZero(t, f.Message.Time, "type %d has no time", typ)
}

func byType(t *testing.T, fs []frame, typ int) []frame {
	t.Helper()
	var out []frame
	for _, f := range fs {
		if f.Message.Type == typ {
			out = append(out, f)
		}
	}
	return out
}

func TestHostHostCoStreaming(t *testing.T) {
	s := newServer(t, serverOpts{})
	a, b := twoHosts(t, s)
	A, B := a.RoomID, b.RoomID
	subA, subB := s.subscribe(t, "topic="+A), s.subscribe(t, "topic="+B)

	mustOK(t, s.post(t, "/videocall/invite", "inviterUid", 1, "inviteeUid", 2, "liveRoomId", A, "inviterType", 2, "type", "side_by_side"), nil)
	// To the invitee's own host room, tagged with the invitee.
	checkFrame(t, subB.next(), 1, "2", 4, map[string]any{"inviterUid": "1", "inviterName": "alice", "inviterType": 2, "type": "side_by_side"})

	var res struct{ InviterPlayURL, InviterRoomID, RtmpURL, InviteeRoomID string }
	mustOK(t, s.post(t, "/videocall/feedback", "status", 1, "inviterUid", 1, "inviteeUid", 2, "inviterType", 2, "inviteeType", 2, "type", "side_by_side"), &res)
	if res.InviterRoomID != A || res.InviteeRoomID != B || res.RtmpURL != b.RtmpURL ||
		res.InviterPlayURL != "http://play.example/DemoApp/"+A+".flv?ali_flv_retain=0" {
		t.Fatalf("feedback: %+v", res)
	}
	checkFrame(t, subA.next(), 2, "1", 4, map[string]any{"inviteeUid": "2", "inviteeName": "bob", "inviteeRoomId": B,
		"inviterRoomId": A, "inviteePlayUrl": "http://play.example/DemoApp/" + B + ".flv?ali_flv_retain=0",
		"rtmpUrl": a.RtmpURL, "type": "side_by_side", "inviterType": 2, "inviteeType": 2, "status": 1})

	if r := s.post(t, "/videocall/invite", "inviterUid", 1, "inviteeUid", 2, "liveRoomId", A, "inviterType", 2); r.Code != 3020 {
		t.Fatalf("invite during a call: %+v", r)
	}
	// A room in a call: its publish notice goes to both host rooms.
	mustOK(t, s.get(t, "/ali/stream/notify?action=publish&id="+A), nil)
	checkFrame(t, subA.next(), 9, A, 5, map[string]any{"uid": "1", "roomId": A})
	checkFrame(t, subB.next(), 9, B, 5, map[string]any{"uid": "1", "roomId": A})

	mustOK(t, s.get(t, "/ali/mix/availability/notify?Stream="+A+"_mix&Event=MixAvailable"), nil)
	checkFrame(t, subA.next(), 17, A, 5, map[string]any{"roomId": A, "type": 2})
	checkFrame(t, subB.next(), 17, B, 5, map[string]any{"roomId": A, "type": 2})
	mustOK(t, s.get(t, "/ali/mix/availability/notify?Stream="+B+"_mix&Event=MixAvailable"), nil)
	// Then: 17 for B, the mix starts on both host sides (5), and the simulated CDN's two
	// MixResult callbacks (16) arrive; 5 and 16 may interleave.
	for _, sub := range []*subscriber{subA, subB} {
		fs := sub.frames(4)
		topic := fs[0].Topic
		checkFrame(t, fs[0], 17, topic, 5, map[string]any{"roomId": B, "type": 2})
		rest := typesOf(fs[1:])
		sort.Ints(rest)
		if !slices.Equal(rest, []int{5, 16, 16}) {
			t.Fatalf("after both mix-ready on %s: types %v", topic, typesOf(fs))
		}
		five := byType(t, fs, 5)[0]
		checkFrame(t, five, 5, topic, 5, map[string]any{"inviterRoomid": A, "inviteeRoomid": B, "inviterUid": "1",
			"inviterName": "alice", "inviteeUid": "2", "inviteeName": "bob", "inviterType": 2, "inviteeType": 2})
		d := dataOf(t, five)
		if fmt.Sprint(d["inviterMixPlayUrls"]) != "[http://play.example/DemoApp/"+A+"_"+B+"]" ||
			fmt.Sprint(d["inviteeMixPlayUrls"]) != "[http://play.example/DemoApp/"+B+"_"+A+"]" {
			t.Fatalf("type 5 URLs: %v", d)
		}
		for _, f := range byType(t, fs, 16) {
			checkFrame(t, f, 16, topic, 5, map[string]any{"code": "Success", "event": "MixResult", "message": "mix success", "mixType": "channel"})
		}
	}
	var rooms []roomObject
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &rooms)
	for _, r := range rooms {
		if !r.IsMixed {
			t.Fatalf("room %s not isMixed after the mix: %+v", r.RoomID, r)
		}
	}
	if len(s.sim.Running()) != 2 {
		t.Fatalf("running mixes: %v", s.sim.Running())
	}

	mustOK(t, s.post(t, "/videocall/close", "closeRoomId", A, "notifiedRoomId", B), nil)
	for _, sub := range []*subscriber{subA, subB} {
		fs := sub.frames(2)
		topic := fs[0].Topic
		want := map[string]any{"roomId": A, "uid": "1", "name": "alice", "notifiedRoomId": B, "notifiedUid": "2", "notifiedName": "bob"}
		checkFrame(t, fs[0], 4, topic, 5, want)
		checkFrame(t, fs[1], 15, topic, 5, want)
	}
	if len(s.sim.Running()) != 0 {
		t.Fatalf("mixes still running after close: %v", s.sim.Running())
	}
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &rooms)
	for _, r := range rooms {
		if r.IsMixed {
			t.Fatalf("room %s still isMixed after close", r.RoomID)
		}
	}
	// The rooms are free again.
	mustOK(t, s.post(t, "/videocall/invite", "inviterUid", 1, "inviteeUid", 2, "liveRoomId", A, "inviterType", 2), nil)
	// Refusal: type 3 to the inviter's room, tagged with the inviter.
	checkFrame(t, subB.next(), 1, "2", 4, nil)
	mustOK(t, s.post(t, "/videocall/feedback", "status", 2, "inviterUid", 1, "inviteeUid", 2, "inviterType", 2, "inviteeType", 2), nil)
	checkFrame(t, subA.next(), 3, "1", 4, map[string]any{"inviteeUid": "2", "inviteeName": "bob", "status": 2})
}

func TestHostViewerCoStreaming(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	mustOK(t, s.post(t, "/login", "name", "bob"), nil)
	mustOK(t, s.post(t, "/login", "name", "carol"), nil)
	var a roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &a)
	A := a.RoomID
	host := s.subscribe(t, "topic="+A+"&tags="+A+",1")
	viewer := s.subscribe(t, "topic="+A+"&tags="+A+",3")
	mustOK(t, s.post(t, "/live/play", "roomId", A, "uid", 3), nil)

	mustOK(t, s.post(t, "/videocall/invite", "inviterUid", 1, "inviteeUid", 3, "liveRoomId", A, "inviterType", 2), nil)
	// carol hosts no room: the invitation goes to the room she watches, tagged for her.
	checkFrame(t, viewer.next(), 1, "3", 4, map[string]any{"inviterUid": "1", "inviterName": "alice", "inviterType": 2, "type": "picture_in_picture"})

	var res struct{ InviterRoomID, RtmpURL, InviteeRoomID string }
	mustOK(t, s.post(t, "/videocall/feedback", "status", 1, "inviterUid", 1, "inviteeUid", 3, "inviterType", 2, "inviteeType", 1), &res)
	C := res.InviteeRoomID
	if res.InviterRoomID != A || len(C) != 10 || C == A || !strings.Contains(res.RtmpURL, "/DemoApp/"+C) {
		t.Fatalf("feedback: %+v", res)
	}
	checkFrame(t, host.next(), 2, "1", 4, map[string]any{"inviteeUid": "3", "inviteeRoomId": C, "inviterRoomId": A, "inviteeType": 1, "inviterType": 2})
	var rooms []roomObject
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &rooms)
	var costream *roomObject
	for i := range rooms {
		if rooms[i].RoomID == C {
			costream = &rooms[i]
		}
	}
	if costream == nil || costream.Status != 10 || costream.Type != 1 || costream.UID != "3" {
		t.Fatalf("co-stream room: %+v", rooms)
	}
	coSub := s.subscribe(t, "topic="+C)

	mustOK(t, s.get(t, "/ali/mix/availability/notify?Stream="+C+"_mix&Event=MixAvailable"), nil)
	checkFrame(t, host.next(), 17, A, 5, map[string]any{"roomId": C, "type": 1})
	mustOK(t, s.get(t, "/ali/mix/availability/notify?Stream="+A+"_mix&Event=MixAvailable"), nil)
	fs := host.frames(3)
	checkFrame(t, fs[0], 17, A, 5, map[string]any{"roomId": A, "type": 2})
	rest := typesOf(fs[1:])
	sort.Ints(rest)
	if !slices.Equal(rest, []int{5, 16}) {
		t.Fatalf("types after mix-ready: %v", typesOf(fs))
	}
	d := dataOf(t, byType(t, fs, 5)[0])
	if fmt.Sprint(d["inviterMixPlayUrls"]) != "[http://play.example/DemoApp/"+A+"_"+C+"]" || fmt.Sprint(d["inviteeMixPlayUrls"]) != "[]" {
		t.Fatalf("type 5 for a host–viewer call: %v", d)
	}
	checkFrame(t, byType(t, fs, 16)[0], 16, A, 5, map[string]any{"mainMixRoomId": A, "mixRoomId": C, "code": "Success"})

	// The viewer ends the call from the co-stream room.
	mustOK(t, s.post(t, "/videocall/close", "closeRooomId", C, "notifiedRoomId", A), nil)
	want := map[string]any{"roomId": C, "uid": "3", "name": "carol", "notifiedRoomId": A, "notifiedUid": "1", "notifiedName": "alice"}
	checkFrame(t, host.next(), 4, A, 5, want)
	checkFrame(t, host.next(), 15, A, 5, want)
	// The co-stream room existed for the call only: it ends with it.
	checkFrame(t, coSub.next(), 8, C, 5, map[string]any{"roomId": C})
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &rooms)
	if len(rooms) != 1 || rooms[0].RoomID != A || rooms[0].IsMixed {
		t.Fatalf("rooms after the call: %+v", rooms)
	}
	// Closing again: the room is in no call; nothing happens.
	mustOK(t, s.post(t, "/videocall/close", "closeRoomId", A), nil)
	if r := s.post(t, "/videocall/close", "closeRoomId", "nosuchroom"); r.Code != 2002 {
		t.Fatalf("close of an unknown room: %+v", r)
	}
}

func TestCoStreamingBadInput(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	var a roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &a)
	cases := []struct {
		path string
		body string
		code int
	}{
		{"/videocall/invite", `{}`, 20001},
		{"/videocall/invite", `{"inviterUid":1,"inviteeUid":999,"liveRoomId":"` + a.RoomID + `","inviterType":2}`, 2002},
		{"/videocall/invite", `{"inviterUid":1,"inviteeUid":1,"liveRoomId":"nosuchroom","inviterType":2}`, 2003},
		{"/videocall/invite", `{"inviterUid":1,"inviteeUid":1,"liveRoomId":"` + a.RoomID + `","inviterType":3}`, 400},
		{"/videocall/invite", `{"inviterUid":1,"inviteeUid":1,"liveRoomId":"` + a.RoomID + `","inviterType":2,"type":"grid"}`, 400},
		{"/videocall/feedback", `{}`, 20001},
		{"/videocall/feedback", `{"status":7,"inviterUid":1,"inviteeUid":1,"inviterType":2,"inviteeType":2}`, 400},
		{"/videocall/feedback", `{"status":1,"inviterUid":998,"inviteeUid":999,"inviterType":2,"inviteeType":1}`, 2002},
		{"/videocall/feedback", `{"status":1,"inviterUid":1,"inviteeUid":1,"inviterType":2}`, 20001},
		{"/videocall/close", `{}`, 20001},
		{"/videocall/close", `{"closeRoomId":"nosuchroom","notifiedRoomId":"` + a.RoomID + `"}`, 2002},
		{"/videocall/close", `{"closeRoomId":"` + a.RoomID + `","notifiedRoomId":"nosuchroom"}`, 2002},
	}
	for _, c := range cases {
		if r := s.do(t, "POST", c.path, "application/json", c.body); r.Code != c.code || r.Status != 200 {
			t.Errorf("%s %s: HTTP %d code %d %q, want code %d", c.path, c.body, r.Status, r.Code, r.Message, c.code)
		}
	}
	var rooms []roomObject
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &rooms)
	if len(rooms) != 1 {
		t.Fatalf("bad co-streaming requests left rooms behind: %+v", rooms)
	}
}

// Aliyun's MixResult callback with unencoded spaces, sent over raw TCP to the real server.
func TestMixResultCallbackWithSpacesOverRawTCP(t *testing.T) {
	s := newServer(t, serverOpts{})
	a, b := twoHosts(t, s)
	mustOK(t, s.post(t, "/videocall/feedback", "status", 1, "inviterUid", 1, "inviteeUid", 2, "inviterType", 2, "inviteeType", 2), nil)
	sub := s.subscribe(t, "topic="+a.RoomID)
	target := "/ali/mix/status/notify?MainMixDomain=play.example&MainMixApp=DemoApp&MainMixStream=" + a.RoomID +
		"&MixDomain=play.example&MixApp=DemoApp&MixStream=" + b.RoomID +
		"&MixType=channel&MixTemplate=picture_in_picture&Event=MixResult&Code=MainStreamNotExist&Message=main stream not exist, please check"
	for range 3 { // at-least-once delivery: the same callback three times
		if code := rawGet(s.Addr, target); code != 200 {
			t.Fatalf("raw callback answered %d", code)
		}
	}
	checkFrame(t, sub.next(), 16, a.RoomID, 5, map[string]any{"mainMixRoomId": a.RoomID, "mixRoomId": b.RoomID,
		"code": "MainStreamNotExist", "message": "main stream not exist, please check", "event": "MixResult"})
	mustOK(t, s.post(t, "/live/comment", "uid", 1, "roomId", a.RoomID, "comment", "next"), nil)
	if f := sub.next(); f.Message.Type != 6 {
		t.Fatalf("a repeated MixResult was pushed again: got type %d", f.Message.Type)
	}
}

// A MixResult for rooms that are in no call still sets their mixedStatus and reaches the
// host rooms' clients (docs/api.md, Callbacks), once per distinct callback.
func TestMixResultOutsideACall(t *testing.T) {
	s := newServer(t, serverOpts{})
	a, b := twoHosts(t, s)
	subA, subB := s.subscribe(t, "topic="+a.RoomID), s.subscribe(t, "topic="+b.RoomID)
	q := "/ali/mix/status/notify?MainMixStream=" + a.RoomID + "&MixStream=" + b.RoomID + "_mix&Event=MixResult&Code=Success&Message=ok"
	for range 2 {
		mustOK(t, s.get(t, q), nil)
	}
	want := map[string]any{"mainMixRoomId": a.RoomID, "mixRoomId": b.RoomID, "code": "Success"}
	checkFrame(t, subA.next(), 16, a.RoomID, 5, want)
	checkFrame(t, subB.next(), 16, b.RoomID, 5, want)
	var raw []map[string]any
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &raw)
	for _, r := range raw {
		if r["mixedStatus"] != 1.0 {
			t.Fatalf("room %v: mixedStatus %v, want 1", r["roomId"], r["mixedStatus"])
		}
	}
	// The repeat pushed nothing: the next frame on A is a comment.
	mustOK(t, s.post(t, "/live/comment", "uid", 1, "roomId", a.RoomID, "comment", "next"), nil)
	if f := subA.next(); f.Message.Type != 6 {
		t.Fatalf("a repeated MixResult was pushed again: type %d", f.Message.Type)
	}
}
