// Package storetest is the contract every actors.Store implementation must pass. The
// embedded and Redis stores run the same suite so that the engine can switch between them
// without noticing (docs/architecture.md, stores).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"roomengine/actors"
)

// Run runs the contract suite. newStore must return a store that has never allocated a
// user id (ids are checked from "1") and that no other test shares. newStore owns the
// store's lifetime and should close it in t.Cleanup; one subtest closes the store itself,
// so that cleanup must tolerate a second Close.
func Run(t *testing.T, newStore func(t *testing.T) actors.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s actors.Store)
	}{
		{"CreateUserSequentialIDs", testCreateUserSequential},
		{"CreateUserConcurrentDistinctIDs", testCreateUserConcurrent},
		{"GetUser", testGetUser},
		{"SaveRoomRoundTrip", testSaveRoomRoundTrip},
		{"SaveRoomUpsert", testSaveRoomUpsert},
		{"LoadRoomsEmpty", testLoadRoomsEmpty},
		{"DeleteRoom", testDeleteRoom},
		{"AudienceIdempotent", testAudienceIdempotent},
		{"AudienceNumericOrder", testAudienceNumericOrder},
		{"AudiencePerRoom", testAudiencePerRoom},
		{"ResetAll", testResetAll},
		{"ResetAllKeepsCounter", testResetAllKeepsCounter},
		{"ResetRoom", testResetRoom},
		{"ResetUser", testResetUser},
		{"ResetHighestUserKeepsCounter", testResetHighestUser},
		{"ConcurrentMixedWrites", testConcurrentMixed},
		{"CallsRoundTripAndDelete", testCalls},
		{"CancelledContext", testCancelledContext},
		{"Ping", testPing},
		{"UseAfterClose", testUseAfterClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// RunDurable checks that data survives Close and a reopen, for stores that keep their
// data outside the process. open is called several times with the same dir and must
// return a store over the data left there by the previous one (the first call sees a
// fresh dir). Run's requirements on newStore apply to the first store.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) actors.Store) {
	t.Helper()
	t.Run("ReopenKeepsEverything", func(t *testing.T) { testReopen(t, open) })
	t.Run("ReopenKeepsCounterAfterReset", func(t *testing.T) { testReopenCounter(t, open) })
}

// ctx bounds each subtest so that a deadlocked store fails the test instead of hanging
// the whole run until the go test timeout.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustCreate(t *testing.T, s actors.Store, name string) actors.User {
	t.Helper()
	u, err := s.CreateUser(ctx(t), name)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	if u.Name != name {
		t.Fatalf("CreateUser(%q) returned name %q", name, u.Name)
	}
	return u
}

func mustSave(t *testing.T, s actors.Store, r actors.Room) {
	t.Helper()
	if err := s.SaveRoom(ctx(t), r); err != nil {
		t.Fatalf("SaveRoom(%s): %v", r.ID, err)
	}
}

func mustAdd(t *testing.T, s actors.Store, roomID string, u actors.User) {
	t.Helper()
	if err := s.AddAudience(ctx(t), roomID, u); err != nil {
		t.Fatalf("AddAudience(%s, %s): %v", roomID, u.ID, err)
	}
}

func mustReset(t *testing.T, s actors.Store, key string) {
	t.Helper()
	if err := s.Reset(ctx(t), key); err != nil {
		t.Fatalf("Reset(%q): %v", key, err)
	}
}

func loadRooms(t *testing.T, s actors.Store) map[string]actors.Room {
	t.Helper()
	rooms, err := s.LoadRooms(ctx(t))
	if err != nil {
		t.Fatalf("LoadRooms: %v", err)
	}
	m := make(map[string]actors.Room, len(rooms))
	for _, r := range rooms {
		if _, dup := m[r.ID]; dup {
			t.Fatalf("LoadRooms returned room %s twice", r.ID)
		}
		m[r.ID] = r
	}
	return m
}

func loadAudience(t *testing.T, s actors.Store, roomID string) []actors.User {
	t.Helper()
	us, err := s.LoadAudience(ctx(t), roomID)
	if err != nil {
		t.Fatalf("LoadAudience(%s): %v", roomID, err)
	}
	return us
}

func wantNotFound(t *testing.T, s actors.Store, id string) {
	t.Helper()
	u, err := s.GetUser(ctx(t), id)
	if !errors.Is(err, actors.ErrNotFound) {
		t.Fatalf("GetUser(%s) = %+v, %v; want ErrNotFound", id, u, err)
	}
}

func wantUser(t *testing.T, s actors.Store, want actors.User) {
	t.Helper()
	got, err := s.GetUser(ctx(t), want.ID)
	if err != nil {
		t.Fatalf("GetUser(%s): %v", want.ID, err)
	}
	if got != want {
		t.Fatalf("GetUser(%s) = %+v, want %+v", want.ID, got, want)
	}
}

func wantAudience(t *testing.T, s actors.Store, roomID string, want ...actors.User) {
	t.Helper()
	got := loadAudience(t, s, roomID)
	if len(got) == 0 && len(want) == 0 {
		return // nil and empty are both fine
	}
	if !slices.Equal(got, want) {
		t.Fatalf("LoadAudience(%s) = %+v, want %+v", roomID, got, want)
	}
}

// sampleRoom fills every field with a non-default value, so that a store that drops a
// field fails the round trip. Times carry nanoseconds and a non-UTC zone because JSON,
// Redis hashes and the like are where those get lost.
func sampleRoom(id string) actors.Room {
	zone := time.FixedZone("UTC+8", 8*3600)
	created := time.Date(2024, 5, 17, 9, 30, 15, 123456789, zone)
	return actors.Room{
		ID:                  id,
		UID:                 "42",
		Name:                "room " + id + " ✓ \"quoted\"",
		Description:         "line1\nline2",
		CreateTime:          created,
		Status:              actors.StatusPublishing,
		Type:                actors.TypeHost,
		Publishing:          true,
		IsMixReady:          true,
		IsMixed:             true,
		MixedStatus:         1,
		PushURL:             "rtmp://push.example.com/app/" + id + "?auth_key=1700000000-0-0-abc",
		NoPublishDeadline:   created.Add(90*time.Second + 7),
		TopicDeleteDeadline: created.Add(10*time.Minute + 11),
		CallID:              "call-" + id,
		CallHostRooms:       []string{id, "other-room"},
	}
}

// sameRoom compares times with Equal, since a round trip may change the zone or drop the
// monotonic reading, and everything else with ==.
func sameRoom(t *testing.T, got, want actors.Room) {
	t.Helper()
	times := []struct {
		name      string
		got, want time.Time
	}{
		{"CreateTime", got.CreateTime, want.CreateTime},
		{"NoPublishDeadline", got.NoPublishDeadline, want.NoPublishDeadline},
		{"TopicDeleteDeadline", got.TopicDeleteDeadline, want.TopicDeleteDeadline},
	}
	for _, tt := range times {
		if !tt.got.Equal(tt.want) {
			t.Errorf("room %s: %s = %v, want %v", want.ID, tt.name, tt.got, tt.want)
		}
		if tt.got.IsZero() != tt.want.IsZero() {
			t.Errorf("room %s: %s zero = %v, want %v", want.ID, tt.name, tt.got.IsZero(), tt.want.IsZero())
		}
	}
	got.CreateTime, want.CreateTime = time.Time{}, time.Time{}
	got.NoPublishDeadline, want.NoPublishDeadline = time.Time{}, time.Time{}
	got.TopicDeleteDeadline, want.TopicDeleteDeadline = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("room %s:\n got %+v\nwant %+v", want.ID, got, want)
	}
}

func testCreateUserSequential(t *testing.T, s actors.Store) {
	for i := 1; i <= 12; i++ {
		name := fmt.Sprintf("user %d", i)
		u := mustCreate(t, s, name)
		if want := strconv.Itoa(i); u.ID != want {
			t.Fatalf("user %d got id %q, want %q", i, u.ID, want)
		}
	}
}

func testCreateUserConcurrent(t *testing.T, s actors.Store) {
	const n = 500
	c := ctx(t)
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			u, err := s.CreateUser(c, "u"+strconv.Itoa(i))
			ids[i], errs[i] = u.ID, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	// On a fresh store the ids must be exactly 1..n: distinct, and no gaps or leaks.
	seen := make(map[int]int, n)
	for i, id := range ids {
		v, err := strconv.Atoi(id)
		if err != nil || strconv.Itoa(v) != id {
			t.Fatalf("goroutine %d got non-canonical id %q", i, id)
		}
		if j, dup := seen[v]; dup {
			t.Fatalf("goroutines %d and %d both got id %q", j, i, id)
		}
		seen[v] = i
		if v < 1 || v > n {
			t.Fatalf("goroutine %d got id %q, outside 1..%d", i, id, n)
		}
	}
	for i, id := range ids {
		wantUser(t, s, actors.User{ID: id, Name: "u" + strconv.Itoa(i)})
	}
	if u := mustCreate(t, s, "next"); u.ID != strconv.Itoa(n+1) {
		t.Fatalf("after %d users got id %q, want %d", n, u.ID, n+1)
	}
}

func testGetUser(t *testing.T, s actors.Store) {
	a := mustCreate(t, s, "Alice")
	b := mustCreate(t, s, "名字 with spaces \"and quotes\"")
	wantUser(t, s, a)
	wantUser(t, s, b)
	for _, id := range []string{"3", "0", "999", "01", "", "abc"} {
		wantNotFound(t, s, id)
	}
}

func testSaveRoomRoundTrip(t *testing.T, s actors.Store) {
	full := sampleRoom("a1b2c3d4e5")
	// A room with no deadlines and zero-valued flags: zero times must stay zero, not
	// come back as the Unix epoch or year 1 in another zone.
	bare := actors.Room{
		ID:         "0000000001",
		UID:        "7",
		Name:       "bare",
		CreateTime: time.Now(), // monotonic reading and local zone: both must not matter
		Status:     actors.StatusCreated,
		Type:       actors.TypeViewer,
	}
	costream := sampleRoom("ffffffffff")
	costream.Status = actors.StatusCostream
	costream.NoPublishDeadline = time.Time{}
	mustSave(t, s, full)
	mustSave(t, s, bare)
	mustSave(t, s, costream)

	got := loadRooms(t, s)
	if len(got) != 3 {
		t.Fatalf("LoadRooms returned %d rooms, want 3: %+v", len(got), got)
	}
	for _, want := range []actors.Room{full, bare, costream} {
		r, ok := got[want.ID]
		if !ok {
			t.Fatalf("LoadRooms lacks room %s", want.ID)
		}
		sameRoom(t, r, want)
	}
}

func testSaveRoomUpsert(t *testing.T, s actors.Store) {
	r := sampleRoom("abcdef0123")
	mustSave(t, s, r)
	other := sampleRoom("0123abcdef")
	mustSave(t, s, other)

	// The latest snapshot wins whole, including fields cleared back to zero.
	r.Status = actors.StatusEnded
	r.Publishing = false
	r.IsMixed = false
	r.MixedStatus = 0
	r.CallID = ""
	r.NoPublishDeadline = time.Time{}
	r.TopicDeleteDeadline = r.CreateTime.Add(time.Hour + 3)
	r.Name = "renamed"
	mustSave(t, s, r)

	got := loadRooms(t, s)
	if len(got) != 2 {
		t.Fatalf("LoadRooms returned %d rooms, want 2", len(got))
	}
	sameRoom(t, got[r.ID], r)
	sameRoom(t, got[other.ID], other)
}

func testLoadRoomsEmpty(t *testing.T, s actors.Store) {
	if got := loadRooms(t, s); len(got) != 0 {
		t.Fatalf("fresh store has rooms: %+v", got)
	}
	wantAudience(t, s, "nosuchroom")
}

func testDeleteRoom(t *testing.T, s actors.Store) {
	keep, gone := sampleRoom("1111111111"), sampleRoom("2222222222")
	mustSave(t, s, keep)
	mustSave(t, s, gone)
	u1, u2 := mustCreate(t, s, "one"), mustCreate(t, s, "two")
	mustAdd(t, s, keep.ID, u1)
	mustAdd(t, s, gone.ID, u1)
	mustAdd(t, s, gone.ID, u2)

	if err := s.DeleteRoom(ctx(t), gone.ID); err != nil {
		t.Fatalf("DeleteRoom: %v", err)
	}
	got := loadRooms(t, s)
	if _, ok := got[gone.ID]; ok || len(got) != 1 {
		t.Fatalf("after DeleteRoom, LoadRooms = %+v", got)
	}
	sameRoom(t, got[keep.ID], keep)
	wantAudience(t, s, gone.ID)
	wantAudience(t, s, keep.ID, u1)
	// The users themselves are not the room's to delete.
	wantUser(t, s, u1)
	wantUser(t, s, u2)

	// Deleting again, or a room that never existed, is not an error: callers retry.
	if err := s.DeleteRoom(ctx(t), gone.ID); err != nil {
		t.Fatalf("second DeleteRoom: %v", err)
	}
	if err := s.DeleteRoom(ctx(t), "nosuchroom"); err != nil {
		t.Fatalf("DeleteRoom(unknown): %v", err)
	}

	// A re-created room with the same id starts with an empty audience.
	mustSave(t, s, gone)
	wantAudience(t, s, gone.ID)
}

func testAudienceIdempotent(t *testing.T, s actors.Store) {
	room := sampleRoom("3333333333")
	mustSave(t, s, room)
	a, b := mustCreate(t, s, "a"), mustCreate(t, s, "b")

	mustAdd(t, s, room.ID, a)
	mustAdd(t, s, room.ID, a)
	mustAdd(t, s, room.ID, b)
	mustAdd(t, s, room.ID, a)
	wantAudience(t, s, room.ID, a, b)

	rm := func(uid string) {
		t.Helper()
		if err := s.RemoveAudience(ctx(t), room.ID, uid); err != nil {
			t.Fatalf("RemoveAudience(%s): %v", uid, err)
		}
	}
	rm(a.ID)
	wantAudience(t, s, room.ID, b)
	rm(a.ID)
	rm("12345")
	wantAudience(t, s, room.ID, b)
	rm(b.ID)
	wantAudience(t, s, room.ID)
	if err := s.RemoveAudience(ctx(t), "nosuchroom", a.ID); err != nil {
		t.Fatalf("RemoveAudience on unknown room: %v", err)
	}
	// Re-adding after removal works.
	mustAdd(t, s, room.ID, a)
	wantAudience(t, s, room.ID, a)
}

func testAudienceNumericOrder(t *testing.T, s actors.Store) {
	room := sampleRoom("4444444444")
	mustSave(t, s, room)
	// Inserted out of order and chosen so that byte order and numeric order differ.
	ids := []int{10, 9, 100, 2, 1, 11, 1000, 99, 20, 3}
	for _, id := range ids {
		mustAdd(t, s, room.ID, actors.User{ID: strconv.Itoa(id), Name: "n" + strconv.Itoa(id)})
	}
	slices.Sort(ids)
	want := make([]actors.User, len(ids))
	for i, id := range ids {
		want[i] = actors.User{ID: strconv.Itoa(id), Name: "n" + strconv.Itoa(id)}
	}
	wantAudience(t, s, room.ID, want...)
}

func testAudiencePerRoom(t *testing.T, s actors.Store) {
	r1, r2 := sampleRoom("5555555555"), sampleRoom("6666666666")
	mustSave(t, s, r1)
	mustSave(t, s, r2)
	a, b, c := mustCreate(t, s, "a"), mustCreate(t, s, "b"), mustCreate(t, s, "c")
	mustAdd(t, s, r1.ID, a)
	mustAdd(t, s, r1.ID, b)
	mustAdd(t, s, r2.ID, b)
	mustAdd(t, s, r2.ID, c)
	if err := s.RemoveAudience(ctx(t), r1.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	wantAudience(t, s, r1.ID, a)
	wantAudience(t, s, r2.ID, b, c)
}

func testResetAll(t *testing.T, s actors.Store) {
	users := []actors.User{mustCreate(t, s, "a"), mustCreate(t, s, "b")}
	rooms := []actors.Room{sampleRoom("7777777777"), sampleRoom("8888888888")}
	for _, r := range rooms {
		mustSave(t, s, r)
		for _, u := range users {
			mustAdd(t, s, r.ID, u)
		}
	}
	mustReset(t, s, "")
	for _, u := range users {
		wantNotFound(t, s, u.ID)
	}
	if got := loadRooms(t, s); len(got) != 0 {
		t.Fatalf("after Reset, LoadRooms = %+v", got)
	}
	for _, r := range rooms {
		wantAudience(t, s, r.ID)
	}
	// The store stays usable.
	mustSave(t, s, rooms[0])
	sameRoom(t, loadRooms(t, s)[rooms[0].ID], rooms[0])
	wantAudience(t, s, rooms[0].ID)
}

func testResetAllKeepsCounter(t *testing.T, s actors.Store) {
	for range 3 {
		mustCreate(t, s, "x")
	}
	mustReset(t, s, "")
	if u := mustCreate(t, s, "after"); u.ID != "4" {
		t.Fatalf("after Reset the next id is %q, want \"4\" (ids are never reused)", u.ID)
	}
	mustReset(t, s, "")
	mustReset(t, s, "")
	if u := mustCreate(t, s, "again"); u.ID != "5" {
		t.Fatalf("after two more Resets the next id is %q, want \"5\"", u.ID)
	}
	wantNotFound(t, s, "4")
}

func testResetRoom(t *testing.T, s actors.Store) {
	target, other := sampleRoom("9999999999"), sampleRoom("aaaaaaaaaa")
	mustSave(t, s, target)
	mustSave(t, s, other)
	u := mustCreate(t, s, "u")
	mustAdd(t, s, target.ID, u)
	mustAdd(t, s, other.ID, u)

	mustReset(t, s, target.ID)
	got := loadRooms(t, s)
	if _, ok := got[target.ID]; ok || len(got) != 1 {
		t.Fatalf("after Reset(room), LoadRooms = %+v", got)
	}
	sameRoom(t, got[other.ID], other)
	wantAudience(t, s, target.ID)
	wantAudience(t, s, other.ID, u)
	wantUser(t, s, u)

	// Unknown keys are not an error.
	mustReset(t, s, "nosuchkey")
}

func testResetUser(t *testing.T, s actors.Store) {
	a, b := mustCreate(t, s, "a"), mustCreate(t, s, "b")
	room := sampleRoom("bbbbbbbbbb")
	mustSave(t, s, room)
	mustAdd(t, s, room.ID, b)

	mustReset(t, s, a.ID)
	wantNotFound(t, s, a.ID)
	wantUser(t, s, b)
	got := loadRooms(t, s)
	if len(got) != 1 {
		t.Fatalf("Reset(user) touched rooms: %+v", got)
	}
	sameRoom(t, got[room.ID], room)
	wantAudience(t, s, room.ID, b)
}

func testResetHighestUser(t *testing.T, s actors.Store) {
	var last actors.User
	for range 3 {
		last = mustCreate(t, s, "x")
	}
	mustReset(t, s, last.ID)
	if u := mustCreate(t, s, "next"); u.ID != "4" {
		t.Fatalf("after deleting user %s the next id is %q, want \"4\"", last.ID, u.ID)
	}
}

// testConcurrentMixed has many goroutines write different kinds of records at once, so
// that a store that batches writes gets batches mixing every operation.
func testConcurrentMixed(t *testing.T, s actors.Store) {
	const rooms, members, saves = 20, 15, 10
	c := ctx(t)
	var wg sync.WaitGroup
	errc := make(chan error, rooms*(members*2+saves+2))
	for r := range rooms {
		id := fmt.Sprintf("%010x", r+1)
		wg.Go(func() {
			// One goroutine's writes to one room land in the order they were made.
			for i := range saves {
				room := sampleRoom(id)
				room.MixedStatus = i
				if err := s.SaveRoom(c, room); err != nil {
					errc <- err
					return
				}
			}
		})
		for m := range members {
			uid := strconv.Itoa(r*100 + m)
			wg.Go(func() {
				if err := s.AddAudience(c, id, actors.User{ID: uid, Name: "m"}); err != nil {
					errc <- err
					return
				}
				if m%2 == 1 {
					if err := s.RemoveAudience(c, id, uid); err != nil {
						errc <- err
					}
				}
			})
		}
		wg.Go(func() {
			if _, err := s.CreateUser(c, "c"); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("concurrent write: %v", err)
	}

	got := loadRooms(t, s)
	if len(got) != rooms {
		t.Fatalf("LoadRooms returned %d rooms, want %d", len(got), rooms)
	}
	for r := range rooms {
		id := fmt.Sprintf("%010x", r+1)
		want := sampleRoom(id)
		want.MixedStatus = saves - 1
		sameRoom(t, got[id], want)
		var wantMembers []actors.User
		for m := 0; m < members; m += 2 {
			wantMembers = append(wantMembers, actors.User{ID: strconv.Itoa(r*100 + m), Name: "m"})
		}
		wantAudience(t, s, id, wantMembers...)
	}
	if u := mustCreate(t, s, "last"); u.ID != strconv.Itoa(rooms+1) {
		t.Fatalf("next id %q, want %d", u.ID, rooms+1)
	}
}

func testCancelledContext(t *testing.T, s actors.Store) {
	room := sampleRoom("cccccccccc")
	mustSave(t, s, room)
	u := mustCreate(t, s, "u")

	c, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"CreateUser": func() error { _, err := s.CreateUser(c, "x"); return err },
		"GetUser":    func() error { _, err := s.GetUser(c, u.ID); return err },
		"SaveRoom":   func() error { return s.SaveRoom(c, room) },
		"DeleteRoom": func() error { return s.DeleteRoom(c, room.ID) },
		"LoadRooms":  func() error { _, err := s.LoadRooms(c); return err },
		"AddAudience": func() error {
			return s.AddAudience(c, room.ID, u)
		},
		"RemoveAudience": func() error { return s.RemoveAudience(c, room.ID, u.ID) },
		"LoadAudience":   func() error { _, err := s.LoadAudience(c, room.ID); return err },
		"Reset":          func() error { return s.Reset(c, room.ID) },
		"Ping":           func() error { return s.Ping(c) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", name, err)
		}
	}
	// A context that was already cancelled must not have let any write through; a
	// context cancelled during the call may (see the implementations' docs).
	wantUser(t, s, u)
	sameRoom(t, loadRooms(t, s)[room.ID], room)
	if v := mustCreate(t, s, "next"); v.ID != "2" {
		t.Fatalf("next id %q after cancelled CreateUser, want \"2\"", v.ID)
	}
}

func testPing(t *testing.T, s actors.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping on a healthy store: %v", err)
	}
}

func testUseAfterClose(t *testing.T, s actors.Store) {
	mustCreate(t, s, "before")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ping(ctx(t)); err == nil {
		t.Error("Ping after Close returned nil")
	}
	if _, err := s.CreateUser(ctx(t), "after"); err == nil {
		t.Error("CreateUser after Close returned nil")
	}
	if err := s.SaveRoom(ctx(t), sampleRoom("dddddddddd")); err == nil {
		t.Error("SaveRoom after Close returned nil")
	}
}

func testReopen(t *testing.T, open func(t *testing.T, dir string) actors.Store) {
	dir := t.TempDir()
	s := open(t, dir)
	a, b := mustCreate(t, s, "a"), mustCreate(t, s, "b")
	gone := mustCreate(t, s, "gone")
	mustReset(t, s, gone.ID)
	full := sampleRoom("eeeeeeeeee")
	bare := actors.Room{ID: "e0e0e0e0e0", UID: a.ID, Name: "bare", CreateTime: time.Now(), Type: actors.TypeHost}
	mustSave(t, s, full)
	mustSave(t, s, bare)
	mustAdd(t, s, full.ID, b)
	mustAdd(t, s, full.ID, a)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping after reopen: %v", err)
	}
	wantUser(t, s, a)
	wantUser(t, s, b)
	wantNotFound(t, s, gone.ID)
	got := loadRooms(t, s)
	if len(got) != 2 {
		t.Fatalf("after reopen LoadRooms returned %d rooms, want 2", len(got))
	}
	sameRoom(t, got[full.ID], full)
	sameRoom(t, got[bare.ID], bare)
	wantAudience(t, s, full.ID, a, b)
	wantAudience(t, s, bare.ID)
	if u := mustCreate(t, s, "c"); u.ID != "4" {
		t.Fatalf("after reopen the next id is %q, want \"4\"", u.ID)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func testReopenCounter(t *testing.T, open func(t *testing.T, dir string) actors.Store) {
	dir := t.TempDir()
	s := open(t, dir)
	for range 5 {
		mustCreate(t, s, "x")
	}
	mustReset(t, s, "")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	if got := loadRooms(t, s); len(got) != 0 {
		t.Fatalf("rooms after Reset and reopen: %+v", got)
	}
	wantNotFound(t, s, "5")
	if u := mustCreate(t, s, "y"); u.ID != "6" {
		t.Fatalf("after Reset and reopen the next id is %q, want \"6\"", u.ID)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func sampleCall(id string) actors.Call {
	return actors.Call{
		ID: id, Layout: "side_by_side", Phase: actors.PhaseStarting,
		Inviter:    actors.CallSide{RoomID: "aaaaaaaaaa", UID: "1", Name: "alice", Type: actors.TypeHost, Ready: true},
		Invitee:    actors.CallSide{RoomID: "bbbbbbbbbb", UID: "2", Name: "bob", Type: actors.TypeViewer},
		Legs:       []actors.MixLeg{{Main: "aaaaaaaaaa", Mix: "bbbbbbbbbb", State: "starting", Attempt: 2, Streams: []string{"s1"}}},
		Results:    []string{"a|b|Success"},
		CreateTime: time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.FixedZone("CST", 8*3600)),
	}
}

func testCalls(t *testing.T, s actors.Store) {
	if err := s.SaveCall(ctx(t), sampleCall("c1")); err != nil {
		t.Fatal(err)
	}
	second := sampleCall("c2")
	second.Phase = actors.PhaseMixed
	if err := s.SaveCall(ctx(t), second); err != nil {
		t.Fatal(err)
	}
	second.Phase = actors.PhaseClosing // upsert
	if err := s.SaveCall(ctx(t), second); err != nil {
		t.Fatal(err)
	}
	calls, err := s.LoadCalls(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]actors.Call{}
	for _, c := range calls {
		byID[c.ID] = c
	}
	want := sampleCall("c1")
	got := byID["c1"]
	if len(byID) != 2 || byID["c2"].Phase != actors.PhaseClosing || !got.CreateTime.Equal(want.CreateTime) ||
		got.Inviter != want.Inviter || got.Invitee != want.Invitee || len(got.Legs) != 1 ||
		got.Legs[0].Attempt != 2 || got.Legs[0].Streams[0] != "s1" || got.Results[0] != "a|b|Success" {
		t.Fatalf("calls after round trip: %+v", calls)
	}
	for range 2 { // idempotent
		if err := s.DeleteCall(ctx(t), "c1"); err != nil {
			t.Fatal(err)
		}
	}
	if calls, _ := s.LoadCalls(ctx(t)); len(calls) != 1 || calls[0].ID != "c2" {
		t.Fatalf("calls after delete: %+v", calls)
	}
	mustReset(t, s, "")
	if calls, _ := s.LoadCalls(ctx(t)); len(calls) != 0 {
		t.Fatalf("calls after reset: %+v", calls)
	}
}
