package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
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
	sub3.waitFrames(t, 5*time.Second, "call ended (4) and its mix stopped (15) on n3",
		func(fs []clFrame) bool { return countType(fs, 4) == 1 && countType(fs, 15) == 1 })
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
		"roomengine_push_feed_lag_seconds", "roomengine_push_feed_topics"} {
		assert.Contains(t, metrics, m)
	}
	// Interest: n1 and n3 had subscribers and received the room's pushes by pub/sub; n2,
	// which served requests but had no subscriber, received none.
	assert.NotContains(t, metrics, "roomengine_push_feed_received_total 0\n")
	assert.Contains(t, metricsText(t, n2), "roomengine_push_feed_received_total 0\n")
}

// kill -9 of the node that owns a room, a pending deadline and a call: the room answers
// from the other nodes within memberTTL + 2 s with nothing acknowledged lost, the deadline
// fires once at most memberTTL + 2 s late, and the call can still be closed.
func TestClusterNodeLoss(t *testing.T) {
	const ttl, noPublish = 3 * time.Second, 6 * time.Second
	c := newTestCluster(t, ttl, "APPSERVER_LIVE_NOPUBLISHTIMEOUT="+noPublish.String(), "APPSERVER_LIVE_TOPICDELETEDELAY=1s")
	nodes := c.start("n1", "n2", "n3")
	victim, n2, n3 := nodes[0], nodes[1], nodes[2]
	login := func(n *clNode, name string) string {
		return field(t, n.call(t, "/login", url.Values{"name": {name}}), "id")
	}
	host, guest, viewer, late := login(n2, "host"), login(n3, "guest"), login(n2, "viewer"), login(n3, "late")

	// Rooms created through the victim are owned by it.
	roomA := field(t, victim.call(t, "/live/create", url.Values{"uid": {host}, "desc": {"kept"}}), "roomId")
	roomB := field(t, victim.call(t, "/live/create", url.Values{"uid": {guest}}), "roomId")
	victim.call(t, "/live/play", url.Values{"roomId": {roomA}, "uid": {viewer}})
	subA := subscribe(t, n2, roomA, 0)
	for _, r := range []string{roomA, roomB} {
		victim.get(t, "/ali/stream/notify?action=publish&id="+r)
		victim.get(t, "/ali/mix/availability/notify?Stream="+r+"_mix&Event=MixAvailable")
	}
	victim.call(t, "/videocall/feedback", url.Values{"status": {"1"}, "inviterUid": {host}, "inviteeUid": {guest},
		"inviterType": {"2"}, "inviteeType": {"2"}, "type": {"side_by_side"}})
	createdAfter := time.Now()
	roomD := field(t, victim.call(t, "/live/create", url.Values{"uid": {late}}), "roomId")
	createdBefore := time.Now()
	for _, r := range []string{roomA, roomD} {
		require.Equal(t, victim.name, c.ownerOf(n2, r).name, "room %s placed on its creator", r)
	}
	subD := subscribe(t, n3, roomD, 0)
	subA.waitFrames(t, 10*time.Second, "mix succeeded before the kill", hasType(5, 1))

	victim.signal(t, 9)
	killed := time.Now()
	// A play writes the audience, which only the room's owner does (a comment is served by
	// any node): it answers once another node has taken the room over.
	took := eventually(t, ttl+2*time.Second, "a play of the dead node's room through n3", func() error {
		_, err := n3.try("/live/play", url.Values{"roomId": {roomA}, "uid": {viewer}})
		return err
	})
	t.Logf("room answered from another node %v after kill -9", took.Round(time.Millisecond))
	assert.NotEqual(t, victim.name, c.ownerOf(n2, roomA).name)

	var audience []struct{ ID string }
	require.NoError(t, json.Unmarshal(n2.call(t, "/im/room/users", url.Values{"roomId": {roomA}}), &audience))
	require.Len(t, audience, 1, "audience after the takeover")
	assert.Equal(t, viewer, audience[0].ID)
	rooms, err := listAll(n2)
	require.NoError(t, err)
	assert.True(t, rooms[roomA].IsMixed && rooms[roomB].IsMixed, "the call's rooms after the takeover: %v", rooms)

	// The no-publish deadline armed by the dead node fires once, on time or at most
	// memberTTL + 2 s after the kill when it fell inside the outage.
	fs := subD.waitFrames(t, noPublish+ttl+5*time.Second, "D's expiry", hasType(8, 1))
	fired := time.Now()
	deadline := createdAfter.Add(noPublish)
	latest := createdBefore.Add(noPublish)
	if k := killed.Add(ttl); k.After(latest) {
		latest = k
	}
	assert.False(t, fired.Before(deadline.Add(-100*time.Millisecond)), "fired %v before its deadline", deadline.Sub(fired))
	assert.False(t, fired.After(latest.Add(2*time.Second)), "fired %v after its latest time", fired.Sub(latest))
	assert.Equal(t, websocket.StatusNormalClosure, subD.waitClosed(t, 5*time.Second))
	assert.Equal(t, 1, countType(subD.snapshot(), 8), "D ended once: %s", describeFrames(fs))

	// The call resumes on its new owner: closing it through n3 ends it for both rooms.
	n3.call(t, "/videocall/close", url.Values{"closeRoomId": {roomA}})
	subA.waitFrames(t, 5*time.Second, "call ended (4)", hasType(4, 1))
	eventually(t, time.Second, "rooms no longer mixed", func() error {
		rooms, err := listAll(n3)
		if err != nil || rooms[roomA].IsMixed || rooms[roomB].IsMixed {
			return fmt.Errorf("rooms %v %v", rooms, err)
		}
		return nil
	})
	requireStrictSeqs(t, subA.snapshot(), "room A")
}

// SIGSTOP of a room's owner for longer than memberTTL, then SIGCONT: the others take the
// room over; the resumed node applies nothing and pushes nothing for it (every comment
// reaches subscribers exactly once, seqs strictly increase) and exits non-zero for its
// supervisor to restart it.
func TestClusterNodeFreeze(t *testing.T) {
	const ttl = 2 * time.Second
	c := newTestCluster(t, ttl)
	nodes := c.start("n1", "n2", "n3")
	victim, n2, n3 := nodes[0], nodes[1], nodes[2]
	host := field(t, n2.call(t, "/login", url.Values{"name": {"host"}}), "id")
	viewer := field(t, n3.call(t, "/login", url.Values{"name": {"viewer"}}), "id")
	room := field(t, victim.call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	require.Equal(t, victim.name, c.ownerOf(n2, room).name)
	sub := subscribe(t, n2, room, 0)
	acked, tries := 0, 0
	comment := func(n *clNode) error {
		tries++
		text := fmt.Sprintf("c%d via %s", tries, n.name)
		_, err := n.try("/live/comment", url.Values{"roomId": {room}, "uid": {viewer}, "comment": {text}})
		t.Logf("%s: %v", text, err)
		if err == nil {
			acked++
		}
		return err
	}
	require.NoError(t, comment(victim))
	require.NoError(t, comment(n3))

	victim.signal(t, 19) // SIGSTOP
	// A play writes the audience, which only the room's owner does (comments are served by
	// any node): it answers once another node has taken the frozen owner's room over.
	took := eventually(t, ttl+2*time.Second, "a play through n3 while the owner is frozen", func() error {
		_, err := n3.try("/live/play", url.Values{"roomId": {room}, "uid": {viewer}})
		return err
	})
	require.NoError(t, comment(n3))
	t.Logf("frozen owner's room answered from another node after %v", took.Round(time.Millisecond))
	for range 3 {
		require.NoError(t, comment(n2))
	}
	victim.signal(t, 18) // SIGCONT
	// Right after it resumes, the old owner must not act for the room: it refuses (503) or
	// forwards; either way the comment is delivered once if it is acknowledged.
	a := victim.do("/live/comment", url.Values{"roomId": {room}, "uid": {viewer}, "comment": {"after resume"}})
	t.Logf("the resumed node answered %d %s (%v)", a.code, a.message, a.err)
	if a.err == nil && a.code == 200 {
		acked++
	} else if a.err == nil {
		assert.Equal(t, 503, a.code, "the resumed node answered %d %s", a.code, a.message)
	}
	code := victim.exited(t, 10*time.Second)
	assert.NotEqual(t, 0, code, "a node declared dead exits non-zero")
	assert.Contains(t, victim.log.String(), "declared dead")

	require.NoError(t, comment(n3))
	fs := sub.waitFrames(t, 5*time.Second, "every acknowledged comment", hasType(6, acked))
	requireStrictSeqs(t, fs, "subscriber on n2")
	assert.Equal(t, acked, countType(fs, 6), "comments delivered: %s", describeFrames(fs))
}

// SIGTERM: the node finishes what it has, hands its rooms over and leaves with status 0;
// requests to the other nodes keep succeeding meanwhile, without waiting for memberTTL; its
// WebSocket clients get 1001 and get what they missed with since on another node.
func TestClusterGracefulLeave(t *testing.T) {
	const ttl = 5 * time.Second // long, so a handover that waited for it would show
	c := newTestCluster(t, ttl)
	nodes := c.start("n1", "n2", "n3")
	leaver, n2, n3 := nodes[0], nodes[1], nodes[2]
	viewer := field(t, n2.call(t, "/login", url.Values{"name": {"viewer"}}), "id")
	var rooms []string
	for i := range 3 {
		host := field(t, leaver.call(t, "/login", url.Values{"name": {fmt.Sprint("host", i)}}), "id")
		rooms = append(rooms, field(t, leaver.call(t, "/live/create", url.Values{"uid": {host}}), "roomId"))
	}
	onLeaver, onN2 := subscribe(t, leaver, rooms[0], 0), subscribe(t, n2, rooms[0], 0)

	// Two clients comment on the leaver's rooms through the other nodes, before, during and
	// after the leave: paced (a comment every 5 ms each, so they outlast the leave) and
	// bounded in count and time.
	var (
		mu       sync.Mutex
		failures []string
		slowest  time.Duration
		sent     int
		acked0   int // acknowledged comments on rooms[0]
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, n := range []*clNode{n2, n3} {
		wg.Go(func() {
			pace := time.NewTicker(5 * time.Millisecond)
			defer pace.Stop()
			for i := 0; i < 6000; i++ {
				select {
				case <-stop:
					return
				case <-pace.C:
				}
				start := time.Now()
				_, err := n.try("/live/comment", url.Values{"roomId": {rooms[i%3]}, "uid": {viewer}, "comment": {fmt.Sprint(w, "-", i)}})
				d := time.Since(start)
				mu.Lock()
				sent++
				slowest = max(slowest, d)
				if err != nil {
					failures = append(failures, err.Error())
				} else if i%3 == 0 {
					acked0++
				}
				mu.Unlock()
			}
		})
	}
	onN2.waitFrames(t, 10*time.Second, "comments flowing", hasType(6, 20))
	leaver.signal(t, 15) // SIGTERM
	left := time.Now()
	assert.Equal(t, websocket.StatusGoingAway, onLeaver.waitClosed(t, 20*time.Second), "the leaver's WebSocket client")
	assert.Equal(t, 0, leaver.exited(t, 20*time.Second), "exit status after SIGTERM\n%s", leaver.log)
	t.Logf("the node left %v after SIGTERM", time.Since(left).Round(time.Millisecond))
	for _, r := range rooms {
		assert.NotEqual(t, leaver.name, c.ownerOf(n3, r).name)
	}
	onN2.waitFrames(t, 10*time.Second, "comments after the leave", hasType(6, countType(onN2.snapshot(), 6)+20))
	close(stop)
	wg.Wait()
	mu.Lock()
	assert.Empty(t, failures, "requests failed during the leave (%d sent)", sent)
	t.Logf("%d comments, slowest %v during the leave", sent, slowest.Round(time.Millisecond))
	assert.Less(t, slowest, ttl, "a request waited as long as memberTTL: the handover was not immediate")
	mu.Unlock()

	// The leaver's client reconnects to n3 with since: it gets exactly what it missed.
	before := onLeaver.snapshot()
	require.NotEmpty(t, before)
	all := onN2.waitFrames(t, 10*time.Second, "every acknowledged comment on n2", hasType(6, acked0))
	requireStrictSeqs(t, all, "subscriber on n2")
	assert.Equal(t, acked0, countType(all, 6), "each acknowledged comment once")
	last := before[len(before)-1].Seq
	again := subscribe(t, n3, rooms[0], last)
	var missed []clFrame
	for _, f := range all {
		if f.Seq > last {
			missed = append(missed, f)
		}
	}
	got := again.waitFrames(t, 10*time.Second, "replay on n3", func(fs []clFrame) bool { return len(fs) >= len(missed) })
	assert.Equal(t, describeFrames(missed), describeFrames(got), "replay with since=%d on another node", last)
}

// Of 20 concurrent accepts of one host room sent to three nodes exactly one wins, the others
// get 3020 and leave nothing behind; 1,000 comments sent through all three nodes at once
// reach a subscriber on every node, all of them, in one order with the same seqs.
func TestClusterConcurrentAcceptsAndOneOrder(t *testing.T) {
	c := newTestCluster(t, 3*time.Second)
	nodes := c.start("n1", "n2", "n3")
	host := field(t, nodes[0].call(t, "/login", url.Values{"name": {"host"}}), "id")
	room := field(t, nodes[1].call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	const n = 20
	viewers := make([]string, n)
	for i := range viewers {
		viewers[i] = field(t, nodes[i%3].call(t, "/login", url.Values{"name": {fmt.Sprint("v", i)}}), "id")
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i, v := range viewers {
		wg.Go(func() {
			a := nodes[i%3].do("/videocall/feedback", url.Values{"status": {"1"}, "inviterUid": {host}, "inviteeUid": {v},
				"inviterType": {"2"}, "inviteeType": {"1"}, "type": {"picture_in_picture"}})
			codes[i] = a.code
			if a.err != nil {
				codes[i] = -1
			}
		})
	}
	wg.Wait()
	wins := 0
	for _, code := range codes {
		if code == 200 {
			wins++
		} else {
			assert.Equal(t, 3020, code)
		}
	}
	require.Equal(t, 1, wins, "accepts admitted: codes %v", codes)
	rooms, err := listAll(nodes[2])
	require.NoError(t, err)
	assert.Len(t, rooms, 2, "the host's room and one co-stream room: %v", rooms)
	nodes[2].call(t, "/videocall/close", url.Values{"closeRoomId": {room}})
	nodes[0].call(t, "/videocall/feedback", url.Values{"status": {"1"}, "inviterUid": {host}, "inviteeUid": {viewers[0]},
		"inviterType": {"2"}, "inviteeType": {"1"}, "type": {"picture_in_picture"}})
	nodes[1].call(t, "/videocall/close", url.Values{"closeRoomId": {room}})

	// One topic, three publishing nodes, three subscribers.
	subs := []*subscriber{subscribe(t, nodes[0], room, 0), subscribe(t, nodes[1], room, 0), subscribe(t, nodes[2], room, 0)}
	const comments = 1000
	work := make(chan int)
	var failed sync.Map
	for w := 0; w < 12; w++ {
		wg.Go(func() {
			for i := range work {
				if _, err := nodes[i%3].try("/live/comment", url.Values{"roomId": {room}, "uid": {viewers[1]}, "comment": {fmt.Sprint(i)}}); err != nil {
					failed.Store(i, err)
				}
			}
		})
	}
	for i := range comments {
		work <- i
	}
	close(work)
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("comment %v: %v", k, v); return true })
	var first []clFrame
	for i, s := range subs {
		fs := s.waitFrames(t, 20*time.Second, fmt.Sprint("1000 comments on n", i+1), hasType(6, comments))
		requireStrictSeqs(t, fs, fmt.Sprint("n", i+1))
		assert.Equal(t, comments, countType(fs, 6))
		texts := map[string]bool{}
		for _, f := range fs {
			if f.Message.Type == 6 {
				var d struct{ Comment string }
				require.NoError(t, json.Unmarshal(f.Message.Data, &d))
				texts[d.Comment] = true
			}
		}
		assert.Len(t, texts, comments, "distinct comments on n%d", i+1)
		if i == 0 {
			first = fs
			continue
		}
		assert.Empty(t, firstDifference(onlyType(first, 6), onlyType(fs, 6)), "n%d and n1 got comments in other orders", i+1)
	}

	// /reset through one node: every node forgets the rooms, also the one that owned them.
	req, _ := http.NewRequest("POST", nodes[0].base+"/reset", nil)
	req.Header.Set("Authorization", "Bearer "+clusterAdminToken)
	res, err := client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	for _, n := range nodes {
		eventually(t, time.Second, "no room left on "+n.name, func() error {
			if rooms, err := listAll(n); err != nil || len(rooms) != 0 {
				return fmt.Errorf("rooms %v %v", rooms, err)
			}
			return nil
		})
	}
	a := nodes[1].do("/live/comment", url.Values{"roomId": {room}, "uid": {viewers[1]}, "comment": {"after reset"}})
	assert.NotEqual(t, 200, a.code, "a comment on a room wiped by /reset")
}

func onlyType(fs []clFrame, typ int) []clFrame {
	var out []clFrame
	for _, f := range fs {
		if f.Message.Type == typ {
			out = append(out, f)
		}
	}
	return out
}

// firstDifference describes where two frame lists part (same seq, type and data), or "".
func firstDifference(a, b []clFrame) string {
	for i := range min(len(a), len(b)) {
		if a[i].Seq != b[i].Seq || a[i].Message.Type != b[i].Message.Type || string(a[i].Message.Data) != string(b[i].Message.Data) {
			return fmt.Sprintf("frame %d: %d %s vs %d %s", i, a[i].Seq, a[i].Message.Data, b[i].Seq, b[i].Message.Data)
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d frames vs %d", len(a), len(b))
	}
	return ""
}

// Every node killed with kill -9 and started again under the same names: the nodes rejoin
// (a name whose holder died is free again after one memberTTL), and rooms, audiences, the
// id counter and a pending deadline are all there.
func TestClusterColdRestart(t *testing.T) {
	const ttl, noPublish = 2 * time.Second, 12 * time.Second
	c := newTestCluster(t, ttl, "APPSERVER_LIVE_NOPUBLISHTIMEOUT="+noPublish.String(), "APPSERVER_LIVE_TOPICDELETEDELAY=1s")
	nodes := c.start("n1", "n2", "n3")
	host := field(t, nodes[0].call(t, "/login", url.Values{"name": {"host"}}), "id")
	viewer := field(t, nodes[1].call(t, "/login", url.Values{"name": {"viewer"}}), "id")
	waiting := field(t, nodes[2].call(t, "/login", url.Values{"name": {"waiting"}}), "id")
	live := field(t, nodes[1].call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	nodes[2].call(t, "/live/play", url.Values{"roomId": {live}, "uid": {viewer}})
	nodes[0].get(t, "/ali/stream/notify?action=publish&id="+live)
	createdAfter := time.Now()
	pending := field(t, nodes[2].call(t, "/live/create", url.Values{"uid": {waiting}}), "roomId")
	createdBefore := time.Now()

	for _, n := range nodes {
		n.signal(t, 9)
		_ = n.cmd.Wait()
	}
	restarted := c.start("n1", "n2", "n3")
	sub := subscribe(t, restarted[0], pending, 0)
	rooms, err := listAll(restarted[1])
	require.NoError(t, err)
	assert.Equal(t, 1, rooms[live].Status, "the publishing room after the restart")
	assert.Equal(t, 0, rooms[pending].Status, "the waiting room after the restart")
	var audience []struct{ ID string }
	require.NoError(t, json.Unmarshal(restarted[2].call(t, "/im/room/users", url.Values{"roomId": {live}}), &audience))
	require.Len(t, audience, 1)
	assert.Equal(t, viewer, audience[0].ID)
	next := field(t, restarted[0].call(t, "/login", url.Values{"name": {"after"}}), "id")
	assert.Equal(t, fmt.Sprint(idNum(t, waiting)+1), next, "ids continue without reuse or gap")

	sub.waitFrames(t, noPublish+10*time.Second, "the pending room's expiry", hasType(8, 1))
	fired := time.Now()
	assert.False(t, fired.Before(createdAfter.Add(noPublish-100*time.Millisecond)), "expired early")
	assert.False(t, fired.After(createdBefore.Add(noPublish+2*time.Second)), "expired %v late", fired.Sub(createdBefore.Add(noPublish)))
}

// A second process under the name of a live node refuses to start, with one line.
func TestClusterNodeNameTaken(t *testing.T) {
	c := newTestCluster(t, time.Second)
	c.start("n1")
	cmd := exec.Command(c.bin)
	cmd.Env = append(os.Environ(), append(c.redisEnv(), "APPSERVER_CLUSTER_ENABLED=true",
		"APPSERVER_CLUSTER_NODE=n1", "APPSERVER_CLUSTER_MEMBERTTL=1s", "APPSERVER_IP=127.0.0.1",
		fmt.Sprint("APPSERVER_PORT=", freePort(t)), "APPSERVER_LOG_LEVEL=error")...)
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "a second n1 started:\n%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 1, "want one line:\n%s", out)
	assert.Contains(t, lines[0], "cluster.node")
}

// ready reads a node's /readyz: its HTTP status and message.
func (n *clNode) ready() (int, string, error) {
	res, err := client.Get(n.base + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	var env struct{ Message string }
	err = json.NewDecoder(res.Body).Decode(&env)
	return res.StatusCode, env.Message, err
}

// Redis gone under a cluster. An outage shorter than memberTTL is ridden out: /readyz is
// 503 while Redis is away, then every node is a member again and what was acknowledged is
// there. An outage longer than memberTTL lets every member key expire, as a Redis failover
// that takes that long does: each node stops acting (its lease) while Redis is away, and
// when it is back each rejoins under its own identity (redis.failoverGrace), since nothing
// it owned was taken over meanwhile; no node exits. An outage longer than the grace ends
// every membership: each node exits non-zero for its supervisor, and nodes started again
// under the same names find everything acknowledged.
func TestClusterRedisOutage(t *testing.T) {
	const ttl, grace = 3 * time.Second, 6 * time.Second
	c := newTestCluster(t, ttl, "APPSERVER_REDIS_FAILOVERGRACE="+grace.String())
	nodes := c.start("n1", "n2", "n3")
	host := field(t, nodes[0].call(t, "/login", url.Values{"name": {"host"}}), "id")
	viewer := field(t, nodes[1].call(t, "/login", url.Values{"name": {"viewer"}}), "id")
	room := field(t, nodes[1].call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	nodes[2].call(t, "/live/play", url.Values{"roomId": {room}, "uid": {viewer}})
	nodes[0].get(t, "/ali/stream/notify?action=publish&id="+room)

	// A short outage.
	c.redis.Stop()
	eventually(t, ttl, "n1 not ready while Redis is away", func() error {
		if code, msg, err := nodes[0].ready(); err != nil || code == 200 {
			return fmt.Errorf("readyz %d %s %v", code, msg, err)
		}
		return nil
	})
	c.redis.Restart()
	allReady := func(within time.Duration) {
		t.Helper()
		for _, n := range nodes {
			eventually(t, within, n.name+" ready again", func() error {
				if code, msg, err := n.ready(); err != nil || code != 200 {
					return fmt.Errorf("readyz %d %s %v", code, msg, err)
				}
				return nil
			})
		}
	}
	allReady(ttl)
	comment := func(n *clNode) error {
		_, err := n.try("/live/comment", url.Values{"roomId": {room}, "uid": {viewer}, "comment": {"hi"}})
		return err
	}
	eventually(t, ttl, "a comment through n1 after the short outage", func() error { return comment(nodes[0]) })

	// outage keeps Redis away until every member key has certainly expired, plus extra
	// (the fault's length, like a nemesis' pause: nothing observable marks it while Redis
	// is down), after checking that every node stopped acting.
	outage := func(extra time.Duration) {
		t.Helper()
		c.redis.Stop()
		stopped := time.Now()
		for _, n := range nodes {
			eventually(t, ttl+2*time.Second, n.name+" no longer a member", func() error {
				if _, msg, err := n.ready(); err != nil || !strings.Contains(msg, "not a cluster member") {
					return fmt.Errorf("readyz %s %v", msg, err)
				}
				return nil
			})
		}
		// The lease lapses a fifth of memberTTL before the member key can expire.
		time.Sleep(time.Until(stopped.Add(ttl + extra)))
		c.redis.Restart()
	}

	// Longer than memberTTL, shorter than the grace: every node rejoins.
	before, err := nodes[2].admin(t, room)
	require.NoError(t, err)
	outage(time.Second)
	allReady(grace)
	// The same processes answer (a node that exited would refuse connections).
	for _, n := range nodes {
		eventually(t, ttl, "a comment through "+n.name+" after the failover-long outage", func() error { return comment(n) })
		assert.Contains(t, n.log.String(), "cluster membership restored after Redis came back", n.name)
	}
	info, err := nodes[2].admin(t, room)
	require.NoError(t, err)
	assert.Len(t, info.Members, 3, "members after the rejoin")
	assert.Equal(t, before.Owner, info.Owner, "the room's owner after the rejoin (no takeover)")

	// Longer than the grace: every membership ends.
	outage(grace)
	for _, n := range nodes {
		assert.NotEqual(t, 0, n.exited(t, 15*time.Second), "%s after its membership lapsed", n.name)
	}

	again := c.start("n1", "n2", "n3")
	rooms, err := listAll(again[0])
	require.NoError(t, err)
	assert.Equal(t, 1, rooms[room].Status, "the publishing room after the outage")
	var audience []struct{ ID string }
	require.NoError(t, json.Unmarshal(again[1].call(t, "/im/room/users", url.Values{"roomId": {room}}), &audience))
	require.Len(t, audience, 1)
	assert.Equal(t, viewer, audience[0].ID)
	require.NoError(t, comment(again[2]))
}
