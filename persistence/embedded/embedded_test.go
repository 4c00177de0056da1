package embedded

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"roomengine/actors"
	"roomengine/persistence/storetest"
)

var _ actors.Store = (*Store)(nil)

func openT(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) actors.Store {
		return openT(t, filepath.Join(t.TempDir(), "store.db"), Options{})
	})
}

func TestDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T, dir string) actors.Store {
		return openT(t, filepath.Join(dir, "store.db"), Options{})
	})
}

func TestOpenCreatesDirAndPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "store.db")
	s := openT(t, path, Options{})
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %o, want 600", perm)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	openT(t, path, Options{})
	start := time.Now()
	s2, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("a second Open of a locked file succeeded")
	}
	if !errors.Is(err, bolt.ErrTimeout) {
		t.Errorf("second Open: %v, want a lock timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v", d)
	}
}

func TestCloseIdempotentAndErrClosed(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "store.db"), Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := t.Context()
	checks := map[string]error{
		"Ping":         s.Ping(ctx),
		"SaveRoom":     s.SaveRoom(ctx, actors.Room{ID: "r"}),
		"Reset":        s.Reset(ctx, ""),
		"DeleteRoom":   s.DeleteRoom(ctx, "r"),
		"AddAudience":  s.AddAudience(ctx, "r", actors.User{ID: "1"}),
		"RemoveAud":    s.RemoveAudience(ctx, "r", "1"),
		"LoadAudience": func() error { _, err := s.LoadAudience(ctx, "r"); return err }(),
		"LoadRooms":    func() error { _, err := s.LoadRooms(ctx); return err }(),
		"GetUser":      func() error { _, err := s.GetUser(ctx, "1"); return err }(),
		"CreateUser":   func() error { _, err := s.CreateUser(ctx, "x"); return err }(),
	}
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestRejectsBadKeys(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "store.db"), Options{})
	ctx := t.Context()
	long := string(make([]byte, bolt.MaxKeySize+1))
	for name, err := range map[string]error{
		"SaveRoom empty":      s.SaveRoom(ctx, actors.Room{}),
		"SaveRoom long":       s.SaveRoom(ctx, actors.Room{ID: long}),
		"DeleteRoom empty":    s.DeleteRoom(ctx, ""),
		"AddAudience no room": s.AddAudience(ctx, "", actors.User{ID: "1"}),
		"AddAudience no uid":  s.AddAudience(ctx, "r", actors.User{}),
		"RemoveAudience":      s.RemoveAudience(ctx, "r", ""),
	} {
		if err == nil {
			t.Errorf("%s: nil error", name)
		}
	}
}

// gatedStore returns a store whose writer blocks before its first batch until release is
// called, and which records every batch size, so tests can queue writes deterministically.
func gatedStore(t *testing.T, opts Options) (s *Store, release func(), sizes func() []int) {
	t.Helper()
	gate := make(chan struct{})
	var mu sync.Mutex
	var got []int
	first := true
	hook := func(n int) {
		mu.Lock()
		got = append(got, n)
		wait := first
		first = false
		mu.Unlock()
		if wait {
			<-gate
		}
	}
	s, err := open(filepath.Join(t.TempDir(), "store.db"), opts, hook)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() { release(); s.Close() })
	sizes = func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), got...)
	}
	return s, release, sizes
}

// waitQueued waits until n writes sit in the queue behind the held writer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.ops) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d writes queued", len(s.ops), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGroupCommit(t *testing.T) {
	s, release, sizes := gatedStore(t, Options{})
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	create := func() {
		if _, err := s.CreateUser(ctx, "u"); err != nil {
			errs <- err
		}
	}
	wg.Go(create)
	// The writer holds the first write; everything submitted now must share one commit.
	for len(sizes()) == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 99 {
		wg.Go(create)
	}
	waitQueued(t, s, 99)
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := sizes(); len(got) != 2 || got[0] != 1 || got[1] != 99 {
		t.Fatalf("batch sizes %v, want [1 99]", got)
	}
	if u, err := s.CreateUser(ctx, "last"); err != nil || u.ID != "101" {
		t.Fatalf("CreateUser = %+v, %v; want id 101", u, err)
	}
}

func TestMaxBatch(t *testing.T) {
	s, release, sizes := gatedStore(t, Options{MaxBatch: 10})
	ctx := t.Context()
	var wg sync.WaitGroup
	wg.Go(func() { s.CreateUser(ctx, "first") })
	for len(sizes()) == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 25 {
		wg.Go(func() { s.CreateUser(ctx, "u") })
	}
	// The queue holds MaxBatch writes; the rest wait to be queued.
	waitQueued(t, s, 10)
	release()
	wg.Wait()
	total := 0
	for _, n := range sizes() {
		if n > 10 {
			t.Fatalf("batch of %d exceeds MaxBatch 10: %v", n, sizes())
		}
		total += n
	}
	if total != 26 {
		t.Fatalf("batches %v add up to %d, want 26", sizes(), total)
	}
}

// A write that fails inside the shared transaction must fail alone, and the writes around
// it must still commit in their order.
func TestFailingWriteDoesNotSpoilBatch(t *testing.T) {
	s, release, sizes := gatedStore(t, Options{})
	ctx := t.Context()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	wg.Go(func() { s.CreateUser(ctx, "held") })
	for len(sizes()) == 0 {
		time.Sleep(time.Millisecond)
	}
	// Submitted one by one so the queue order is known.
	results := make([]chan error, 7)
	for i := range results {
		results[i] = make(chan error, 1)
		name := strconv.Itoa(i)
		var apply func(tx *bolt.Tx) error
		switch i {
		case 2, 5:
			apply = func(tx *bolt.Tx) error {
				// Leave a trace that the rollback must remove.
				tx.Bucket(bucketRooms).Put([]byte("bad"+name), []byte("{}"))
				return boom
			}
		default:
			apply = func(tx *bolt.Tx) error {
				return tx.Bucket(bucketRooms).Put([]byte("r"+name), []byte(`{"id":"r`+name+`","name":"`+name+`"}`))
			}
		}
		wg.Go(func() { results[i] <- s.submit(ctx, apply) })
		waitQueued(t, s, i+1)
	}
	release()
	wg.Wait()
	for i, ch := range results {
		err := <-ch
		if i == 2 || i == 5 {
			if !errors.Is(err, boom) {
				t.Errorf("op %d: %v, want boom", i, err)
			}
		} else if err != nil {
			t.Errorf("op %d: %v", i, err)
		}
	}
	rooms, err := s.LoadRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rooms {
		ids = append(ids, r.ID)
	}
	want := []string{"r0", "r1", "r3", "r4", "r6"}
	if len(ids) != len(want) {
		t.Fatalf("rooms %v, want %v", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("rooms %v, want %v", ids, want)
		}
	}
}

// A caller whose context ends while its write is queued gets ctx.Err() at once, and the
// write is dropped if the writer has not reached it yet.
func TestContextEndsWhileQueued(t *testing.T) {
	s, release, sizes := gatedStore(t, Options{})
	var wg sync.WaitGroup
	wg.Go(func() { s.CreateUser(t.Context(), "held") })
	for len(sizes()) == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := s.CreateUser(ctx, "cancelled")
		errc <- err
	}()
	waitQueued(t, s, 1)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("CreateUser = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CreateUser did not return after its context ended")
	}
	release()
	wg.Wait()
	u, err := s.CreateUser(t.Context(), "next")
	if err != nil || u.ID != "2" {
		t.Fatalf("CreateUser = %+v, %v; want id 2 (the cancelled write dropped)", u, err)
	}
}

// Close must commit what is already queued before closing the file.
func TestCloseDrainsQueue(t *testing.T) {
	s, release, sizes := gatedStore(t, Options{})
	path := s.Path()
	ctx := t.Context()
	const n = 50
	errs := make(chan error, n+1)
	var wg sync.WaitGroup
	wg.Go(func() {
		_, err := s.CreateUser(ctx, "held")
		errs <- err
	})
	for len(sizes()) == 0 {
		time.Sleep(time.Millisecond)
	}
	for range n {
		wg.Go(func() {
			_, err := s.CreateUser(ctx, "queued")
			errs <- err
		})
	}
	waitQueued(t, s, n)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close has flagged the store before it waits for the writer; only then release it.
	for !s.closed.Load() {
		time.Sleep(time.Millisecond)
	}
	release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("queued write failed: %v", err)
		}
	}
	s2 := openT(t, path, Options{})
	if u, err := s2.GetUser(ctx, strconv.Itoa(n+1)); err != nil {
		t.Fatalf("user %d lost by Close: %v", n+1, err)
	} else if u.Name != "queued" {
		t.Fatalf("user %d = %+v", n+1, u)
	}
}

func TestCompareIDs(t *testing.T) {
	ordered := []string{"0", "1", "2", "9", "10", "11", "99", "100", "18446744073709551616", "", "01", "a", "b"}
	for i := range ordered {
		for j := range ordered {
			got := actors.CompareIDs(ordered[i], ordered[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("actors.CompareIDs(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

// BenchmarkCreateUserParallel measures durable CreateUser throughput with fsync on. Many
// callers per CPU are what lets group commit fill batches, as in the server where each
// request goroutine waits on the store.
func BenchmarkCreateUserParallel(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "store.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.SetParallelism(256)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.CreateUser(ctx, "bench user"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkCreateUserSerial is the single-caller baseline: one commit, two fsyncs, per
// write, which is what group commit exists to avoid.
func BenchmarkCreateUserSerial(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "store.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.CreateUser(ctx, "bench user"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
