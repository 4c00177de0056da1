package redis

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
	"roomengine/persistence/redis/redistest"
)

// writeOldLayout writes what a store of the previous key layout left behind: counter 7,
// users 3 and 5, room 10 with an audience, call c1, a CreateUser marker.
func writeOldLayout(t *testing.T, raw *goredis.Client, p string) {
	t.Helper()
	ctx := t.Context()
	room, _ := json.Marshal(actors.Room{ID: "10", UID: "3", Name: "old room"})
	call, _ := json.Marshal(actors.Call{ID: "c1", Layout: "L"})
	aud, _ := json.Marshal(actors.User{ID: "5", Name: "five"})
	_, err := raw.Pipelined(ctx, func(pp goredis.Pipeliner) error {
		pp.Set(ctx, p+":user:nextid", "7", 0)
		pp.HSet(ctx, p+":user:3", "name", "three")
		pp.HSet(ctx, p+":user:5", "name", "five")
		pp.Set(ctx, p+":user:req:abc", "5", 0)
		pp.Set(ctx, p+":room:10", room, 0)
		pp.SAdd(ctx, p+":rooms", "10")
		pp.HSet(ctx, p+":audience:10", "5", aud)
		pp.Set(ctx, p+":call:c1", call, 0)
		pp.SAdd(ctx, p+":calls", "c1")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkMigrated checks that s reads everything writeOldLayout wrote and that no key of the
// old layout is left but the marker, which expires.
func checkMigrated(t *testing.T, s *Store, raw *goredis.Client, p string) {
	t.Helper()
	ctx := t.Context()
	if u, err := s.GetUser(ctx, "3"); err != nil || u.Name != "three" {
		t.Errorf("user 3 = %+v, %v", u, err)
	}
	if rooms, err := s.LoadRooms(ctx); err != nil || len(rooms) != 1 || rooms[0].Name != "old room" {
		t.Errorf("rooms = %+v, %v", rooms, err)
	}
	if r, err := s.LoadRoom(ctx, "10"); err != nil || r.UID != "3" {
		t.Errorf("room 10 = %+v, %v", r, err)
	}
	if aud, err := s.LoadAudience(ctx, "10"); err != nil || len(aud) != 1 || aud[0].Name != "five" {
		t.Errorf("audience = %+v, %v", aud, err)
	}
	if calls, err := s.LoadCalls(ctx); err != nil || len(calls) != 1 || calls[0].Layout != "L" {
		t.Errorf("calls = %+v, %v", calls, err)
	}
	keys, err := raw.Keys(ctx, p+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{":user:nextid", ":user:3", ":user:5", ":room:10", ":rooms", ":audience:10", ":call:c1", ":calls"} {
		if slices.Contains(keys, p+old) {
			t.Errorf("old key %s%s is still there", p, old)
		}
	}
}

// TestMigratesOldKeyLayout: a store opened on data of the previous key layout reads all of
// it, allocates ids after the old counter, and a second Open changes nothing.
func TestMigratesOldKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	p := newPrefix("migrate")
	writeOldLayout(t, raw, p)

	s := openT(t, Options{Addr: srv.Addr(), KeyPrefix: p})
	checkMigrated(t, s, raw, p)
	if u, err := s.CreateUser(t.Context(), "new"); err != nil || u.ID != "8" {
		t.Fatalf("first user after the move = %+v, %v; want id 8", u, err)
	}
	if v, _ := raw.Get(t.Context(), p+":layout").Result(); v != layoutVersion {
		t.Fatalf("layout marker = %q", v)
	}
	checkMigrated(t, openT(t, Options{Addr: srv.Addr(), KeyPrefix: p}), raw, p)
}

// TestMigrationRacesItself: nodes starting together move the same old keys at once; each
// step is idempotent, so every one of them opens and nothing is lost.
func TestMigrationRacesItself(t *testing.T) {
	srv := redistest.Start(t)
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	p := newPrefix("migrate-race")
	writeOldLayout(t, raw, p)
	stores := make([]*Store, 4)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			s, err := Open(t.Context(), Options{Addr: srv.Addr(), KeyPrefix: p, Timeout: testTimeout})
			if err != nil {
				t.Errorf("Open %d: %v", i, err)
				return
			}
			stores[i] = s
		})
	}
	wg.Wait()
	for _, s := range stores {
		if s != nil {
			checkMigrated(t, s, raw, p)
			s.Close()
		}
	}
}
