package actors

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"roomengine/actors/fakeclock"
)

func newIdleHarness(t *testing.T, idle time.Duration, store *memStore, clock *fakeclock.Clock) *harness {
	t.Helper()
	return newHarnessWith(t, store, clock, func(c *EngineConfig) { c.IdleTimeout = idle })
}

func running(t *testing.T, e *Engine) int {
	t.Helper()
	n, _, err := e.ActiveRooms(bg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIdleRoomsArePassivatedAndComeBack(t *testing.T) {
	const idle = 10 * time.Minute
	h := newIdleHarness(t, idle, nil, nil)
	host, viewer := mustLogin(t, h.eng, "host"), mustLogin(t, h.eng, "viewer")
	room, _ := h.eng.CreateRoom(bg, host.ID, "")
	_ = h.eng.StreamPublished(bg, room.ID) // publishing: no deadline keeps it awake
	if _, _, err := h.eng.Play(bg, room.ID, viewer.ID); err != nil {
		t.Fatal(err)
	}
	if running(t, h.eng) != 1 {
		t.Fatal("room actor not running after use")
	}
	h.clock.Advance(idle + idle/4)
	waitFor(t, "passivation", func() bool { return running(t, h.eng) == 0 })
	// The read model still answers without the actor.
	if views := listAll(t, h.eng); len(views) != 1 || views[0].Status != StatusPublishing {
		t.Fatalf("list while passivated: %+v", views)
	}
	// The next message re-activates it from its snapshot, audience included.
	members, err := h.eng.Audience(bg, room.ID)
	if err != nil || len(members) != 1 || members[0] != viewer {
		t.Fatalf("audience after re-activation: %v %v", members, err)
	}
	if err := h.eng.Comment(bg, room.ID, viewer.ID, "back"); err != nil {
		t.Fatal(err)
	}
	if running(t, h.eng) != 1 {
		t.Fatal("room not re-activated by a message")
	}
}

// A passivated room still meets its deadline: the registry wakes it.
func TestDeadlineFiresWhilePassivated(t *testing.T) {
	const idle = time.Minute // shorter than the no-publish timeout (180 s)
	h := newIdleHarness(t, idle, nil, nil)
	host := mustLogin(t, h.eng, "host")
	room, _ := h.eng.CreateRoom(bg, host.ID, "")
	h.clock.Advance(idle + idle/4)
	waitFor(t, "passivation", func() bool { return running(t, h.eng) == 0 })
	h.clock.Advance(testCfg.NoPublishTimeout - idle - idle/4)
	waitFor(t, "expiry of a passivated room", func() bool {
		return len(listAll(t, h.eng)) == 0 && slices.Contains(h.pub.types(room.ID), 8)
	})
	if got := h.pub.types(room.ID); !slices.Equal(got, []int{8}) {
		t.Fatalf("pushes = %v", got)
	}
}

// Messages that arrive while a room is stopping are held and answered, none lost.
func TestNoMessageLostDuringPassivation(t *testing.T) {
	const idle = time.Minute
	h := newIdleHarness(t, idle, nil, nil)
	host := mustLogin(t, h.eng, "host")
	rooms := make([]Room, 20)
	for i := range rooms {
		rooms[i], _ = h.eng.CreateRoom(bg, host.ID, fmt.Sprint("room ", i))
		_ = h.eng.StreamPublished(bg, rooms[i].ID)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20*50)
	for round := range 5 {
		for _, r := range rooms {
			wg.Go(func() {
				for range 10 {
					if err := h.eng.Comment(bg, r.ID, host.ID, "x"); err != nil {
						errs <- err
					}
				}
			})
		}
		// Sweeps race the comments: some rooms stop while comments are on their way.
		h.clock.Advance(idle + time.Duration(round)*time.Second)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("comment lost around passivation: %v", err)
	}
	for _, r := range rooms {
		if n := len(h.pub.types(r.ID)); n != 1+50 {
			t.Fatalf("room %s: %d pushes, want 51", r.ID, n)
		}
	}
}

// After a restart rooms are not all started at once: the registry arms a wake-up per
// deadline, and the rest start on their first message.
func TestRestartStartsRoomsLazily(t *testing.T) {
	store, clock := newMemStore(), fakeclock.New(t0)
	first := newIdleHarness(t, 0, store, clock)
	host := mustLogin(t, first.eng, "host")
	var ids []string
	for i := range 50 {
		r, _ := first.eng.CreateRoom(bg, host.ID, fmt.Sprint(i))
		ids = append(ids, r.ID)
		if i%2 == 0 {
			_ = first.eng.StreamPublished(bg, r.ID)
		}
	}
	first.eng.Shutdown()
	second := newIdleHarness(t, 0, store, clock)
	if n := running(t, second.eng); n != 0 {
		t.Fatalf("%d room actors started eagerly after a restart", n)
	}
	if got := len(listAll(t, second.eng)); got != 50 {
		t.Fatalf("%d rooms listed after restart", got)
	}
	clock.Advance(testCfg.NoPublishTimeout)
	waitFor(t, "the 25 unpublished rooms to expire", func() bool { return len(listAll(t, second.eng)) == 25 })
	if err := second.eng.Comment(bg, ids[0], host.ID, "hi"); err != nil {
		t.Fatal(err)
	}
}

// A room re-activated while the store is away must not serve an empty audience: requests
// that need it answer 503 until the store is back, then the full audience is there.
func TestReactivationDuringStoreOutageKeepsAudience(t *testing.T) {
	const idle = time.Minute
	h := newIdleHarness(t, idle, nil, nil)
	host, viewer := mustLogin(t, h.eng, "host"), mustLogin(t, h.eng, "viewer")
	room, _ := h.eng.CreateRoom(bg, host.ID, "")
	_ = h.eng.StreamPublished(bg, room.ID)
	if _, _, err := h.eng.Play(bg, room.ID, viewer.ID); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(idle + idle/4)
	waitFor(t, "passivation", func() bool { return running(t, h.eng) == 0 })

	h.store.setFail(errDiskGone)
	if _, err := h.eng.Audience(bg, room.ID); codeOf(err) != CodeUnavailable {
		t.Fatalf("audience while the store is away: %v", err)
	}
	if err := h.eng.Comment(bg, room.ID, viewer.ID, "comments need no store"); err != nil {
		t.Fatal(err)
	}
	h.store.setFail(nil)
	members, err := h.eng.Audience(bg, room.ID)
	if err != nil || len(members) != 1 || members[0] != viewer {
		t.Fatalf("audience after the store came back: %v %v", members, err)
	}
}
