package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"testing"
	"time"
)

// peerSeeds is one well-formed envelope of every event a peer may send, the fuzzer's
// starting points (testdata/fuzz/FuzzServePeer holds them and what runs found since). "R"
// stands for the room the fuzzer's node owns.
var peerSeeds = []struct{ kind, id, from, event, data string }{
	{PeerRoom, "R", "", "play", `{"user":{"id":"7","name":"v"},"known":true}`},
	{PeerRoom, "R", "", "comment", `{"user":{"id":"7","name":"v"},"known":true,"text":"hi"}`},
	{PeerRoom, "R", "", "like", `{"user":{"id":"7","name":"v"},"known":true}`},
	{PeerRoom, "R", "", "audienceLeave", `{"UID":"7"}`},
	{PeerRoom, "R", "", "leave", `{}`},
	{PeerRoom, "R", "", "publish", `{}`},
	{PeerRoom, "R", "", "publishDone", `{}`},
	{PeerRoom, "R", "", "mixAvailable", `{}`},
	{PeerRoom, "R", "", "queryAudience", `{}`},
	{PeerRoom, "R", "", "queryRoom", `{}`},
	{PeerCall, "c1", "", "queryCall", `{}`},
	{PeerRoom, "R", "", "roomMixResult", `{"Notice":{"MixStream":"R_mix","Code":"0"}}`},
	{PeerRoom, "R", "", "joinCall", `{"CallID":"c1","HostRooms":["R"]}`},
	{PeerRoom, "R", "", "leaveCall", `{"CallID":"c1","Peer":"7"}`},
	{PeerRoom, "R", "", "callFlags", `{"CallID":"c1","Mixed":true,"MixedStatus":1}`},
	{PeerRoom, "R", "", "announceCall", `{"CallID":"c1","Topic":"R","Tag":"7","Importance":4,"Type":2,"Data":"{\"status\":1}"}`},
	{PeerCall, "c1", "R", "callMixReady", `{"RoomID":"R"}`},
	{PeerCall, "c1", "", "mixResult", `{"Notice":{"MixStream":"R_mix","Code":"0"}}`},
	{PeerCall, "c1", "", "mixEvent", `{"MixID":"m","Event":"start"}`},
	{PeerCall, "c1", "R", "callClose", `{"RoomID":"R","RoomEnded":true}`},
	{PeerCall, "c1", "", "startAnswered", `{"Leg":1,"Attempt":1,"Streams":["a"],"ID":"x"}`},
	{PeerCall, "c1", "", "stopAnswered", `{"Leg":1,"Attempt":1,"Code":3000,"Message":"no"}`},
	{PeerRoomCall, "R", "", "queryCall", `{}`},
}

// peerFuzzNode is one node of an in-memory cluster that owns a fresh room per input.
type peerFuzzNode struct {
	eng  *Engine
	host User
}

func newPeerFuzzNode(tb testing.TB) *peerFuzzNode {
	c := newMemCluster(tb)
	eng := c.start("n1")
	host, err := eng.Login(bg, "host")
	if err != nil {
		tb.Fatal(err)
	}
	return &peerFuzzNode{eng: eng, host: host}
}

// serve runs one envelope as a signed peer's request is run: checked, then served. A check
// that passes must never make the node wait out its timeout (nothing may wait on an answer
// that cannot come), and nothing may panic.
func (n *peerFuzzNode) serve(t testing.TB, kind, id, from, event string, data []byte) {
	room, err := n.eng.CreateRoom(bg, n.host.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if id == "R" {
		id = room.ID
	}
	if from == "R" {
		from = room.ID
	}
	data = bytes.ReplaceAll(data, []byte(`"R"`), []byte(`"`+room.ID+`"`))
	req := PeerRequest{Kind: kind, ID: id, From: from, Event: event, Data: json.RawMessage(data)}
	if CheckPeerRequest(req) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	rep := n.eng.ServePeer(ctx, req)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("%s %s %s waited %v: %+v", kind, event, data, d, rep)
	}
}

// FuzzServePeer runs envelopes of every event kind through a node: no panic, no request
// left waiting, no unfenced write (the in-memory cluster fails on one).
func FuzzServePeer(f *testing.F) {
	for _, s := range peerSeeds {
		f.Add(s.kind, s.id, s.from, s.event, []byte(s.data))
	}
	n := newPeerFuzzNode(f)
	f.Fuzz(func(t *testing.T, kind, id, from, event string, data []byte) {
		n.serve(t, kind, id, from, event, data)
	})
}

// Every seed envelope served leaves no goroutine behind.
func TestPeerEnvelopesLeaveNoGoroutines(t *testing.T) {
	n := newPeerFuzzNode(t)
	for _, s := range peerSeeds { // warm up: the actors and timers of a room exist once
		n.serve(t, s.kind, s.id, s.from, s.event, []byte(s.data))
	}
	before := runtime.NumGoroutine()
	for range 5 {
		for _, s := range peerSeeds {
			n.serve(t, s.kind, s.id, s.from, s.event, []byte(s.data))
		}
	}
	waitFor(t, "goroutines back to their number", func() bool { return runtime.NumGoroutine() <= before+5 })
}
