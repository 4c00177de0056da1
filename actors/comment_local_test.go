package actors

import (
	"slices"
	"testing"
)

// A comment or like sent to a node that does not own the room is answered by that node from
// its read model: no peer request, the push unfenced and marked Unowned (so the feed never
// revives a deleted topic with it), and the answers a single node gives.
func TestClusterCommentServedByReceivingNode(t *testing.T) {
	c := newMemCluster(t)
	n1, n2 := c.start("n1"), c.start("n2")
	host := mustLogin(t, n1, "host")
	viewer := mustLogin(t, n2, "viewer")
	room, err := n1.CreateRoom(bg, host.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	// The owner's write fed n2's read model before CreateRoom answered (memCluster's feed).

	sent := c.sends.Load()
	if err := n2.Comment(bg, room.ID, viewer.ID, "hi"); err != nil {
		t.Fatalf("comment through n2: %v", err)
	}
	if err := n2.Like(bg, room.ID, viewer.ID); err != nil {
		t.Fatalf("like through n2: %v", err)
	}
	if err := n2.Comment(bg, room.ID, "no-such-user", "hi"); codeOf(err) != CodeNoSuchUser {
		t.Fatalf("comment of an unknown user through n2: %v, want %d", err, CodeNoSuchUser)
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
		if p.Topic == room.ID && (!p.Unowned || !p.Fence.IsZero() || p.Changed) {
			t.Fatalf("push %d: Unowned %v, fence %+v, Changed %v; want an unowned, unfenced push",
				p.Type, p.Unowned, p.Fence, p.Changed)
		}
	}

	// Once n2's read model shows the room ended (the owner's write fed it before Leave
	// answered), n2 answers 2002 itself, as the owner would, and pushes nothing.
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

	// A room n2's read model does not have (created a moment ago elsewhere, the feed not yet
	// read) goes to its owner, and is answered as before.
	other, err := n1.CreateRoom(bg, host.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	n2.FeedRoomGone(other.ID)
	sent = c.sends.Load()
	if err := n2.Comment(bg, other.ID, viewer.ID, "via owner"); err != nil {
		t.Fatalf("comment through n2 without a read-model copy: %v", err)
	}
	if c.sends.Load() == sent {
		t.Fatal("a room missing from n2's read model was not forwarded to its owner")
	}
	if want := []int{6}; !slices.Equal(c.pub.types(other.ID), want) {
		t.Fatalf("pushes %v, want %v", c.pub.types(other.ID), want)
	}
}
