package actors

import (
	"slices"
	"testing"
)

// A comment or like sent to a node that does not own the room is served by that node: no
// peer request, the push unfenced and IfLive (the feed numbers it only while the room is
// live), and the answers a single node gives. What only the owner can decide still goes
// there.
func TestClusterCommentServedByReceivingNode(t *testing.T) {
	c := newMemCluster(t)
	n1, n2 := c.start("n1"), c.start("n2")
	host := mustLogin(t, n1, "host")
	viewer := mustLogin(t, n2, "viewer")
	room, err := n1.CreateRoom(bg, host.ID, "")
	if err != nil {
		t.Fatal(err)
	}

	sent := c.sends.Load()
	if err := n2.Comment(bg, room.ID, viewer.ID, "hi"); err != nil {
		t.Fatalf("comment through n2: %v", err)
	}
	if err := n2.Like(bg, room.ID, viewer.ID); err != nil {
		t.Fatalf("like through n2: %v", err)
	}
	if err := n2.Comment(bg, "nosuchroom", viewer.ID, "hi"); codeOf(err) != CodeNoSuchRoom {
		t.Fatalf("comment on an unknown room through n2: %v, want %d", err, CodeNoSuchRoom)
	}
	if got := c.sends.Load() - sent; got != 0 {
		t.Fatalf("%d peer requests for comments and likes, want 0 (served on n2)", got)
	}
	if want := []int{6, 7}; !slices.Equal(c.pub.types(room.ID), want) {
		t.Fatalf("pushes %v, want %v", c.pub.types(room.ID), want)
	}
	c.pub.mu.Lock()
	pushed := slices.Clone(c.pub.pushes)
	c.pub.mu.Unlock()
	for _, p := range pushed {
		if p.Topic == room.ID && (!p.IfLive || !p.Fence.IsZero() || p.Changed) {
			t.Fatalf("push %d: IfLive %v, fence %+v, Changed %v; want an IfLive, unfenced push",
				p.Type, p.IfLive, p.Fence, p.Changed)
		}
	}

	// An unknown user: whether that is 2002 or 2003 depends on the room, which the owner
	// decides.
	sent = c.sends.Load()
	if err := n2.Comment(bg, room.ID, "no-such-user", "hi"); codeOf(err) != CodeNoSuchUser {
		t.Fatalf("comment of an unknown user through n2: %v, want %d", err, CodeNoSuchUser)
	}
	if c.sends.Load() == sent {
		t.Fatal("a comment of an unknown user was not sent to the room's owner")
	}

	// Once the room has ended, n2 answers as the owner would, and pushes nothing.
	if err := n1.Leave(bg, room.ID); err != nil {
		t.Fatal(err)
	}
	pushes := len(c.pub.types(room.ID))
	sent = c.sends.Load()
	if err := n2.Comment(bg, room.ID, viewer.ID, "late"); codeOf(err) != CodeNoSuchRoom {
		t.Fatalf("comment on an ended room through n2: %v, want %d", err, CodeNoSuchRoom)
	}
	if got := c.sends.Load() - sent; got != 0 {
		t.Fatalf("%d peer requests for a comment on an ended room, want 0", got)
	}
	if got := len(c.pub.types(room.ID)); got != pushes {
		t.Fatalf("%d pushes after a refused comment, want %d", got, pushes)
	}
	if err := n1.Comment(bg, room.ID, viewer.ID, "late"); codeOf(err) != CodeNoSuchRoom {
		t.Fatalf("the owner's answer: %v, want %d", err, CodeNoSuchRoom)
	}

	// With the feed away (Redis down), the client gets 503 within the ask timeout.
	c.stallPushes.Store(true)
	if err := n2.Comment(bg, other(t, n1, host), viewer.ID, "stalled"); codeOf(err) != CodeUnavailable {
		t.Fatalf("comment with the feed away: %v, want %d", err, CodeUnavailable)
	}
	c.stallPushes.Store(false)

	// A node whose membership lapsed serves nothing.
	live := other(t, n1, host)
	c.kill("n2")
	if err := n2.Comment(bg, live, viewer.ID, "from a dead node"); codeOf(err) != CodeUnavailable {
		t.Fatalf("comment through a lapsed node: %v, want %d", err, CodeUnavailable)
	}
	if got := c.pub.types(live); slices.Contains(got, 6) {
		t.Fatalf("a lapsed node's comment was pushed: %v", got)
	}
}

// other creates another room of host through n.
func other(t *testing.T, n *Engine, host User) string {
	t.Helper()
	r, err := n.CreateRoom(bg, host.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}
