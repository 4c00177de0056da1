package redis

import (
	"errors"
	"sync"
	"testing"
	"time"

	"roomengine/actors"
)

func TestClaimRaceHasOneOwner(t *testing.T) {
	c := newCluster(t)
	var ms []*Member
	for _, n := range []string{"a", "b", "c"} {
		_, m := c.join(n, time.Minute)
		ms = append(ms, m)
	}
	const racers = 20
	owners := make([]actors.Owner, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { owners[i], errs[i] = ms[i%3].Claim(t.Context(), actors.KindRoom, "r") })
	}
	wg.Wait()
	winners := map[string]bool{}
	for i, o := range owners {
		if errs[i] != nil {
			t.Fatalf("Claim %d: %v", i, errs[i])
		}
		if o.Epoch != 1 || o.Node != owners[0].Node {
			t.Fatalf("Claim %d saw owner %+v, Claim 0 saw %+v: want one owner at epoch 1", i, o, owners[0])
		}
		if o.Mine != (ms[i%3].Node() == o.Node) {
			t.Fatalf("Claim %d by %s: Mine %v for owner %s", i, ms[i%3].Node(), o.Mine, o.Node)
		}
		if o.Mine {
			winners[o.Node] = true
		}
		if o.Addr != "127.0.0.1:7"+o.Node {
			t.Fatalf("owner addr %q", o.Addr)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("nodes that were told Mine: %v, want exactly one", winners)
	}
}

func TestTakeoverAfterOwnerExpired(t *testing.T) {
	c := newCluster(t)
	_, a := c.join("a", 1500*time.Millisecond) // never renewed: it dies by its ttl (long enough to outlast the claims below on a loaded machine)
	sb, b := c.join("b", time.Minute)
	if o, err := a.Claim(t.Context(), actors.KindCall, "k"); err != nil || !o.Mine || o.Epoch != 1 {
		t.Fatalf("a Claim = %+v, %v", o, err)
	}
	if o, err := b.Claim(t.Context(), actors.KindCall, "k"); err != nil || o.Mine || o.Node != "a" || o.Epoch != 1 {
		t.Fatalf("b Claim while a lives = %+v, %v; want a's at epoch 1", o, err)
	}
	waitFor(t, "a's member key to expire", func() bool {
		_, ok, err := b.Lookup(t.Context(), actors.KindCall, "k")
		return err == nil && !ok
	})
	o, err := b.Claim(t.Context(), actors.KindCall, "k")
	if err != nil || !o.Mine || o.Node != "b" || o.Epoch != 2 {
		t.Fatalf("b Claim after a died = %+v, %v; want Mine at epoch 2", o, err)
	}
	if st := sb.ClusterStats(); st.Takeovers != 1 {
		t.Fatalf("takeovers = %d, want 1", st.Takeovers)
	}
	if c.raw.SIsMember(t.Context(), c.key("owned:{a}"), "call:k").Val() {
		t.Fatal("the dead owner's owned set still lists the entity")
	}
	if got, _ := b.Owned(t.Context()); len(got) != 1 || got[0] != "call:k" {
		t.Fatalf("b Owned = %v", got)
	}
	if o, ok, err := b.Lookup(t.Context(), actors.KindCall, "k"); err != nil || !ok || !o.Mine || o.Epoch != 2 {
		t.Fatalf("Lookup = %+v, %v, %v", o, ok, err)
	}
}

func TestEpochNeverGoesBack(t *testing.T) {
	c := newCluster(t)
	_, a := c.join("a", time.Minute)
	_, b := c.join("b", time.Minute)
	ctx := t.Context()
	claimAt := func(m *Member, want int64) {
		t.Helper()
		o, err := m.Claim(ctx, actors.KindRoom, "r")
		if err != nil || !o.Mine || o.Epoch != want {
			t.Fatalf("%s Claim = %+v, %v; want Mine at epoch %d", m.Node(), o, err, want)
		}
	}
	claimAt(a, 1)
	claimAt(a, 1) // already its own: unchanged
	if err := a.Release(ctx, actors.KindRoom, "r", 1); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, ok, _ := a.Lookup(ctx, actors.KindRoom, "r"); ok {
		t.Fatal("owner still set after Release")
	}
	claimAt(a, 2) // released, then taken again: a new epoch
	// A Release at a stale epoch does nothing.
	if err := a.Release(ctx, actors.KindRoom, "r", 1); err != nil {
		t.Fatalf("stale Release: %v", err)
	}
	if o, ok, _ := b.Lookup(ctx, actors.KindRoom, "r"); !ok || o.Node != "a" || o.Epoch != 2 {
		t.Fatalf("after a stale Release: owner %+v, %v", o, ok)
	}
	// Another node's Release does nothing either.
	if err := b.Release(ctx, actors.KindRoom, "r", 2); err != nil {
		t.Fatalf("b Release: %v", err)
	}
	if o, ok, _ := b.Lookup(ctx, actors.KindRoom, "r"); !ok || o.Node != "a" {
		t.Fatalf("after b's Release: owner %+v, %v", o, ok)
	}
	if err := a.Release(ctx, actors.KindRoom, "r", 2); err != nil {
		t.Fatalf("Release: %v", err)
	}
	claimAt(b, 3)
	c.kill(b)
	claimAt(a, 4) // takeover from the dead b
}

func TestOwnedCountsByKind(t *testing.T) {
	c := newCluster(t)
	_, a := c.join("a", time.Minute)
	for _, e := range [][2]string{{"room", "1"}, {"room", "2"}, {"call", "3"}} {
		if _, err := a.Claim(t.Context(), e[0], e[1]); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.OwnedCounts(t.Context())
	if err != nil || got["room"] != 2 || got["call"] != 1 {
		t.Fatalf("OwnedCounts = %v, %v", got, err)
	}
	if _, err := a.Claim(t.Context(), "user", "1"); err == nil {
		t.Fatal("Claim of an unknown kind succeeded")
	}
}

// TestRejoinedNameTakesOverAsNewIncarnation: a node that was expelled and joins again under
// its name owns nothing of its old incarnation until it claims it, at a new epoch, so the
// old incarnation's fences stay refused.
func TestRejoinedNameTakesOverAsNewIncarnation(t *testing.T) {
	c := newCluster(t)
	s, old := c.join("a", time.Minute)
	staleCtx, _ := own(t, old, actors.KindRoom, "r")
	c.kill(old)
	fresh, err := s.Join(t.Context(), "a", "127.0.0.1:7a", time.Minute)
	if err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	if owned, _ := fresh.Owned(t.Context()); len(owned) != 0 {
		t.Fatalf("the new incarnation starts owning %v", owned)
	}
	if _, ok, _ := fresh.Lookup(t.Context(), actors.KindRoom, "r"); ok {
		t.Fatal("the old incarnation still counts as the owner")
	}
	o, err := fresh.Claim(t.Context(), actors.KindRoom, "r")
	if err != nil || !o.Mine || o.Epoch != 2 {
		t.Fatalf("Claim by the new incarnation = %+v, %v; want Mine at epoch 2", o, err)
	}
	if err := s.SaveRoom(staleCtx, actors.Room{ID: "r"}); !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("the old incarnation's fence = %v, want ErrFenced", err)
	}
}
