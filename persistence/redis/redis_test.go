package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
	"roomengine/persistence/redis/redistest"
	"roomengine/persistence/storetest"
)

// prefixSeq hands out key prefixes so that tests sharing a server never see each other's
// keys or counters.
var prefixSeq atomic.Int64

func newPrefix(name string) string {
	return fmt.Sprintf("test%d-%s", prefixSeq.Add(1), name)
}

// testTimeout replaces the 500ms production default in tests that are about semantics,
// not latency: `make test` runs every package at once under -race on small CI machines,
// where hundreds of concurrent calls (the contract's 500 CreateUsers) can wait longer
// than that for a CPU. The outage tests set their own short timeouts.
const testTimeout = 10 * time.Second

// openT opens a store closed at the end of the test; a zero Timeout means testTimeout.
func openT(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = testTimeout
	}
	s, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) actors.Store {
		return openT(t, Options{Addr: srv.Addr(), KeyPrefix: newPrefix("contract")})
	})
}

// TestDurable maps each of the suite's directories to a key prefix. Every reopen after
// the first kills the server with SIGKILL and restarts it from its append-only file, so
// the suite checks that an acknowledged write survives a Redis crash, not just a new client.
func TestDurable(t *testing.T) {
	srv := redistest.Start(t)
	var mu sync.Mutex
	prefixes := map[string]string{}
	storetest.RunDurable(t, func(t *testing.T, dir string) actors.Store {
		mu.Lock()
		p, seen := prefixes[dir]
		if !seen {
			p = newPrefix("durable")
			prefixes[dir] = p
		}
		mu.Unlock()
		if seen {
			srv.Restart()
		}
		return openT(t, Options{Addr: srv.Addr(), KeyPrefix: p})
	})
}

// TestIDsUniqueAcrossNodes has two stores, as two nodes of a cluster would, allocate
// users concurrently from one Redis.
func TestIDsUniqueAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	p := newPrefix("nodes")
	nodes := []*Store{
		openT(t, Options{Addr: srv.Addr(), KeyPrefix: p}),
		openT(t, Options{Addr: srv.Addr(), KeyPrefix: p}),
	}
	const perNode = 300
	type result struct {
		u    actors.User
		node int
		err  error
	}
	results := make([]result, len(nodes)*perNode)
	var wg sync.WaitGroup
	for n, s := range nodes {
		for i := range perNode {
			k := n*perNode + i
			wg.Go(func() {
				u, err := s.CreateUser(t.Context(), "user "+strconv.Itoa(k))
				results[k] = result{u, n, err}
			})
		}
	}
	wg.Wait()

	seen := map[string]int{}
	for k, r := range results {
		if r.err != nil {
			t.Fatalf("node %d CreateUser: %v", r.node, r.err)
		}
		if j, dup := seen[r.u.ID]; dup {
			t.Fatalf("id %s given twice (calls %d and %d)", r.u.ID, j, k)
		}
		seen[r.u.ID] = k
	}
	// No id was skipped either: the counter is the only allocator.
	for i := 1; i <= len(results); i++ {
		if _, ok := seen[strconv.Itoa(i)]; !ok {
			t.Fatalf("id %d was never given out", i)
		}
	}
	// Each node sees the users the other created.
	for _, r := range results {
		other := nodes[1-r.node]
		got, err := other.GetUser(t.Context(), r.u.ID)
		if err != nil || got != r.u {
			t.Fatalf("node %d GetUser(%s) = %+v, %v; want %+v", 1-r.node, r.u.ID, got, err, r.u)
		}
	}
}

// TestOutageBoundedAndRecovers stops Redis under a live store: every call must fail within
// a bounded time (here 5 × Timeout; the point is that nothing hangs), and once Redis is
// back the same store serves again without being reopened.
func TestOutageBoundedAndRecovers(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 200 * time.Millisecond
	s := openT(t, Options{Addr: srv.Addr(), KeyPrefix: newPrefix("outage"), Timeout: timeout})
	room := actors.Room{ID: "0123456789", UID: "1", Name: "r", CreateTime: time.Now(), Type: actors.TypeHost}
	u, err := s.CreateUser(t.Context(), "before")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveRoom(t.Context(), room); err != nil {
		t.Fatal(err)
	}

	calls := []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
		{"CreateUser", func(ctx context.Context) error { _, err := s.CreateUser(ctx, "x"); return err }},
		{"GetUser", func(ctx context.Context) error { _, err := s.GetUser(ctx, u.ID); return err }},
		{"SaveRoom", func(ctx context.Context) error { return s.SaveRoom(ctx, room) }},
		{"AddAudience", func(ctx context.Context) error { return s.AddAudience(ctx, room.ID, u) }},
		{"RemoveAudience", func(ctx context.Context) error { return s.RemoveAudience(ctx, room.ID, u.ID) }},
		{"LoadAudience", func(ctx context.Context) error { _, err := s.LoadAudience(ctx, room.ID); return err }},
		{"LoadRooms", func(ctx context.Context) error { _, err := s.LoadRooms(ctx); return err }},
		{"DeleteRoom", func(ctx context.Context) error { return s.DeleteRoom(ctx, "fedcba9876") }},
		{"ResetKey", func(ctx context.Context) error { return s.Reset(ctx, "fedcba9876") }},
		{"ResetAll", func(ctx context.Context) error { return s.Reset(ctx, "") }},
	}

	srv.Stop()
	var slowest time.Duration
	for round := range 2 { // the second round meets the pool after its dial failures
		for _, c := range calls {
			start := time.Now()
			err := c.fn(t.Context())
			d := time.Since(start)
			slowest = max(slowest, d)
			if err == nil {
				t.Errorf("round %d: %s with Redis down returned nil", round, c.name)
			}
			if d > 5*timeout {
				t.Errorf("round %d: %s with Redis down took %v (timeout %v)", round, c.name, d, timeout)
			}
		}
	}
	// Concurrent callers are bounded too, not queued one behind another.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			start := time.Now()
			err := s.SaveRoom(t.Context(), room)
			if d := time.Since(start); err == nil || d > 5*timeout {
				t.Errorf("concurrent SaveRoom %d with Redis down: %v after %v", i, err, d)
			}
		})
	}
	wg.Wait()

	t.Logf("Redis down: slowest failing call took %v (timeout %v)", slowest, timeout)

	srv.Restart()
	back := time.Now()
	// The pool may need a moment to notice the server is back (go-redis probes a failing
	// address about once a second); within a few seconds the same store must serve.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.Ping(t.Context())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store still failing 10s after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("store served again %v after Redis came back", time.Since(back).Round(time.Millisecond))
	// What was acknowledged before the crash is still there (appendfsync always).
	if got, err := s.GetUser(t.Context(), u.ID); err != nil || got != u {
		t.Fatalf("GetUser after restart = %+v, %v; want %+v", got, err, u)
	}
	for _, c := range calls {
		if err := c.fn(t.Context()); err != nil {
			t.Errorf("%s after Redis came back: %v", c.name, err)
		}
	}
}

// TestKeysNamespacedByPrefix runs two prefixes on one server, one of them full of glob
// characters, and checks that neither sees nor wipes the other's data.
func TestKeysNamespacedByPrefix(t *testing.T) {
	srv := redistest.Start(t)
	a := openT(t, Options{Addr: srv.Addr(), KeyPrefix: "ns*[a]?"})
	b := openT(t, Options{Addr: srv.Addr(), KeyPrefix: "ns1"})
	ctx := t.Context()

	ua, err := a.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	ub, err := b.CreateUser(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if ua.ID != "1" || ub.ID != "1" {
		t.Fatalf("each prefix has its own counter: got ids %s and %s, want 1 and 1", ua.ID, ub.ID)
	}
	ra := actors.Room{ID: "aaaaaaaaaa", UID: ua.ID, Name: "a", CreateTime: time.Now()}
	rb := actors.Room{ID: "bbbbbbbbbb", UID: ub.ID, Name: "b", CreateTime: time.Now()}
	for _, w := range []error{
		a.SaveRoom(ctx, ra), b.SaveRoom(ctx, rb),
		a.AddAudience(ctx, ra.ID, ua), b.AddAudience(ctx, ra.ID, ub),
	} {
		if w != nil {
			t.Fatal(w)
		}
	}
	roomIDs := func(s *Store) []string {
		rooms, err := s.LoadRooms(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rooms {
			ids = append(ids, r.ID)
		}
		return ids
	}
	if got := roomIDs(a); !slices.Equal(got, []string{ra.ID}) {
		t.Errorf("prefix a sees rooms %v", got)
	}
	if got := roomIDs(b); !slices.Equal(got, []string{rb.ID}) {
		t.Errorf("prefix b sees rooms %v", got)
	}
	if got, _ := a.GetUser(ctx, "1"); got != ua {
		t.Errorf("prefix a user 1 = %+v, want %+v", got, ua)
	}
	if aud, _ := b.LoadAudience(ctx, ra.ID); !slices.Equal(aud, []actors.User{ub}) {
		t.Errorf("prefix b audience of %s = %+v", ra.ID, aud)
	}

	// Every key a wrote is under its prefix.
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "ns*[a]?:") && !strings.HasPrefix(k, "ns1:") {
			t.Errorf("key %q outside both prefixes", k)
		}
	}

	// Reset("") of the glob-laden prefix leaves the other alone (its pattern is escaped)
	// and keeps its own counter.
	if err := a.Reset(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := roomIDs(b); !slices.Equal(got, []string{rb.ID}) {
		t.Errorf("after a's Reset, prefix b sees rooms %v", got)
	}
	if got, err := b.GetUser(ctx, "1"); err != nil || got != ub {
		t.Errorf("after a's Reset, prefix b user 1 = %+v, %v", got, err)
	}
	if aud, _ := b.LoadAudience(ctx, ra.ID); !slices.Equal(aud, []actors.User{ub}) {
		t.Errorf("after a's Reset, prefix b audience of %s = %+v", ra.ID, aud)
	}
	if got := roomIDs(a); len(got) != 0 {
		t.Errorf("after Reset, prefix a has rooms %v", got)
	}
	keys, err = raw.Keys(ctx, "ns\\*\\[a\\]\\?:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// The layout marker stays too, when an Open wrote it (migrate.go).
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == "ns*[a]?:layout" })
	if !slices.Equal(keys, []string{"ns*[a]?:user:{nextid}"}) {
		t.Errorf("after Reset, prefix a keeps keys %v, want only its counter", keys)
	}
}

// TestResetKeyNeverTouchesCounter: "nextid" is not a user id, so Reset("nextid") (an
// admin typo, or a room id that happened to be that) must not delete the counter.
func TestResetKeyNeverTouchesCounter(t *testing.T) {
	srv := redistest.Start(t)
	s := openT(t, Options{Addr: srv.Addr(), KeyPrefix: newPrefix("nextid")})
	for range 3 {
		if _, err := s.CreateUser(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Reset(t.Context(), "nextid"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser(t.Context(), "nextid"); !errors.Is(err, actors.ErrNotFound) {
		t.Errorf("GetUser(nextid) = %v, want ErrNotFound", err)
	}
	if u, err := s.CreateUser(t.Context(), "y"); err != nil || u.ID != "4" {
		t.Fatalf("CreateUser after Reset(nextid) = %+v, %v; want id 4", u, err)
	}
}

// TestLoadRoomsManyBatches stores more rooms than one MGET batch holds and more than one
// pipeline, and checks all come back once.
func TestLoadRoomsManyBatches(t *testing.T) {
	srv := redistest.Start(t)
	s := openT(t, Options{Addr: srv.Addr(), KeyPrefix: newPrefix("many")})
	const n = 10*batchSize + 123
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r := actors.Room{ID: fmt.Sprintf("%010x", i), Name: strconv.Itoa(i), CreateTime: time.Unix(int64(i), 0)}
			if err := s.SaveRoom(t.Context(), r); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	rooms, err := s.LoadRooms(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms) != n {
		t.Fatalf("LoadRooms returned %d rooms, want %d", len(rooms), n)
	}
	for i, r := range rooms {
		if want := fmt.Sprintf("%010x", i); r.ID != want || r.Name != strconv.Itoa(i) {
			t.Fatalf("rooms[%d] = %s %q, want %s", i, r.ID, r.Name, want)
		}
	}
	// Reset("") scans in batches too.
	if err := s.Reset(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	if rooms, err := s.LoadRooms(t.Context()); err != nil || len(rooms) != 0 {
		t.Fatalf("after Reset: %d rooms, %v", len(rooms), err)
	}
}

// TestPasswordNeverInErrors runs against a server that requires a password: the right one
// works, a wrong one fails to Open with an error that does not contain it.
func TestPasswordNeverInErrors(t *testing.T) {
	srv := redistest.Start(t)
	const good, bad = "g00d-secret-pw", "wr0ng-secret-pw"
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	if err := raw.ConfigSet(t.Context(), "requirepass", good).Err(); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	_, err := Open(t.Context(), Options{Addr: srv.Addr(), Password: bad, Timeout: testTimeout})
	if err == nil {
		t.Fatal("Open with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), good) {
		t.Fatalf("error reveals the password: %v", err)
	}
	t.Logf("wrong password: %v", err)

	s := openT(t, Options{Addr: srv.Addr(), Password: good, KeyPrefix: newPrefix("auth")})
	if _, err := s.CreateUser(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err = s.CreateUser(t.Context(), "b")
	if err == nil || strings.Contains(err.Error(), good) {
		t.Fatalf("CreateUser with Redis down: %v", err)
	}
}

// TestOpenFailsFastWhenDown: Open against a port nobody listens on returns an error
// within the timeout instead of a store that fails later.
func TestOpenFailsFastWhenDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	start := time.Now()
	s, err := Open(t.Context(), Options{Addr: srv.Addr(), Timeout: 200 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("Open with Redis down succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Open with Redis down took %v", d)
	}
}

// TestCreateUserRetryReturnsSameUser replays a CreateUser script call with the same
// marker, as go-redis does when a connection breaks after the command was sent: the
// replay must return the first call's id and allocate nothing.
func TestCreateUserRetryReturnsSameUser(t *testing.T) {
	srv := redistest.Start(t)
	s := openT(t, Options{Addr: srv.Addr(), KeyPrefix: newPrefix("retry")})
	keys := []string{s.counterKey, s.reqKey("fixednonce")}
	run := func() string {
		id, err := createUser.Run(t.Context(), s.rc, keys, s.prefix+"user:{", "once", reqMarkerTTL).Text()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if first, second := run(), run(); first != "1" || second != "1" {
		t.Fatalf("first run id %s, replay id %s; want 1 and 1", first, second)
	}
	if u, err := s.CreateUser(t.Context(), "next"); err != nil || u.ID != "2" {
		t.Fatalf("next CreateUser = %+v, %v; want id 2", u, err)
	}
}

func BenchmarkSaveRoomParallel(b *testing.B) {
	srv := redistest.Start(b)
	s, err := Open(b.Context(), Options{Addr: srv.Addr(), KeyPrefix: "bench", Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// Many room actors write at once in production, and Redis fsyncs once per event-loop
	// turn for every client that wrote in it, so concurrency is what the figure is about.
	b.SetParallelism(16)
	var seq atomic.Int64
	base := actors.Room{UID: "1", Name: "bench room", CreateTime: time.Now(), Status: actors.StatusPublishing,
		Type: actors.TypeHost, Publishing: true, PushURL: "rtmp://push.example.com/app/x?auth_key=1-0-0-abc"}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		room := base
		room.ID = fmt.Sprintf("%010x", seq.Add(1))
		i := 0
		for pb.Next() {
			room.MixedStatus = i
			i++
			if err := s.SaveRoom(b.Context(), room); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
