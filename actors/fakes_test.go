package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"roomengine/actors/fakeclock"
)

// memStore is an in-memory Store with failure injection.
type memStore struct {
	mu        sync.Mutex
	nextID    int
	users     map[string]User
	rooms     map[string]Room
	audiences map[string]map[string]User
	calls     map[string]Call
	fail      error // when set, every write fails with it
	// timeoutAfterWrite, when set, makes every write apply and then fail with it, like a
	// store that timed out although the command was (or will be) carried out.
	timeoutAfterWrite error
	writes            int
}

func newMemStore() *memStore {
	return &memStore{users: map[string]User{}, rooms: map[string]Room{}, audiences: map[string]map[string]User{},
		calls: map[string]Call{}}
}

func (s *memStore) setFail(err error) { s.mu.Lock(); s.fail = err; s.mu.Unlock() }

func (s *memStore) write(f func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.writes++
	f()
	return s.timeoutAfterWrite
}

func (s *memStore) CreateUser(_ context.Context, name string) (u User, err error) {
	err = s.write(func() {
		s.nextID++
		u = User{ID: strconv.Itoa(s.nextID), Name: name}
		s.users[u.ID] = u
	})
	return u, err
}

func (s *memStore) GetUser(_ context.Context, id string) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return User{}, ErrNotFound
	}
	return u, nil
}

func (s *memStore) SaveRoom(_ context.Context, r Room) error {
	return s.write(func() { s.rooms[r.ID] = r })
}

func (s *memStore) DeleteRoom(_ context.Context, id string) error {
	return s.write(func() { delete(s.rooms, id); delete(s.audiences, id) })
}

func (s *memStore) LoadRooms(context.Context) ([]Room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Room
	for _, r := range s.rooms {
		out = append(out, r)
	}
	return out, nil
}

func (s *memStore) AddAudience(_ context.Context, roomID string, m User) error {
	return s.write(func() {
		if s.audiences[roomID] == nil {
			s.audiences[roomID] = map[string]User{}
		}
		s.audiences[roomID][m.ID] = m
	})
}

func (s *memStore) RemoveAudience(_ context.Context, roomID, uid string) error {
	return s.write(func() { delete(s.audiences[roomID], uid) })
}

func (s *memStore) LoadAudience(_ context.Context, roomID string) ([]User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []User
	for _, u := range s.audiences[roomID] {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b User) int { return CompareIDs(a.ID, b.ID) })
	return out, nil
}

func (s *memStore) Reset(_ context.Context, key string) error {
	return s.write(func() {
		if key == "" {
			s.users, s.rooms, s.audiences = map[string]User{}, map[string]Room{}, map[string]map[string]User{}
			s.calls = map[string]Call{}
			return
		}
		delete(s.users, key)
		delete(s.rooms, key)
		delete(s.audiences, key)
	})
}

func (s *memStore) SaveCall(_ context.Context, c Call) error {
	return s.write(func() { s.calls[c.ID] = cloneCall(c) })
}

func (s *memStore) DeleteCall(_ context.Context, id string) error {
	return s.write(func() { delete(s.calls, id) })
}

func (s *memStore) LoadCalls(context.Context) ([]Call, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		out = append(out, cloneCall(c))
	}
	return out, nil
}

func (s *memStore) call(id string) (Call, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.calls[id]
	return c, ok
}

func (s *memStore) Ping(context.Context) error { return nil }
func (s *memStore) Close() error               { return nil }

func (s *memStore) room(id string) (Room, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[id]
	return r, ok
}

// recPublisher records pushes and topic operations in order.
type recPublisher struct {
	mu     sync.Mutex
	pushes []Push
	topics []string // "create:ID" / "delete:ID"
	notify chan struct{}
}

func newRecPublisher() *recPublisher { return &recPublisher{notify: make(chan struct{}, 1024)} }

func (p *recPublisher) Publish(m Push) {
	p.mu.Lock()
	p.pushes = append(p.pushes, m)
	p.mu.Unlock()
	select {
	case p.notify <- struct{}{}:
	default:
	}
}
func (p *recPublisher) CreateTopic(t string) {
	p.mu.Lock()
	p.topics = append(p.topics, "create:"+t)
	p.mu.Unlock()
}
func (p *recPublisher) DeleteTopic(t string) {
	p.mu.Lock()
	p.topics = append(p.topics, "delete:"+t)
	p.mu.Unlock()
}

func (p *recPublisher) types(topic string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for _, m := range p.pushes {
		if m.Topic == topic {
			out = append(out, m.Type)
		}
	}
	return out
}

func (p *recPublisher) topicOps() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.topics)
}

// waitFor polls cond until it holds or the (generous) deadline passes: used only where an
// effect is delivered asynchronously through a mailbox after a timer fired.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type fakeURLs struct{}

func (fakeURLs) PushURL(id string, now time.Time) string {
	return fmt.Sprintf("rtmp://push/app/%s?exp=%d", id, now.Add(24*time.Hour).Unix())
}
func (fakeURLs) PlayURLs(id string) (string, string, string) {
	return "http://play/app/" + id + "_mix.flv", "http://play/app/" + id + "_mix.m3u8", "rtmp://play/app/" + id + "_mix"
}
func (fakeURLs) ShortDelayPlayURL(id string) string {
	return "http://play/app/" + id + ".flv?ali_flv_retain=0"
}
func (fakeURLs) MixPlayURL(s string) string    { return "http://play/app/" + s }
func (fakeURLs) TopicLocation(t string) string { return "ws://local/ws?topic=" + t }

type harness struct {
	store *memStore
	pub   *recPublisher
	clock *fakeclock.Clock
	mixer *fakeMixer
	eng   *Engine
}

func newHarness(t *testing.T, store *memStore, clock *fakeclock.Clock) *harness {
	t.Helper()
	return newHarnessWith(t, store, clock, nil)
}

// newHarnessWith lets a test adjust the engine's configuration before it starts.
func newHarnessWith(t *testing.T, store *memStore, clock *fakeclock.Clock, adjust func(*EngineConfig)) *harness {
	t.Helper()
	if store == nil {
		store = newMemStore()
	}
	if clock == nil {
		clock = fakeclock.New(t0)
	}
	h := &harness{store: store, pub: newRecPublisher(), clock: clock, mixer: &fakeMixer{}}
	cfg := EngineConfig{Room: testCfg, Store: store, Publisher: h.pub, Clock: clock, Mixer: h.mixer,
		URLs: fakeURLs{}, AskTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	if adjust != nil {
		adjust(&cfg)
	}
	eng, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	t.Cleanup(eng.Shutdown)
	return h
}

var errDiskGone = errors.New("disk gone")

// fakeMixer records Start/Stop calls and answers them at once (or with fail).
type fakeMixer struct {
	mu     sync.Mutex
	starts []MixRequest
	stops  []MixRequest
	fail   error
}

func (m *fakeMixer) StartMix(_ context.Context, req MixRequest) (MixStarted, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.starts = append(m.starts, req)
	if m.fail != nil {
		return MixStarted{}, m.fail
	}
	return MixStarted{Streams: []string{req.MainStream + "_" + req.MixStream}}, nil
}

func (m *fakeMixer) StopMix(_ context.Context, req MixRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stops = append(m.stops, req)
	return nil
}

func (m *fakeMixer) counts() (int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.starts), len(m.stops)
}
