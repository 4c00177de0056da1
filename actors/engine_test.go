package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"roomengine/actors/fakeclock"
)

var bg = context.Background()

func codeOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return -1
	}
	return CodeOK
}

func listAll(t *testing.T, e *Engine) []RoomView {
	t.Helper()
	raw, err := e.List(bg, ListQuery{RoomID: "-1"})
	if err != nil {
		t.Fatal(err)
	}
	var out []RoomView
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("list is not JSON: %v: %s", err, raw)
	}
	return out
}

func mustLogin(t *testing.T, e *Engine, name string) User {
	t.Helper()
	u, err := e.Login(bg, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRoomLifecycleThroughActors(t *testing.T) {
	h := newHarness(t, nil, nil)
	alice, carol := mustLogin(t, h.eng, "alice"), mustLogin(t, h.eng, "carol")
	room, err := h.eng.CreateRoom(bg, alice.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if room.Description != "alice的直播" || room.Status != StatusCreated || room.Type != TypeHost {
		t.Fatalf("created room: %+v", room)
	}
	if _, _, err := h.eng.Play(bg, room.ID, carol.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.Comment(bg, room.ID, carol.ID, "hello 你好"); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.Like(bg, room.ID, carol.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.StreamPublished(bg, room.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.MixAvailable(bg, room.ID); err != nil {
		t.Fatal(err)
	}
	listed, _ := h.eng.List(bg, ListQuery{})
	var views []RoomView
	_ = json.Unmarshal(listed, &views)
	if len(views) != 1 || views[0].RoomID != room.ID || views[0].Status != 1 || !views[0].IsMixReady {
		t.Fatalf("listed rooms after publish + mix-ready: %s", listed)
	}
	members, _ := h.eng.Audience(bg, room.ID)
	if len(members) != 1 || members[0] != carol {
		t.Fatalf("audience = %v", members)
	}
	if err := h.eng.AudienceLeave(bg, room.ID, carol.ID); err != nil {
		t.Fatal(err)
	}
	if members, _ := h.eng.Audience(bg, room.ID); len(members) != 0 {
		t.Fatalf("audience after leave = %v", members)
	}
	if err := h.eng.Leave(bg, room.ID); err != nil {
		t.Fatal(err)
	}
	if got := h.pub.types(room.ID); !slices.Equal(got, []int{6, 7, 9, 8}) {
		t.Fatalf("push types = %v", got)
	}
	if _, _, err := h.eng.Play(bg, room.ID, carol.ID); codeOf(err) != CodeNoSuchRoom {
		t.Fatalf("play after leave: %v", err)
	}
	if err := h.eng.Leave(bg, room.ID); codeOf(err) != CodeNoSuchRoom {
		t.Fatalf("second leave: %v", err)
	}
	if got := listAll(t, h.eng); len(got) != 0 {
		t.Fatalf("ended room still listed: %+v", got)
	}
	// The topic is deleted only after live.topicDeleteDelay.
	h.clock.Advance(testCfg.TopicDeleteDelay - time.Second)
	_, _ = h.eng.Audience(bg, room.ID)
	if ops := h.pub.topicOps(); !slices.Equal(ops, []string{"create:" + room.ID}) {
		t.Fatalf("topic ops before the delay: %v", ops)
	}
	h.clock.Advance(time.Second)
	waitFor(t, "topic deletion", func() bool { return len(h.pub.topicOps()) == 2 })
	waitFor(t, "tombstone removal", func() bool { _, ok := h.store.room(room.ID); return !ok })
}

func TestUnknownUsersAndRooms(t *testing.T) {
	h := newHarness(t, nil, nil)
	alice := mustLogin(t, h.eng, "alice")
	room, _ := h.eng.CreateRoom(bg, alice.ID, "x")
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"create unknown uid", func() error { _, err := h.eng.CreateRoom(bg, "999", ""); return err }(), CodeNoSuchUser},
		{"play unknown room", func() error { _, _, err := h.eng.Play(bg, "nosuchroom", alice.ID); return err }(), CodeNoSuchRoom},
		{"play unknown user", func() error { _, _, err := h.eng.Play(bg, room.ID, "999"); return err }(), CodeNoSuchUser},
		{"play unknown room and user", func() error { _, _, err := h.eng.Play(bg, "nosuchroom", "999"); return err }(), CodeNoSuchRoom},
		{"comment unknown room", h.eng.Comment(bg, "nosuchroom", alice.ID, "x"), CodeNoSuchRoom},
		{"comment unknown user", h.eng.Comment(bg, room.ID, "999", "x"), CodeNoSuchUser},
		{"like unknown user", h.eng.Like(bg, room.ID, "0"), CodeNoSuchUser},
		{"leave unknown room", h.eng.Leave(bg, "nosuchroom"), CodeNoSuchRoom},
		{"publish unknown stream", h.eng.StreamPublished(bg, "nosuchroom"), CodeOK},
		{"audience leave unknown", h.eng.AudienceLeave(bg, "nosuchroom", "999"), CodeOK},
	}
	for _, c := range cases {
		if got := codeOf(c.err); got != c.want {
			t.Errorf("%s: code %d, want %d (%v)", c.name, got, c.want, c.err)
		}
	}
	if got := h.pub.types("nosuchroom"); len(got) != 0 {
		t.Fatalf("pushes to an unknown room: %v", got)
	}
}

func TestNoPublishExpiryWithFakeClock(t *testing.T) {
	h := newHarness(t, nil, nil)
	alice := mustLogin(t, h.eng, "alice")
	room, _ := h.eng.CreateRoom(bg, alice.ID, "")
	h.clock.Advance(testCfg.NoPublishTimeout - time.Millisecond)
	if got := listAll(t, h.eng); len(got) != 1 {
		t.Fatalf("room expired early: %v", got)
	}
	h.clock.Advance(time.Millisecond)
	// The registry hears of the end before the push goes out: await both.
	waitFor(t, "expiry", func() bool {
		return len(listAll(t, h.eng)) == 0 && slices.Contains(h.pub.types(room.ID), 8)
	})
	if got := h.pub.types(room.ID); !slices.Equal(got, []int{8}) {
		t.Fatalf("pushes = %v, want [8]", got)
	}
	if ops := h.pub.topicOps(); !slices.Equal(ops, []string{"create:" + room.ID, "delete:" + room.ID}) {
		t.Fatalf("topic ops = %v", ops)
	}
	if _, ok := h.store.room(room.ID); ok {
		t.Fatal("expired room still in the store")
	}
}

func TestPublishDoneRearmsExpiry(t *testing.T) {
	h := newHarness(t, nil, nil)
	alice := mustLogin(t, h.eng, "alice")
	room, _ := h.eng.CreateRoom(bg, alice.ID, "")
	_ = h.eng.StreamPublished(bg, room.ID)
	h.clock.Advance(time.Hour) // publishing: no expiry however long
	if got := listAll(t, h.eng); len(got) != 1 {
		t.Fatal("a publishing room expired")
	}
	_ = h.eng.StreamPublishDone(bg, room.ID)
	h.clock.Advance(testCfg.NoPublishTimeout)
	waitFor(t, "expiry after publish_done", func() bool {
		return len(listAll(t, h.eng)) == 0 && slices.Contains(h.pub.types(room.ID), 8)
	})
	if got := h.pub.types(room.ID); !slices.Equal(got, []int{9, 10, 8}) {
		t.Fatalf("pushes = %v", got)
	}
}

// A restart re-arms the expiry from the stored absolute deadline, not from the restart time.
func TestExpirySurvivesRestart(t *testing.T) {
	store := newMemStore()
	clock := fakeclock.New(t0)
	first := newHarness(t, store, clock)
	alice := mustLogin(t, first.eng, "alice")
	room, _ := first.eng.CreateRoom(bg, alice.ID, "")
	first.eng.Shutdown()

	clock.Advance(100 * time.Second) // down for 100 s; nothing fires: the engine is gone
	second := newHarness(t, store, clock)
	if got := listAll(t, second.eng); len(got) != 1 || got[0].RoomID != room.ID {
		t.Fatalf("room not restored: %v", got)
	}
	clock.Advance(testCfg.NoPublishTimeout - 100*time.Second - time.Millisecond)
	if got := listAll(t, second.eng); len(got) != 1 {
		t.Fatal("expired before its original deadline")
	}
	clock.Advance(time.Millisecond)
	waitFor(t, "expiry at the original deadline", func() bool {
		return len(listAll(t, second.eng)) == 0 && slices.Contains(second.pub.types(room.ID), 8)
	})
	if got := second.pub.types(room.ID); !slices.Equal(got, []int{8}) {
		t.Fatalf("pushes after restart = %v", got)
	}
}

// A change the store refuses is not applied: the reply is 503, memory and pushes unchanged.
func TestStoreFailureChangesNothing(t *testing.T) {
	h := newHarness(t, nil, nil)
	alice, carol := mustLogin(t, h.eng, "alice"), mustLogin(t, h.eng, "carol")
	room, _ := h.eng.CreateRoom(bg, alice.ID, "")
	h.store.setFail(errDiskGone)

	if _, err := h.eng.Login(bg, "bob"); codeOf(err) != CodeUnavailable {
		t.Fatalf("login with a failing store: %v", err)
	}
	if _, err := h.eng.CreateRoom(bg, alice.ID, ""); codeOf(err) != CodeUnavailable {
		t.Fatalf("create with a failing store: %v", err)
	}
	if _, _, err := h.eng.Play(bg, room.ID, carol.ID); codeOf(err) != CodeUnavailable {
		t.Fatalf("play with a failing store: %v", err)
	}
	if err := h.eng.StreamPublished(bg, room.ID); codeOf(err) != CodeUnavailable {
		t.Fatalf("publish with a failing store: %v", err)
	}
	// Comments and likes do not touch the store, so they keep working.
	if err := h.eng.Comment(bg, room.ID, carol.ID, "still here"); err != nil {
		t.Fatalf("comment with a failing store: %v", err)
	}
	h.store.setFail(nil)
	views := listAll(t, h.eng)
	if len(views) != 1 || views[0].Status != StatusCreated {
		t.Fatalf("rooms after failures: %+v", views)
	}
	if members, _ := h.eng.Audience(bg, room.ID); len(members) != 0 {
		t.Fatalf("audience changed by a failed play: %v", members)
	}
	if got := h.pub.types(room.ID); !slices.Equal(got, []int{6}) {
		t.Fatalf("pushes = %v, want only the comment", got)
	}
	if u, _ := h.eng.Login(bg, "dave"); u.ID == "" {
		t.Fatal("login after recovery failed")
	}
}

func TestConcurrentLoginsGetDistinctIDs(t *testing.T) {
	h := newHarness(t, nil, nil)
	const n = 1000
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			u, err := h.eng.Login(bg, fmt.Sprint("user", i))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = u.ID
		})
	}
	wg.Wait()
	slices.SortFunc(ids, CompareIDs)
	for i, id := range ids {
		if id != fmt.Sprint(i+1) {
			t.Fatalf("ids are not 1..%d without gaps or duplicates: position %d has %q", n, i, id)
		}
	}
}

func TestConcurrentPlaysAndLeavesKeepAudienceConsistent(t *testing.T) {
	h := newHarness(t, nil, nil)
	host := mustLogin(t, h.eng, "host")
	room, _ := h.eng.CreateRoom(bg, host.ID, "")
	const n = 200
	viewers := make([]User, n)
	for i := range viewers {
		viewers[i] = mustLogin(t, h.eng, fmt.Sprint("viewer", i))
	}
	var wg sync.WaitGroup
	for i, v := range viewers {
		wg.Go(func() {
			if _, _, err := h.eng.Play(bg, room.ID, v.ID); err != nil {
				t.Error(err)
			}
			if i%2 == 0 { // every other viewer leaves again, twice
				for range 2 {
					if err := h.eng.AudienceLeave(bg, room.ID, v.ID); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	members, _ := h.eng.Audience(bg, room.ID)
	stored, _ := h.store.LoadAudience(bg, room.ID)
	if len(members) != n/2 || !slices.Equal(members, stored) {
		t.Fatalf("audience: %d in memory, %d stored, want %d equal", len(members), len(stored), n/2)
	}
	for _, m := range members {
		if CompareIDs(m.ID, viewers[0].ID) < 0 {
			t.Fatalf("unexpected member %v", m)
		}
	}
}

func TestResetWipesEverythingButTheIDCounter(t *testing.T) {
	h := newHarness(t, nil, nil)
	alice := mustLogin(t, h.eng, "alice")
	_, _ = h.eng.CreateRoom(bg, alice.ID, "")
	if err := h.eng.Reset(bg, ""); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, h.eng); len(got) != 0 {
		t.Fatalf("rooms after reset: %v", got)
	}
	if _, err := h.eng.User(bg, alice.ID); codeOf(err) != CodeNoSuchUser {
		t.Fatalf("user after reset: %v", err)
	}
}

// listingPublisher lists the rooms at the moment a push of type typ is published, the way a
// client that reacts to that push by calling /live/list would, only without any delay.
type listingPublisher struct {
	*recPublisher
	eng    func() *Engine
	typ    int
	listed chan []byte
}

func (p *listingPublisher) Publish(m Push) {
	p.recPublisher.Publish(m)
	if m.Type == p.typ {
		data, err := p.eng().List(context.Background(), ListQuery{RoomID: "-1"})
		if err != nil {
			panic(err)
		}
		p.listed <- data
	}
}

// A client that lists rooms in reaction to a push sees the rooms as the push says: the
// registry hears of the change before the push leaves.
func TestListAfterPushSeesTheChange(t *testing.T) {
	for _, c := range []struct {
		name string
		typ  int
		act  func(h *harness, roomID string)
	}{
		{"leave (type 8)", 8, func(h *harness, roomID string) { _ = h.eng.Leave(bg, roomID) }},
		{"publish (type 9)", 9, func(h *harness, roomID string) { _ = h.eng.StreamPublished(bg, roomID) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var eng *Engine
			pub := &listingPublisher{recPublisher: newRecPublisher(), eng: func() *Engine { return eng }, typ: c.typ, listed: make(chan []byte, 1)}
			h := newHarnessWith(t, nil, nil, func(cfg *EngineConfig) { cfg.Publisher = pub })
			eng = h.eng
			host := mustLogin(t, h.eng, "host")
			room, err := h.eng.CreateRoom(bg, host.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			go c.act(h, room.ID)
			data := <-pub.listed
			var rooms []map[string]any
			if err := json.Unmarshal(data, &rooms); err != nil {
				t.Fatal(err)
			}
			switch c.typ {
			case 8:
				if len(rooms) != 0 {
					t.Fatalf("listed at push 8: %s", data)
				}
			case 9:
				if len(rooms) != 1 || rooms[0]["status"] != float64(1) {
					t.Fatalf("listed at push 9: %s", data)
				}
			}
		})
	}
}

// A store that times out after carrying out the write (a Redis that hung and then ran the
// command): the creation is answered 503, and the room that landed in the store anyway is
// deleted once the store works again, so it does not reappear after a restart.
func TestFailedCreationIsUndoneInTheStore(t *testing.T) {
	h := newHarness(t, nil, nil)
	host := mustLogin(t, h.eng, "host")
	h.store.mu.Lock()
	h.store.timeoutAfterWrite = context.DeadlineExceeded
	h.store.mu.Unlock()
	if _, err := h.eng.CreateRoom(bg, host.ID, ""); codeOf(err) != CodeUnavailable {
		t.Fatalf("create during the hang: %v, want 503", err)
	}
	stored := func() int {
		rooms, _ := h.store.LoadRooms(bg)
		return len(rooms)
	}
	if n := stored(); n != 1 {
		t.Fatalf("%d rooms in the store: the fake should have carried out the write", n)
	}
	h.clock.Advance(time.Second) // the store still fails: the delete is retried
	h.store.mu.Lock()
	h.store.timeoutAfterWrite = nil
	h.store.mu.Unlock()
	// Each retry is armed by the previous one's callback, on its own goroutine: the clock
	// moves on until the delete has happened, not a fixed number of times (a busy machine
	// may arm a retry after a fixed series of advances is over).
	waitFor(t, "the room to be deleted from the store", func() bool {
		if stored() == 0 {
			return true
		}
		h.clock.Advance(5 * time.Second)
		return false
	})
	if n := len(listAll(t, h.eng)); n != 0 {
		t.Fatalf("%d rooms listed", n)
	}
	// A later creation is not touched.
	room, err := h.eng.CreateRoom(bg, host.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		h.clock.Advance(5 * time.Second)
	}
	if _, err := h.eng.Room(bg, room.ID); err != nil || stored() != 1 {
		t.Fatalf("the next room: %v, %d stored", err, stored())
	}
}
