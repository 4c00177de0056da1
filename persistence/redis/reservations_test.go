package redis

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestReserveAllOrNothingUnderConcurrency(t *testing.T) {
	c := newCluster(t)
	var ms []*Member
	for _, n := range []string{"a", "b", "c"} {
		_, m := c.join(n, time.Minute)
		ms = append(ms, m)
	}
	// 20 calls, each wanting two neighbouring rooms of 5 and one user of its own: they
	// overlap in a ring, so at most two can win, and whoever loses must hold nothing.
	const calls = 20
	type want struct{ rooms, users []string }
	wants := make([]want, calls)
	busy := make([]string, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wants[i] = want{
			rooms: []string{fmt.Sprintf("r%d", i%5), fmt.Sprintf("r%d", (i+1)%5)},
			users: []string{fmt.Sprintf("u%d", i)},
		}
		wg.Go(func() {
			busy[i], errs[i] = ms[i%3].Reserve(t.Context(), fmt.Sprintf("k%d", i), wants[i].rooms, wants[i].users)
		})
	}
	wg.Wait()
	holder := map[string]string{} // room -> winning call
	for i := range calls {
		if errs[i] != nil {
			t.Fatalf("Reserve k%d: %v", i, errs[i])
		}
		call := fmt.Sprintf("k%d", i)
		for _, r := range wants[i].rooms {
			got := c.raw.Get(t.Context(), c.key("busy:room:"+r)).Val()
			if busy[i] == "" && got != call {
				t.Fatalf("k%d won but room %s is held by %q", i, r, got)
			}
			if busy[i] != "" && got == call {
				t.Fatalf("k%d lost (busy %s) but holds room %s", i, busy[i], r)
			}
			if busy[i] == "" {
				if prev, dup := holder[r]; dup {
					t.Fatalf("room %s won by both %s and %s", r, prev, call)
				}
				holder[r] = call
			}
		}
		u := wants[i].users[0]
		got := c.raw.Get(t.Context(), c.key("busy:user:"+u)).Val()
		if (busy[i] == "") != (got == call) {
			t.Fatalf("k%d (busy %q): user %s held by %q", i, busy[i], u, got)
		}
		if busy[i] != "" && !slices.Contains(wants[i].rooms, busy[i]) {
			t.Fatalf("k%d told %q is busy, which it never asked for", i, busy[i])
		}
	}
	if len(holder) == 0 {
		t.Fatal("no call won")
	}
	// Every room a winner asked for is held; a room no winner asked for is free.
	for i := range 5 {
		r := fmt.Sprintf("r%d", i)
		got := c.raw.Get(t.Context(), c.key("busy:room:"+r)).Val()
		if got != holder[r] {
			t.Fatalf("room %s held by %q, want %q", r, got, holder[r])
		}
	}
}

func TestReserveReportsFirstBusyAndIsRepeatable(t *testing.T) {
	c := newCluster(t)
	_, a := c.join("a", time.Minute)
	ctx := t.Context()
	if busy, err := a.Reserve(ctx, "k1", []string{"r1", "r2"}, []string{"1", "2"}); busy != "" || err != nil {
		t.Fatalf("Reserve k1 = %q, %v", busy, err)
	}
	if busy, err := a.Reserve(ctx, "k1", []string{"r1", "r2"}, []string{"1", "2"}); busy != "" || err != nil {
		t.Fatalf("Reserve k1 again = %q, %v; want success", busy, err)
	}
	if busy, err := a.Reserve(ctx, "k2", []string{"r3"}, []string{"2"}); busy != "2" || err != nil {
		t.Fatalf("Reserve k2 over user 2 = %q, %v; want busy 2", busy, err)
	}
	if c.raw.Exists(ctx, c.key("busy:room:r3")).Val() != 0 {
		t.Fatal("a refused Reserve left room r3 reserved")
	}
	if k, err := a.CallOf(ctx, "r2"); k != "k1" || err != nil {
		t.Fatalf("CallOf r2 = %q, %v", k, err)
	}
	if k, err := a.CallOf(ctx, "r3"); k != "" || err != nil {
		t.Fatalf("CallOf r3 = %q, %v; want none", k, err)
	}
}

func TestUnreserveLeavesAnotherCallsKeys(t *testing.T) {
	c := newCluster(t)
	_, a := c.join("a", time.Minute)
	ctx := t.Context()
	if busy, err := a.Reserve(ctx, "k1", []string{"r1"}, []string{"1"}); busy != "" || err != nil {
		t.Fatalf("Reserve k1 = %q, %v", busy, err)
	}
	// k2 unreserving (a stale or repeated close) what k1 holds frees nothing.
	if err := a.Unreserve(ctx, "k2", []string{"r1"}, []string{"1"}); err != nil {
		t.Fatal(err)
	}
	if k, _ := a.CallOf(ctx, "r1"); k != "k1" {
		t.Fatalf("after k2's Unreserve, r1 is %q's", k)
	}
	for range 2 { // idempotent
		if err := a.Unreserve(ctx, "k1", []string{"r1"}, []string{"1"}); err != nil {
			t.Fatal(err)
		}
	}
	// One key per EXISTS: on a Redis Cluster the two are in different slots.
	if n := c.raw.Exists(ctx, c.key("busy:room:r1")).Val() + c.raw.Exists(ctx, c.key("busy:user:1")).Val(); n != 0 {
		t.Fatalf("%d keys left after k1's Unreserve", n)
	}
}

func TestReserveByExpiredMemberIsRefused(t *testing.T) {
	c := newCluster(t)
	_, a := c.join("a", time.Minute)
	c.kill(a)
	if _, err := a.Reserve(t.Context(), "k", []string{"r"}, nil); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Reserve = %v, want ErrExpelled", err)
	}
	if c.raw.Exists(t.Context(), c.key("busy:room:r")).Val() != 0 {
		t.Fatal("an expired member reserved a room")
	}
}

// A reservation whose node died between its steps (one key taken, no rollback, no PERSIST)
// frees itself after its TTL; a completed one has none.
func TestReservationInProgressExpires(t *testing.T) {
	c := newCluster(t)
	s, a := c.join("a", time.Minute)
	ctx := t.Context()
	// As a node that took r1 for k1 and died: the first step alone, with a short TTL.
	if n, err := reserveOne.Run(ctx, s.rc, []string{s.busyRoomPrefix + "r1"}, "k1", 300).Int(); err != nil || n != 2 {
		t.Fatalf("reserveOne = %d, %v", n, err)
	}
	if busy, err := a.Reserve(ctx, "k2", []string{"r1"}, []string{"2"}); busy != "r1" || err != nil {
		t.Fatalf("Reserve k2 while k1's step holds r1 = %q, %v; want busy r1", busy, err)
	}
	if c.raw.Exists(ctx, c.key("busy:user:2")).Val() != 0 {
		t.Fatal("the refused Reserve left user 2 reserved")
	}
	waitFor(t, "k1's abandoned reservation expires", func() bool {
		busy, err := a.Reserve(ctx, "k2", []string{"r1"}, []string{"2"})
		return err == nil && busy == ""
	})
	for _, k := range []string{"busy:room:r1", "busy:user:2"} {
		if ttl := c.raw.PTTL(ctx, c.key(k)).Val(); ttl != -1 {
			t.Fatalf("%s has ttl %v after a completed Reserve, want none", k, ttl)
		}
	}
}
