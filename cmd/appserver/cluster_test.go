package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// listed is one room of /live/list as the tests read it.
type listed struct {
	RoomID      string `json:"roomId"`
	Status      int    `json:"status"`
	IsMixReady  bool   `json:"isMixReady"`
	IsMixed     bool   `json:"isMixed"`
	MixedStatus int    `json:"mixedStatus"`
}

func listAll(n *clNode) (map[string]listed, error) {
	data, err := n.try("/live/list", url.Values{"roomId": {"-1"}})
	if err != nil {
		return nil, err
	}
	var rooms []listed
	if err := json.Unmarshal(data, &rooms); err != nil {
		return nil, err
	}
	out := map[string]listed{}
	for _, r := range rooms {
		out[r.RoomID] = r
	}
	return out, nil
}

// Three nodes serve as one: ids are unique whichever node logs in; a room created on one
// node is played, commented and called from the others; duplicate callbacks on two nodes
// have one effect; subscribers on different nodes get the same frames with the same seqs;
// a push is never ahead of the read model of the node it arrives on; the room's end
// reaches every node's subscribers in order.
func TestClusterServesAsOne(t *testing.T) {
	c := newTestCluster(t, 3*time.Second, "APPSERVER_LIVE_TOPICDELETEDELAY=1s")
	nodes := c.start("n1", "n2", "n3")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	// 300 logins spread over the nodes, 12 at a time: 300 different ids.
	ids := make([]string, 300)
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 12; w++ {
		wg.Go(func() {
			for i := range work {
				data, err := nodes[i%3].try("/login", url.Values{"name": {fmt.Sprint("user", i)}})
				if assert.NoError(t, err) {
					ids[i] = field(t, data, "id")
				}
			}
		})
	}
	for i := range ids {
		work <- i
	}
	close(work)
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		require.False(t, seen[id], "id %s handed out twice", id)
		seen[id] = true
	}

	alice, bob, carol := ids[0], ids[1], ids[2]
	roomA := field(t, n2.call(t, "/live/create", url.Values{"uid": {alice}, "desc": {"on n2"}}), "roomId")
	roomB := field(t, n3.call(t, "/live/create", url.Values{"uid": {bob}}), "roomId")
	sub1, sub3 := subscribe(t, n1, roomA, 0), subscribe(t, n3, roomA, 0)

	n3.call(t, "/live/play", url.Values{"roomId": {roomA}, "uid": {carol}})
	var audience []struct{ ID string }
	require.NoError(t, json.Unmarshal(n1.call(t, "/im/room/users", url.Values{"roomId": {roomA}}), &audience))
	require.Len(t, audience, 1)
	assert.Equal(t, carol, audience[0].ID)

	// The same publish callback delivered to two nodes at once: one type 9.
	var cb sync.WaitGroup
	for _, n := range []*clNode{n1, n3} {
		cb.Go(func() { n.get(t, "/ali/stream/notify?action=publish&id="+roomA) })
	}
	cb.Wait()
	sub3.waitFrames(t, 5*time.Second, "type 9 on n3", hasType(9, 1))
	// Reacting to the push on n3, a client lists rooms on n3 and sees what it says.
	rooms, err := listAll(n3)
	require.NoError(t, err)
	assert.Equal(t, 1, rooms[roomA].Status, "room A on n3 right after its type 9")

	for i, n := range nodes {
		n.call(t, "/live/comment", url.Values{"roomId": {roomA}, "uid": {carol}, "comment": {fmt.Sprint("hi from ", i)}})
	}
	n2.call(t, "/live/like", url.Values{"roomId": {roomA}, "uid": {carol}})

	// B publishes; both mixes become available (A's twice, on two nodes).
	n2.get(t, "/ali/stream/notify?action=publish&id="+roomB)
	n1.get(t, "/ali/mix/availability/notify?Stream="+roomA+"_mix&Event=MixAvailable")
	n2.get(t, "/ali/mix/availability/notify?Stream="+roomA+"_mix&Event=MixAvailable")
	n3.get(t, "/ali/mix/availability/notify?Stream="+roomB+"_mix&Event=MixAvailable")
	took := eventually(t, time.Second, "both rooms listed on n1", func() error {
		rooms, err := n1.try("/live/list", nil)
		if err != nil || !strings.Contains(string(rooms), roomA) || !strings.Contains(string(rooms), roomB) {
			return fmt.Errorf("list: %s %v", rooms, err)
		}
		return nil
	})
	t.Logf("a change acknowledged on another node was listed on n1 after %v", took)

	// alice (room on n2) invites bob (room on n3) through n2; bob accepts through n1.
	n2.call(t, "/videocall/invite", url.Values{"inviterUid": {alice}, "inviteeUid": {bob}, "liveRoomId": {roomA},
		"inviterType": {"2"}, "type": {"side_by_side"}})
	fb := n1.call(t, "/videocall/feedback", url.Values{"status": {"1"}, "inviterUid": {alice}, "inviteeUid": {bob},
		"inviterType": {"2"}, "inviteeType": {"2"}, "type": {"side_by_side"}})
	assert.Equal(t, roomA, field(t, fb, "inviterRoomId"))
	assert.Equal(t, roomB, field(t, fb, "inviteeRoomId"))
	sub1.waitFrames(t, 10*time.Second, "mix succeeded (5) on n1", hasType(5, 1))
	eventually(t, time.Second, "both rooms mixed on n3", func() error {
		rooms, err := listAll(n3)
		if err != nil || !rooms[roomA].IsMixed || !rooms[roomB].IsMixed {
			return fmt.Errorf("rooms %v %v", rooms, err)
		}
		return nil
	})
	// A second accept of the same rooms, through another node, is refused.
	again := n3.do("/videocall/feedback", url.Values{"status": {"1"}, "inviterUid": {alice}, "inviteeUid": {bob},
		"inviterType": {"2"}, "inviteeType": {"2"}, "type": {"side_by_side"}})
	assert.Equal(t, 3020, again.code, "second accept: %s", again.message)

	n3.call(t, "/videocall/close", url.Values{"closeRoomId": {roomA}})
	sub3.waitFrames(t, 5*time.Second, "call ended (4) on n3", hasType(4, 1))
	n1.call(t, "/live/leave", url.Values{"roomId": {roomA}})
	for _, s := range []*subscriber{sub1, sub3} {
		assert.Equal(t, websocket.StatusNormalClosure, s.waitClosed(t, 10*time.Second))
	}

	f1, f3 := sub1.snapshot(), sub3.snapshot()
	requireStrictSeqs(t, f1, "n1")
	assert.Equal(t, describeFrames(f1), describeFrames(f3), "subscribers on n1 and n3 got different frames")
	assert.Equal(t, 1, countType(f1, 9), "type 9 of a publish callback sent to two nodes")
	assert.Equal(t, 3, countType(f1, 6), "comments")
	assert.Equal(t, 1, countType(f1, 7), "likes")
	require.NotEmpty(t, f1)
	assert.Equal(t, 8, f1[len(f1)-1].Message.Type, "the last frame is the room's end")

	info, err := n2.admin(t, "")
	require.NoError(t, err)
	assert.Equal(t, "n2", info.Node)
	assert.Len(t, info.Members, 3)
	metrics := metricsText(t, n1)
	for _, m := range []string{"roomengine_cluster_members 3", `roomengine_owned_entities{kind="room"}`,
		"roomengine_ownership_takeovers_total", `roomengine_fenced_writes_total{result="ok"}`,
		"roomengine_push_feed_lag_seconds"} {
		assert.Contains(t, metrics, m)
	}
}
