package redis

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"roomengine/actors"
)

// own claims the entity for m and returns a context fenced by the claim.
func own(t *testing.T, m *Member, kind, id string) (context.Context, actors.Fence) {
	t.Helper()
	o, err := m.Claim(t.Context(), kind, id)
	if err != nil || !o.Mine {
		t.Fatalf("%s Claim %s %s = %+v, %v", m.Node(), kind, id, o, err)
	}
	f := actors.Fence{Kind: kind, ID: id, Node: m.Node(), Epoch: o.Epoch}
	return actors.WithFence(t.Context(), f), f
}

func TestFencedWriteAtStaleEpochIsRefused(t *testing.T) {
	c := newCluster(t)
	sa, a := c.join("a", time.Minute)
	stale, f1 := own(t, a, actors.KindRoom, "r")
	if err := a.Release(t.Context(), actors.KindRoom, "r", f1.Epoch); err != nil {
		t.Fatal(err)
	}
	current, _ := own(t, a, actors.KindRoom, "r") // epoch 2
	room := actors.Room{ID: "r", Name: "stale"}
	err := sa.SaveRoom(stale, room)
	if !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("SaveRoom at epoch 1 = %v, want ErrFenced", err)
	}
	if _, err := sa.LoadRoom(t.Context(), "r"); !errors.Is(err, actors.ErrNotFound) {
		t.Fatalf("the refused write landed: LoadRoom = %v", err)
	}
	for name, write := range map[string]func(context.Context) error{
		"DeleteRoom":     func(ctx context.Context) error { return sa.DeleteRoom(ctx, "r") },
		"AddAudience":    func(ctx context.Context) error { return sa.AddAudience(ctx, "r", actors.User{ID: "1"}) },
		"RemoveAudience": func(ctx context.Context) error { return sa.RemoveAudience(ctx, "r", "1") },
	} {
		if err := write(stale); !errors.Is(err, actors.ErrFenced) {
			t.Errorf("%s at a stale epoch = %v, want ErrFenced", name, err)
		}
	}
	room.Name = "current"
	if err := sa.SaveRoom(current, room); err != nil {
		t.Fatalf("SaveRoom at the current epoch: %v", err)
	}
	if err := sa.AddAudience(current, "r", actors.User{ID: "1", Name: "u"}); err != nil {
		t.Fatalf("AddAudience at the current epoch: %v", err)
	}
	got, err := sa.LoadRoom(t.Context(), "r")
	if err != nil || got.Name != "current" {
		t.Fatalf("LoadRoom = %+v, %v", got, err)
	}
	if aud, _ := sa.LoadAudience(t.Context(), "r"); len(aud) != 1 {
		t.Fatalf("audience = %v", aud)
	}
	st := sa.ClusterStats()
	if st.FencedWritesRefused != 4 || st.FencedWritesOK != 2 {
		t.Fatalf("stats = %+v, want 4 refused and 2 ok", st)
	}
}

func TestFencedWriteOfAnotherOwnerIsRefused(t *testing.T) {
	c := newCluster(t)
	sa, a := c.join("a", time.Minute)
	sb, _ := c.join("b", time.Minute)
	ctx, f := own(t, a, actors.KindCall, "k")
	// b's store holding a's fence (a copy that thinks it is a) must not write.
	if err := sb.SaveCall(ctx, actors.Call{ID: "k"}); !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("SaveCall with another node's fence = %v, want ErrFenced", err)
	}
	// A fence for one entity does not cover another.
	if err := sa.SaveCall(ctx, actors.Call{ID: "other"}); !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("SaveCall of another call = %v, want ErrFenced", err)
	}
	// A store without membership cannot check a fence.
	if err := c.store().SaveCall(ctx, actors.Call{ID: "k"}); !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("SaveCall on a store that never joined = %v, want ErrFenced", err)
	}
	if err := sa.SaveCall(actors.WithFence(t.Context(), f), actors.Call{ID: "k"}); err != nil {
		t.Fatalf("owner's SaveCall: %v", err)
	}
}

func TestFencedWriteFromExpiredMemberIsRefused(t *testing.T) {
	c := newCluster(t)
	sa, a := c.join("a", time.Minute)
	_, b := c.join("b", time.Minute)
	ctx, _ := own(t, a, actors.KindRoom, "r")
	c.kill(a)
	// b takes the room over: from then on a's writes are refused by the owner hash in the
	// room's slot (the fenced write does not read the member key, another slot).
	if o, err := b.Claim(t.Context(), actors.KindRoom, "r"); err != nil || !o.Mine || o.Epoch != 2 {
		t.Fatalf("b's takeover = %+v, %v", o, err)
	}
	err := sa.SaveRoom(ctx, actors.Room{ID: "r"})
	if !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("SaveRoom by an expired member = %v, want ErrFenced", err)
	}
	if n := c.raw.Exists(t.Context(), c.key("room:{r}")).Val(); n != 0 {
		t.Fatal("the expired member's write landed")
	}
	if err := a.Renew(t.Context()); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Renew after a refused write = %v, want ErrExpelled", err)
	}
}

func TestFencedWriteRefusedWhenLeaseLapsed(t *testing.T) {
	c := newCluster(t)
	sa, a := c.join("a", time.Minute)
	ctx, _ := own(t, a, actors.KindRoom, "r")
	a.leaseUntil.Store(0) // as after a freeze longer than the lease
	if err := sa.SaveRoom(ctx, actors.Room{ID: "r"}); !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("SaveRoom with a lapsed lease = %v, want ErrFenced", err)
	}
	if n := c.raw.Exists(t.Context(), c.key("room:{r}")).Val(); n != 0 {
		t.Fatal("a write without a lease landed")
	}
}

// dueSet returns the {p}:due zset as member -> unix ms.
func dueSet(t *testing.T, c *cluster) map[string]int64 {
	t.Helper()
	zs, err := c.raw.ZRangeWithScores(t.Context(), c.dueKey(), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, z := range zs {
		out[z.Member.(string)] = int64(z.Score)
	}
	return out
}

func TestFencedWritesKeepTheDueSet(t *testing.T) {
	c := newCluster(t)
	s, a := c.join("a", time.Minute)
	rctx, _ := own(t, a, actors.KindRoom, "r")
	kctx, _ := own(t, a, actors.KindCall, "k")
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	check := func(step string, want map[string]int64) {
		t.Helper()
		got := dueSet(t, c)
		if len(got) != len(want) {
			t.Fatalf("%s: due = %v, want %v", step, got, want)
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || (v != 0 && g != v) {
				t.Fatalf("%s: due = %v, want %v", step, got, want)
			}
		}
	}
	room := actors.Room{ID: "r", NoPublishDeadline: t0.Add(time.Minute), TopicDeleteDeadline: t0}
	if err := s.SaveRoom(rctx, room); err != nil {
		t.Fatal(err)
	}
	check("both deadlines", map[string]int64{"room:r": t0.UnixMilli()})
	room.TopicDeleteDeadline = time.Time{}
	if err := s.SaveRoom(rctx, room); err != nil {
		t.Fatal(err)
	}
	check("no-publish only", map[string]int64{"room:r": t0.Add(time.Minute).UnixMilli()})

	before := time.Now().UnixMilli()
	for _, step := range []struct {
		phase string
		due   bool
	}{
		{actors.PhaseWaiting, false}, {actors.PhaseStarting, true}, {actors.PhaseMixed, false},
		{actors.PhaseClosing, true},
	} {
		if err := s.SaveCall(kctx, actors.Call{ID: "k", Phase: step.phase}); err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{"room:r": t0.Add(time.Minute).UnixMilli()}
		if step.due {
			want["call:k"] = 0 // now, checked below
		}
		check("call "+step.phase, want)
	}
	if at := dueSet(t, c)["call:k"]; at < before || at > time.Now().UnixMilli() {
		t.Fatalf("a closing call is due at %d, want the time of its save", at)
	}
	due, err := a.Due(t.Context(), time.Now(), 10)
	if err != nil || len(due) != 1 || due[0].Kind != actors.KindCall || due[0].ID != "k" {
		t.Fatalf("Due(now) = %+v, %v; want the closing call only", due, err)
	}
	due, err = a.Due(t.Context(), t0.Add(time.Hour), 1)
	if err != nil || len(due) != 1 || due[0].ID != "k" {
		t.Fatalf("Due(later, limit 1) = %+v, %v; want the earliest", due, err)
	}
	due, _ = a.Due(t.Context(), t0.Add(time.Hour), 10)
	if len(due) != 2 || due[1] != (actors.DueEntity{Kind: actors.KindRoom, ID: "r", At: time.UnixMilli(t0.Add(time.Minute).UnixMilli())}) {
		t.Fatalf("Due(later) = %+v", due)
	}

	if err := s.DeleteCall(kctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRoom(rctx, "r"); err != nil {
		t.Fatal(err)
	}
	check("after the deletes", nil)
}

func TestFencedDeleteKeepsTheEpoch(t *testing.T) {
	c := newCluster(t)
	s, a := c.join("a", time.Minute)
	ctx, f := own(t, a, actors.KindRoom, "r")
	if err := s.SaveRoom(ctx, actors.Room{ID: "r"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRoom(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	ttl := c.raw.PTTL(t.Context(), c.key("owner:room:{r}")).Val()
	if ttl < 23*time.Hour || ttl > 24*time.Hour {
		t.Fatalf("owner hash ttl after delete = %v, want about a day", ttl)
	}
	if owned, _ := a.Owned(t.Context()); len(owned) != 0 {
		t.Fatalf("a deleted room is still owned: %v", owned)
	}
	if err := a.Release(t.Context(), actors.KindRoom, "r", f.Epoch); err != nil {
		t.Fatal(err)
	}
	if o, _ := a.Claim(t.Context(), actors.KindRoom, "r"); o.Epoch != f.Epoch+1 {
		t.Fatalf("Claim after delete and release: epoch %d, want %d", o.Epoch, f.Epoch+1)
	}
}

func TestFencedRoomChangesGoOnTheFeedInOrder(t *testing.T) {
	c := newCluster(t)
	s, a := c.join("a", time.Minute)
	r1, _ := own(t, a, actors.KindRoom, "r1")
	r2, _ := own(t, a, actors.KindRoom, "r2")
	k, _ := own(t, a, actors.KindCall, "k")
	steps := []func() error{
		func() error { return s.SaveRoom(r1, actors.Room{ID: "r1", Name: "one"}) },
		func() error { return s.AddAudience(r1, "r1", actors.User{ID: "1"}) }, // not on the feed
		func() error { return s.SaveCall(k, actors.Call{ID: "k"}) },           // not on the feed
		func() error { return s.SaveRoom(r2, actors.Room{ID: "r2", Name: "two"}) },
		func() error { return s.SaveRoom(r1, actors.Room{ID: "r1", Name: "one again"}) },
		func() error { return s.DeleteRoom(r1, "r1") },
		func() error { return s.SaveRoom(t.Context(), actors.Room{ID: "r3"}) }, // unfenced
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	msgs, err := c.raw.XRange(t.Context(), c.key("feed"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ k, id, name string }{
		{"room", "r1", "one"}, {"room", "r2", "two"}, {"room", "r1", "one again"}, {"roomdel", "r1", ""},
	}
	if len(msgs) != len(want) {
		t.Fatalf("feed has %d entries, want %d: %v", len(msgs), len(want), msgs)
	}
	for i, w := range want {
		v := msgs[i].Values
		if v["k"] != w.k || v["id"] != w.id {
			t.Fatalf("feed[%d] = %v, want k=%s id=%s", i, v, w.k, w.id)
		}
		if w.k == "roomdel" {
			if _, has := v["v"]; has {
				t.Fatalf("feed[%d] a delete carries a value: %v", i, v)
			}
			continue
		}
		stored, _ := v["v"].(string)
		if !jsonHasName(stored, w.name) {
			t.Fatalf("feed[%d].v = %s, want the room named %q", i, stored, w.name)
		}
	}
}

func TestUnfencedWritesTouchNoClusterKeys(t *testing.T) {
	c := newCluster(t)
	s, _ := c.join("a", time.Minute) // a member exists, but the writes carry no fence
	ctx := t.Context()
	room := actors.Room{ID: "r", NoPublishDeadline: time.Now()}
	if err := s.SaveRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCall(ctx, actors.Call{ID: "k", Phase: actors.PhaseStarting}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRoom(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{c.dueKey(), c.key("feed"), c.key("owner:room:{r}")} {
		if c.raw.Exists(ctx, k).Val() != 0 {
			t.Errorf("unfenced writes created %s", k)
		}
	}
	if st := s.ClusterStats(); st != (ClusterStats{}) {
		t.Errorf("unfenced writes counted: %+v", st)
	}
}

func TestLoadOneSnapshot(t *testing.T) {
	c := newCluster(t)
	s, a := c.join("a", time.Minute)
	ctx, _ := own(t, a, actors.KindCall, "k")
	if _, err := a.LoadCall(t.Context(), "k"); !errors.Is(err, actors.ErrNotFound) {
		t.Fatalf("LoadCall of nothing = %v, want ErrNotFound", err)
	}
	if err := s.SaveCall(ctx, actors.Call{ID: "k", Phase: actors.PhaseMixed}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.LoadCall(t.Context(), "k"); err != nil || got.Phase != actors.PhaseMixed {
		t.Fatalf("LoadCall = %+v, %v", got, err)
	}
	if _, err := a.LoadRoom(t.Context(), "nope"); !errors.Is(err, actors.ErrNotFound) {
		t.Fatalf("LoadRoom of nothing = %v, want ErrNotFound", err)
	}
}

func TestResetAllKeepsMembershipAndFeed(t *testing.T) {
	c := newCluster(t)
	s, a := c.join("a", time.Minute)
	ctx, _ := own(t, a, actors.KindRoom, "r")
	if err := s.SaveRoom(ctx, actors.Room{ID: "r", NoPublishDeadline: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if busy, err := a.Reserve(t.Context(), "k", []string{"r"}, []string{"1"}); err != nil || busy != "" {
		t.Fatalf("Reserve = %q, %v", busy, err)
	}
	if err := s.Reset(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	keys, err := c.raw.Keys(t.Context(), c.prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// The layout marker stays too, when an Open wrote it (migrate.go).
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == c.key("layout") })
	want := map[string]bool{c.key("member:{a}"): true, c.key("members"): true, c.key("feed"): true}
	if len(keys) != len(want) {
		t.Fatalf("after Reset keys %v, want only %v", keys, want)
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("after Reset keys %v, want only %v", keys, want)
		}
	}
	if err := a.Renew(t.Context()); err != nil {
		t.Fatalf("Renew after Reset: %v", err)
	}
	// The wiped owner refuses the old fence: that copy stops.
	if err := s.SaveRoom(ctx, actors.Room{ID: "r"}); !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("SaveRoom with a fence from before Reset = %v, want ErrFenced", err)
	}
}

func jsonHasName(s, name string) bool {
	var r actors.Room
	return json.Unmarshal([]byte(s), &r) == nil && r.Name == name
}

// A copy that lost the entity between its fenced write and its due and feed step (frozen in
// between) cannot put back an old deadline or snapshot after the new owner's, nor bring a
// deleted entity back.
func TestStaleDueStepIsRefused(t *testing.T) {
	c := newCluster(t)
	sa, a := c.join("a", time.Minute)
	sb, b := c.join("b", time.Minute)
	_, fa := own(t, a, actors.KindRoom, "r")
	c.kill(a)
	bctx, fb := own(t, b, actors.KindRoom, "r")
	if fb.Epoch != fa.Epoch+1 {
		t.Fatalf("b's epoch %d, want %d", fb.Epoch, fa.Epoch+1)
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := sb.SaveRoom(bctx, actors.Room{ID: "r", Name: "b", NoPublishDeadline: t0}); err != nil {
		t.Fatal(err)
	}
	feedLen := func() int64 { return c.raw.XLen(t.Context(), c.key("feed")).Val() }
	before := feedLen()
	late := func(epoch int64, deleted string) int {
		t.Helper()
		n, err := guardDue.Run(t.Context(), sa.rc, []string{sa.dueKey, sa.fencesKey, sa.feedKey, sa.goneKey},
			"room:r", epoch, "", "room", "r", `{"id":"r","name":"a"}`, feedMaxLen, deleted, ownerKeep).Int()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := late(fa.Epoch, "0"); n != 0 {
		t.Fatalf("a's late due step at epoch %d = %d, want refused", fa.Epoch, n)
	}
	if got := dueSet(t, c)["room:r"]; got != t0.UnixMilli() {
		t.Fatalf("due after a's late step = %d, want b's %d", got, t0.UnixMilli())
	}
	if feedLen() != before {
		t.Fatal("a's late step went on the feed")
	}
	if err := sb.DeleteRoom(bctx, "r"); err != nil {
		t.Fatal(err)
	}
	if n := late(fa.Epoch, "0"); n != 0 || len(dueSet(t, c)) != 0 {
		t.Fatalf("a's late step after the delete = %d, due %v: want refused, nothing due", n, dueSet(t, c))
	}
	if ttl := c.raw.ZScore(t.Context(), sa.goneKey, "room:r").Val(); ttl == 0 {
		t.Fatal("the deleted room's epoch is not kept")
	}
}

// A node that died between a fenced delete and its due and feed step left the room due and
// the read models without the deletion: the next Due completes the step and leaves it out.
func TestDueCompletesAnInterruptedDelete(t *testing.T) {
	c := newCluster(t)
	s, a := c.join("a", time.Minute)
	ctx, f := own(t, a, actors.KindRoom, "r")
	if err := s.SaveRoom(ctx, actors.Room{ID: "r", NoPublishDeadline: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	// The fenced delete alone, as the dead node ran it.
	res, err := fencedWrite.Run(t.Context(), s.rc, []string{s.ownerKey(actors.KindRoom, "r"), s.roomKey("r"), s.audKey("r")},
		a.inc, a.node, f.Epoch, opDeleteRoom, ownerKeep).Text()
	if err != nil || res != "ok" {
		t.Fatalf("fenced delete = %q, %v", res, err)
	}
	if _, ok := dueSet(t, c)["room:r"]; !ok {
		t.Fatal("the interrupted delete left no due entry: nothing to complete")
	}
	due, err := a.Due(t.Context(), time.Now(), 10)
	if err != nil || len(due) != 0 {
		t.Fatalf("Due = %+v, %v; want the deleted room left out", due, err)
	}
	if len(dueSet(t, c)) != 0 {
		t.Fatalf("due after Due = %v, want empty", dueSet(t, c))
	}
	last := c.raw.XRevRangeN(t.Context(), c.key("feed"), "+", "-", 1).Val()
	if len(last) != 1 || last[0].Values["k"] != "roomdel" || last[0].Values["id"] != "r" {
		t.Fatalf("last feed entry %+v, want the deletion of r", last)
	}
}
