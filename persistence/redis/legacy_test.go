package redis

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
	"roomengine/persistence/redis/redistest"
)

// TestReadLegacy writes keys the way the old Node server did (numbers and strings mixed) and
// reads them back.
func TestReadLegacy(t *testing.T) {
	srv := redistest.Start(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.HSet(ctx, "old/user/list",
		"1", `{"id":1,"name":"alice"}`,
		"2", `{"id":"2","name":"bob"}`,
		"10", `{"name":"carol"}`,
		"x7", `{"id":"x7","name":"bad id"}`,
		"3", `{"id":4,"name":"mismatch"}`,
		"5", `not json`,
	).Err())
	must(rdb.Set(ctx, "old_user_ID_Index", "12", 0).Err())
	must(rdb.HSet(ctx, "old/live/list",
		"aaaaaaaaaa", `{"uid":1,"name":"alice","roomId":"aaaaaaaaaa","rtmpUrl":"rtmp://x/A/aaaaaaaaaa","status":1,"type":2,"isMixReady":true,"isMixed":false,"mixedStatus":0,"description":"hi","createTime":"2026-11-25 08:06:12"}`,
		"bbbbbbbbbb", `{"uid":"2","name":"bob","roomId":"bbbbbbbbbb","status":"0","type":"2","isMixReady":"false","isMixed":1,"mixedStatus":"1","createTime":"2026-11-25 08:07:00"}`,
		"cccccccccc", `{"uid":1,"roomId":"dddddddddd"}`,
	).Err())
	must(rdb.HSet(ctx, "old/inviter/list", "1", `{}`, "2", `{}`).Err())
	// Keys of another prefix are not read.
	must(rdb.HSet(ctx, "mns/user/list", "99", `{"id":99,"name":"other"}`).Err())

	got, err := ReadLegacy(ctx, LegacySource{Addr: srv.Addr(), Prefix: "old"})
	if err != nil {
		t.Fatal(err)
	}
	wantUsers := []actors.User{{ID: "1", Name: "alice"}, {ID: "2", Name: "bob"}, {ID: "10", Name: "carol"}}
	if !slices.Equal(got.Users, wantUsers) {
		t.Errorf("users = %v, want %v", got.Users, wantUsers)
	}
	if got.LastID != 12 || got.Calls != 2 {
		t.Errorf("last id %d, calls %d", got.LastID, got.Calls)
	}
	if len(got.Skipped) != 4 {
		t.Errorf("skipped %d records, want 4 (x7, 3, 5, cccccccccc): %q", len(got.Skipped), got.Skipped)
	}
	want := []LegacyRoom{
		{RoomID: "aaaaaaaaaa", UID: "1", Name: "alice", RtmpURL: "rtmp://x/A/aaaaaaaaaa", Status: 1, Type: 2,
			IsMixReady: true, Description: "hi", CreateTime: "2026-11-25 08:06:12"},
		{RoomID: "bbbbbbbbbb", UID: "2", Name: "bob", Status: 0, Type: 2, IsMixed: true, MixedStatus: 1,
			CreateTime: "2026-11-25 08:07:00"},
	}
	if !slices.Equal(got.Rooms, want) {
		t.Errorf("rooms =\n%+v\nwant\n%+v", got.Rooms, want)
	}

	// No legacy data at all is not an error.
	empty, err := ReadLegacy(ctx, LegacySource{Addr: srv.Addr(), Prefix: "none"})
	if err != nil || len(empty.Users)+len(empty.Rooms)+empty.Calls != 0 || empty.LastID != 0 {
		t.Fatalf("empty: %+v, %v", empty, err)
	}
	// A counter that is not a number stops the read.
	must(rdb.Set(ctx, "bad_user_ID_Index", "twelve", 0).Err())
	if _, err := ReadLegacy(ctx, LegacySource{Addr: srv.Addr(), Prefix: "bad"}); err == nil {
		t.Fatal("a non-numeric counter was accepted")
	}
}

// TestImportUsers: imported users keep their ids, the counter moves past them (and past a
// reserved id), a conflicting user stops its batch, and importing again is harmless.
func TestImportUsers(t *testing.T) {
	srv := redistest.Start(t)
	s := openT(t, Options{Addr: srv.Addr(), KeyPrefix: newPrefix("import")})
	ctx := t.Context()

	// 1,200 users: three batches.
	var users []actors.User
	for i := 1; i <= 1200; i++ {
		users = append(users, actors.User{ID: fmt.Sprint(i * 2), Name: fmt.Sprint("u", i)})
	}
	if err := s.ImportUsers(ctx, users); err != nil {
		t.Fatal(err)
	}
	if u, err := s.GetUser(ctx, "1000"); err != nil || u.Name != "u500" {
		t.Fatalf("GetUser(1000) = %v, %v", u, err)
	}
	if u, err := s.CreateUser(ctx, "next"); err != nil || u.ID != "2401" {
		t.Fatalf("first new user = %v, %v; want id 2401", u, err)
	}
	// Again, as a re-run would: no conflict, and the counter does not go back.
	if err := s.ImportUsers(ctx, users[:10]); err != nil {
		t.Fatalf("re-import: %v", err)
	}
	if err := s.ReserveUserIDs(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.CreateUser(ctx, "next"); u.ID != "2402" {
		t.Fatalf("after reserving a lower id: %v", u)
	}
	if err := s.ReserveUserIDs(ctx, 1_000_000_000_000); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.CreateUser(ctx, "next"); u.ID != "1000000000001" {
		t.Fatalf("after reserving 10^12: %v", u)
	}

	// A different user under an imported id: nothing of that batch is written.
	err := s.ImportUsers(ctx, []actors.User{{ID: "5000", Name: "new"}, {ID: "2", Name: "not u1"}})
	if !errors.Is(err, ErrUserConflict) {
		t.Fatalf("conflict: %v", err)
	}
	if _, err := s.GetUser(ctx, "5000"); !errors.Is(err, actors.ErrNotFound) {
		t.Fatalf("user 5000 of the refused batch: %v", err)
	}
	if u, _ := s.GetUser(ctx, "2"); u.Name != "u1" {
		t.Fatalf("user 2 overwritten: %v", u)
	}
	if err := s.ImportUsers(ctx, []actors.User{{ID: "07", Name: "x"}}); err == nil {
		t.Fatal("a non-canonical id was imported")
	}
}
