package redis

import (
	"errors"
	"testing"
	"time"

	"roomengine/actors"
)

// joinWithGrace opens a store with a failover grace and joins it as node.
func (c *cluster) joinWithGrace(node string, ttl, grace time.Duration) *Member {
	c.t.Helper()
	s := openT(c.t, Options{Addr: c.srv.Addr(), KeyPrefix: c.prefix, FailoverGrace: grace, Timeout: 500 * time.Millisecond})
	m, err := s.Join(c.t.Context(), node, "127.0.0.1:7"+node, ttl)
	if err != nil {
		c.t.Fatalf("Join %s: %v", node, err)
	}
	return m
}

// outage stops Redis, lets each member fail a renewal (as its renew loop would while Redis
// is away), keeps Redis down until the member keys have certainly expired, and restarts it:
// on restart Redis drops the keys whose time passed, as a promoted replica does.
func (c *cluster) outage(ttl time.Duration, members ...*Member) {
	c.t.Helper()
	c.srv.Stop()
	down := time.Now()
	for _, m := range members {
		if err := m.Renew(c.t.Context()); err == nil {
			c.t.Fatalf("%s renewed with Redis down", m.node)
		}
	}
	time.Sleep(time.Until(down.Add(ttl + 200*time.Millisecond))) // the fault's length
	c.srv.Restart()
}

// A Redis outage longer than memberTTL and shorter than the grace: the members' keys are
// gone when Redis is back, yet each member rejoins under its own incarnation and keeps what
// it owned, at the same epoch; until a member has rejoined, nobody takes its entities over.
func TestMembersRejoinAfterAnOutageLongerThanTheirTTL(t *testing.T) {
	c := newCluster(t)
	const ttl = time.Second
	a := c.joinWithGrace("a", ttl, time.Minute)
	b := c.joinWithGrace("b", ttl, time.Minute)
	ownA, err := a.Claim(t.Context(), actors.KindRoom, "ra")
	if err != nil {
		t.Fatal(err)
	}
	ownB, err := b.Claim(t.Context(), actors.KindRoom, "rb")
	if err != nil {
		t.Fatal(err)
	}
	c.outage(ttl, a, b)
	if n := c.raw.Exists(t.Context(), a.key, b.key).Val(); n != 0 {
		t.Fatalf("%d member keys survived the outage; the test needs them expired", n)
	}
	if a.LeaseValid() {
		t.Fatal("a's lease is valid after an outage longer than its ttl")
	}

	// A script that meets a's missing key before a renewed ends its lease, not its
	// membership.
	if _, err := a.Claim(t.Context(), actors.KindRoom, "other"); !errors.Is(err, ErrNotMemberYet) {
		t.Fatalf("Claim before rejoining = %v, want ErrNotMemberYet", err)
	}
	if err := a.Renew(t.Context()); err != nil {
		t.Fatalf("a's first renewal after the outage = %v, want a rejoin", err)
	}
	if !a.LeaseValid() || a.Rejoins() != 1 {
		t.Fatalf("after rejoining: lease %v, rejoins %d", a.LeaseValid(), a.Rejoins())
	}
	// b has not renewed yet: its room is not taken over, a is sent to b.
	got, err := a.Claim(t.Context(), actors.KindRoom, "rb")
	if err != nil || got.Mine || got.Node != "b" || got.Epoch != ownB.Epoch {
		t.Fatalf("a's claim of b's room while b rejoins = %+v, %v; want b's at epoch %d", got, err, ownB.Epoch)
	}
	if err := b.Renew(t.Context()); err != nil {
		t.Fatalf("b's first renewal after the outage = %v, want a rejoin", err)
	}
	for _, tc := range []struct {
		m    *Member
		room string
		own  actors.Owner
	}{{a, "ra", ownA}, {b, "rb", ownB}} {
		got, err := tc.m.Claim(t.Context(), actors.KindRoom, tc.room)
		if err != nil || !got.Mine || got.Epoch != tc.own.Epoch {
			t.Fatalf("%s's claim of its room after rejoining = %+v, %v; want mine at epoch %d", tc.m.node, got, err, tc.own.Epoch)
		}
	}
	if n := a.s.ClusterStats().Takeovers + b.s.ClusterStats().Takeovers; n != 0 {
		t.Fatalf("%d takeovers, want none", n)
	}
}

// A member one of whose entities was taken over while it was away can never rejoin: its
// in-memory state of that entity is stale.
func TestMemberTakenOverDuringTheOutageIsExpelled(t *testing.T) {
	c := newCluster(t)
	const ttl = time.Second
	a := c.joinWithGrace("a", ttl, time.Minute)
	if _, err := a.Claim(t.Context(), actors.KindRoom, "r"); err != nil {
		t.Fatal(err)
	}
	c.outage(ttl, a)
	// b joined after the outage (it recovered from nothing: no failover marker) and takes
	// the room of a, whose key is gone.
	b := c.joinWithGrace("b", time.Minute, time.Minute)
	got, err := b.Claim(t.Context(), actors.KindRoom, "r")
	if err != nil || !got.Mine {
		t.Fatalf("b's takeover = %+v, %v", got, err)
	}
	if err := a.Renew(t.Context()); !errors.Is(err, ErrExpelled) {
		t.Fatalf("a's renewal after its room was taken = %v, want ErrExpelled", err)
	}
	if c.raw.Exists(t.Context(), a.key).Val() != 0 {
		t.Fatal("the expelled member re-created its key")
	}
}

// A member whose key expired without it failing a renewal — a process frozen longer than
// its ttl, not a Redis outage — is expelled as without a grace.
func TestFrozenMemberIsExpelledDespiteTheGrace(t *testing.T) {
	c := newCluster(t)
	a := c.joinWithGrace("a", time.Minute, time.Minute)
	c.kill(a)
	if _, err := a.Claim(t.Context(), actors.KindRoom, "r"); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Claim = %v, want ErrExpelled", err)
	}
	if err := a.Renew(t.Context()); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Renew = %v, want ErrExpelled", err)
	}
}

// An outage longer than the grace expels as before.
func TestOutageLongerThanTheGraceExpels(t *testing.T) {
	c := newCluster(t)
	const ttl = 500 * time.Millisecond
	a := c.joinWithGrace("a", ttl, ttl+100*time.Millisecond)
	c.outage(ttl, a)
	waitFor(t, "the grace to pass", func() bool { return !a.mayRejoin() })
	if err := a.Renew(t.Context()); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Renew after the grace = %v, want ErrExpelled", err)
	}
}
