package actors

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// Three nodes: a room created on one is played, commented and listed through the others,
// every answer as a single node gives, and its owner stays the node that created it.
func TestClusterAnyNodeServesAnyRoom(t *testing.T) {
	c := newMemCluster(t)
	n1, n2, n3 := c.start("n1"), c.start("n2"), c.start("n3")
	host := mustLogin(t, n1, "host")
	viewer := mustLogin(t, n2, "viewer")
	room, err := n1.CreateRoom(bg, host.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if o := c.owner(KindRoom, room.ID); o.Node != "n1" || o.Epoch != 1 {
		t.Fatalf("owner %+v, want n1 at epoch 1", o)
	}
	got, who, err := n2.Play(bg, room.ID, viewer.ID)
	if err != nil || got.ID != room.ID || who != viewer {
		t.Fatalf("play through n2: %+v %+v %v", got, who, err)
	}
	if err := n3.Comment(bg, room.ID, viewer.ID, "hi"); err != nil {
		t.Fatalf("comment through n3: %v", err)
	}
	members, err := n3.Audience(bg, room.ID)
	if err != nil || !slices.Equal(members, []User{viewer}) {
		t.Fatalf("audience through n3: %v %v", members, err)
	}
	if err := n2.StreamPublished(bg, room.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n3's list shows the room publishing", func() bool {
		rooms := listAll(t, n3)
		return len(rooms) == 1 && rooms[0].Status == StatusPublishing
	})
	if _, _, err := n2.Play(bg, "nosuchroom", viewer.ID); codeOf(err) != CodeNoSuchRoom {
		t.Fatalf("unknown room through n2: %v, want 2003", err)
	}
	if err := n3.Leave(bg, room.ID); err != nil {
		t.Fatal(err)
	}
	if want := []int{6, 9, 8}; !slices.Equal(c.pub.types(room.ID), want) {
		t.Fatalf("pushes %v, want %v (each once)", c.pub.types(room.ID), want)
	}
	if o := c.owner(KindRoom, room.ID); o.Node != "n1" || o.Epoch != 1 {
		t.Fatalf("owner moved to %+v", o)
	}
	waitFor(t, "every node's list drops the room", func() bool {
		return len(listAll(t, n1)) == 0 && len(listAll(t, n2)) == 0 && len(listAll(t, n3)) == 0
	})
}

// Twenty accepts of one host room sent to three nodes at once: exactly one call, the
// others 3020, and no co-stream room made for a loser.
func TestClusterConcurrentAcceptsOneWins(t *testing.T) {
	c := newMemCluster(t)
	nodes := []*Engine{c.start("n1"), c.start("n2"), c.start("n3")}
	host := mustLogin(t, nodes[0], "host")
	room, _ := nodes[0].CreateRoom(bg, host.ID, "")
	const n = 20
	viewers := make([]User, n)
	for i := range viewers {
		viewers[i] = mustLogin(t, nodes[i%3], fmt.Sprint("viewer", i))
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i, v := range viewers {
		wg.Go(func() {
			_, err := nodes[i%3].Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: host.ID,
				InviteeUID: v.ID, InviterType: TypeHost, InviteeType: TypeViewer})
			codes[i] = codeOf(err)
		})
	}
	wg.Wait()
	wins := 0
	for _, code := range codes {
		switch code {
		case CodeOK:
			wins++
		case CodeInCall:
		default:
			t.Errorf("unexpected code %d", code)
		}
	}
	if wins != 1 {
		t.Fatalf("%d calls admitted, want 1 (codes %v)", wins, codes)
	}
	rooms, _ := c.store.LoadRooms(bg)
	calls, _ := c.store.LoadCalls(bg)
	if len(rooms) != 2 || len(calls) != 1 {
		t.Fatalf("%d rooms and %d calls stored, want the host's + one co-stream room, one call", len(rooms), len(calls))
	}
	// Closing through another node frees the room for the next accept.
	if err := nodes[2].CloseCall(bg, room.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: host.ID,
		InviteeUID: viewers[0].ID, InviterType: TypeHost, InviteeType: TypeViewer}); err != nil {
		t.Fatalf("accept after the close: %v", err)
	}
}

// A host–host call whose rooms live on two nodes, admitted and closed through a third: the
// mix starts on each host side and stops at the close, as on one node.
func TestClusterHostHostCallAcrossNodes(t *testing.T) {
	c := newMemCluster(t)
	n1, n2, n3 := c.start("n1"), c.start("n2"), c.start("n3")
	alice, bob := mustLogin(t, n1, "alice"), mustLogin(t, n2, "bob")
	a, _ := n1.CreateRoom(bg, alice.ID, "")
	b, _ := n2.CreateRoom(bg, bob.ID, "")
	if err := n3.MixAvailable(bg, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := n3.Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: alice.ID, InviteeUID: bob.ID,
		InviterType: TypeHost, InviteeType: TypeHost}); err != nil {
		t.Fatal(err)
	}
	if err := n1.Invite(bg, InviteRequest{InviterUID: alice.ID, InviteeUID: bob.ID, LiveRoomID: b.ID, InviterType: TypeHost}); codeOf(err) != CodeInCall {
		t.Fatalf("invite to a room in a call through n1: %v, want 3020", err)
	}
	if err := n2.MixAvailable(bg, b.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both Starts", func() bool { s, _ := c.mixer.counts(); return s == 2 })
	waitFor(t, "both rooms mixed, seen from n1", func() bool {
		ra, _ := n1.Room(bg, a.ID)
		rb, _ := n1.Room(bg, b.ID)
		return ra.IsMixed && rb.IsMixed
	})
	if err := n1.CloseCall(bg, b.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both Stops", func() bool { _, s := c.mixer.counts(); return s == 2 })
	waitFor(t, "push 15 on both host rooms", func() bool {
		return slices.Contains(c.pub.types(a.ID), 15) && slices.Contains(c.pub.types(b.ID), 15)
	})
	for _, id := range []string{a.ID, b.ID} {
		types := c.pub.types(id)
		for _, typ := range []int{4, 5, 15} {
			if n := count(types, typ); n != 1 {
				t.Errorf("room %s got push %d %d times, want once (%v)", id, typ, n, types)
			}
		}
	}
	if call, ok, _ := n2.Call(bg, a.ID); ok {
		t.Fatalf("call still there after close: %+v", call)
	}
}

func count(xs []int, x int) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// The node that owns a room dies: the next request through a survivor takes the room over
// with its audience, and its no-publish deadline fires exactly once, on a survivor.
func TestClusterNodeLossTakeover(t *testing.T) {
	c := newMemCluster(t)
	n1, n2, n3 := c.start("n1"), c.start("n2"), c.start("n3")
	host := mustLogin(t, n1, "host")
	viewer := mustLogin(t, n1, "viewer")
	room, _ := n1.CreateRoom(bg, host.ID, "")
	if _, _, err := n1.Play(bg, room.ID, viewer.ID); err != nil {
		t.Fatal(err)
	}
	c.kill("n1")
	if _, _, err := n1.Play(bg, room.ID, viewer.ID); codeOf(err) != CodeUnavailable {
		t.Fatalf("the dead node answered %v, want 503", err)
	}
	members, err := n2.Audience(bg, room.ID)
	if err != nil || !slices.Equal(members, []User{viewer}) {
		t.Fatalf("audience after takeover: %v %v", members, err)
	}
	if o := c.owner(KindRoom, room.ID); o.Node != "n2" || o.Epoch != 2 {
		t.Fatalf("owner %+v, want n2 at epoch 2", o)
	}
	// The deadline falls due; only the sweep of a live node can find it.
	c.clock.Advance(testCfg.NoPublishTimeout + time.Second)
	// The end's push is queued after the room's deletion is written: await both.
	waitFor(t, "the room to end", func() bool {
		_, ok := c.store.room(room.ID)
		return !ok && count(c.pub.types(room.ID), 8) > 0
	})
	if got := count(c.pub.types(room.ID), 8); got != 1 {
		t.Fatalf("push 8 sent %d times, want once", got)
	}
	if _, err := n3.Room(bg, room.ID); codeOf(err) != CodeNoSuchRoom {
		t.Fatalf("ended room through n3: %v", err)
	}
}

// A deadline whose owner died before it fell due is fired by a survivor's sweep, without
// any request reaching the room.
func TestClusterDeadlineOfADeadNode(t *testing.T) {
	c := newMemCluster(t)
	n1, _ := c.start("n1"), c.start("n2")
	host := mustLogin(t, n1, "host")
	room, _ := n1.CreateRoom(bg, host.ID, "")
	c.kill("n1")
	c.clock.Advance(testCfg.NoPublishTimeout + time.Second)
	// The end's push is queued after the room's deletion is written: await both.
	waitFor(t, "the room to end on n2", func() bool {
		_, ok := c.store.room(room.ID)
		return !ok && count(c.pub.types(room.ID), 8) > 0
	})
	if got := count(c.pub.types(room.ID), 8); got != 1 {
		t.Fatalf("push 8 sent %d times, want once", got)
	}
	if o := c.owner(KindRoom, room.ID); o.Node != "n2" {
		t.Fatalf("owner %+v, want n2", o)
	}
}

// A node that was frozen past its membership and comes back still believing it owns a room
// (its lease restored without rejoining, the worst case): the store refuses its writes and
// pushes, it stops acting for the room, and its next request is served by the new owner.
func TestClusterStaleCopyIsFenced(t *testing.T) {
	c := newMemCluster(t)
	c.ownerPushes = true // the comment below goes to the room's actor, whose push is fenced
	n1, n2 := c.start("n1"), c.start("n2")
	host := mustLogin(t, n1, "host")
	viewer := mustLogin(t, n1, "viewer")
	room, _ := n1.CreateRoom(bg, host.ID, "")
	if _, _, err := n1.Play(bg, room.ID, viewer.ID); err != nil {
		t.Fatal(err)
	}
	c.kill("n1")
	if _, _, err := n2.Play(bg, room.ID, viewer.ID); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.alive["n1"], c.down["n1"] = true, false
	c.mu.Unlock()
	before := len(c.pub.types(room.ID))
	// n1's registry still holds the room as its own: its comment push carries the old fence.
	if err := n1.Comment(bg, room.ID, viewer.ID, "stale"); err != nil {
		t.Fatalf("comment: %v", err)
	}
	if len(c.pub.types(room.ID)) != before {
		t.Fatal("a push of the stale copy reached clients")
	}
	// Its next write is refused and it lets go of the room.
	if err := n1.AudienceLeave(bg, room.ID, viewer.ID); codeOf(err) != CodeUnavailable {
		t.Fatalf("stale write answered %v, want 503", err)
	}
	if c.refused.Load() < 2 {
		t.Fatalf("%d refusals, want the push and the write", c.refused.Load())
	}
	waitFor(t, "n1 to serve the room through its new owner", func() bool {
		return n1.AudienceLeave(bg, room.ID, viewer.ID) == nil
	})
	members, _ := n2.Audience(bg, room.ID)
	if len(members) != 0 {
		t.Fatalf("audience %v after the leave through n1", members)
	}
	if o := c.owner(KindRoom, room.ID); o.Node != "n2" {
		t.Fatalf("owner %+v, want n2 still", o)
	}
}
