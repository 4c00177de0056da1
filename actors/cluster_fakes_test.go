package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roomengine/actors/fakeclock"
)

// memCluster is an in-memory stand-in for what Redis decides in a cluster (membership,
// ownership with epochs, fenced writes, the due set, reservations, the room feed) and for
// the transport between nodes, which it routes through the wire encoding so every message
// that crosses is really encoded. It lets the routing be tested with -race and a fake
// clock, deterministically; persistence/redis has the real scripts and their tests.
type memCluster struct {
	t     testing.TB
	store *memStore
	pub   *recPublisher
	clock *fakeclock.Clock
	mixer *fakeMixer

	mu       sync.Mutex
	alive    map[string]bool    // node → its membership holds
	down     map[string]bool    // node → its transport refuses connections
	owners   map[string]Fence   // kind:id → owner and epoch
	busy     map[string]string  // room:id / user:uid → call id
	nodes    map[string]*Engine // node → its engine
	takeover int
	refused  atomic.Int64 // fenced writes and pushes refused
	sends    atomic.Int64 // peer requests sent by any node
	// ownerPushes: the nodes' feed cannot number a push only while its room is live (no
	// LivePublisher, as with MNS beside the WebSocket push), so comments go to the owner.
	ownerPushes bool
	// stallPushes: PublishIfLive waits until its context ends (Redis away).
	stallPushes atomic.Bool
}

// plainPublisher hides every method but Publisher's.
type plainPublisher struct{ Publisher }

func newMemCluster(t testing.TB) *memCluster {
	c := &memCluster{t: t, store: newMemStore(), pub: newRecPublisher(), clock: fakeclock.New(t0), mixer: &fakeMixer{},
		alive: map[string]bool{}, down: map[string]bool{}, owners: map[string]Fence{}, busy: map[string]string{},
		nodes: map[string]*Engine{}}
	return c
}

// start adds a node (a new engine on the shared fakes).
func (c *memCluster) start(node string) *Engine {
	c.t.Helper()
	c.mu.Lock()
	c.alive[node], c.down[node] = true, false
	c.mu.Unlock()
	var pub Publisher = &fencedPublisher{c: c, node: node}
	if c.ownerPushes {
		pub = plainPublisher{pub}
	}
	cfg := EngineConfig{Room: testCfg, Store: &fencedStore{memStore: c.store, c: c}, Publisher: pub,
		Clock: c.clock, Mixer: c.mixer, URLs: fakeURLs{}, AskTimeout: 3 * time.Second, StoreTimeout: time.Second,
		Logger: slog.New(slog.DiscardHandler),
		Cluster: &ClusterConfig{Placement: &memPlacement{c: c, node: node}, Transport: memTransport{c: c},
			Lease: func() bool { return c.isAlive(node) }, SweepInterval: 20 * time.Millisecond,
			RetryInterval: 10 * time.Millisecond}}
	eng, err := NewEngine(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes[node] = eng
	c.mu.Unlock()
	c.t.Cleanup(eng.Shutdown)
	return eng
}

// kill is a node's sudden death as the others see it: its connections are refused and its
// membership has lapsed. Its engine keeps running (like a frozen process) but its lease is
// gone, so it must not act.
func (c *memCluster) kill(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.alive[node], c.down[node] = false, true
}

func (c *memCluster) isAlive(node string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alive[node]
}

func (c *memCluster) owner(kind, id string) Fence {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owners[kind+":"+id]
}

// check is the fence check of every write: the owner at that epoch, and alive.
func (c *memCluster) check(ctx context.Context, kind, id string) error {
	f, ok := FenceOf(ctx)
	if !ok {
		c.t.Errorf("unfenced %s write of %s in a cluster", kind, id)
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.owners[kind+":"+id]; cur != f || !c.alive[f.Node] {
		c.refused.Add(1)
		return ErrFenced
	}
	return nil
}

// feed tells every node of a room's change, as the Redis feed does.
func (c *memCluster) feed(room Room, gone bool) {
	c.mu.Lock()
	nodes := make([]*Engine, 0, len(c.nodes))
	for _, e := range c.nodes {
		nodes = append(nodes, e)
	}
	c.mu.Unlock()
	for _, e := range nodes {
		if gone {
			e.FeedRoomGone(room.ID)
		} else {
			e.FeedRoom(room)
		}
	}
}

type fencedStore struct {
	*memStore
	c *memCluster
}

func (s *fencedStore) SaveRoom(ctx context.Context, r Room) error {
	if err := s.c.check(ctx, KindRoom, r.ID); err != nil {
		return err
	}
	if err := s.memStore.SaveRoom(ctx, r); err != nil {
		return err
	}
	s.c.feed(r, false)
	return nil
}

func (s *fencedStore) DeleteRoom(ctx context.Context, id string) error {
	if err := s.c.check(ctx, KindRoom, id); err != nil {
		return err
	}
	if err := s.memStore.DeleteRoom(ctx, id); err != nil {
		return err
	}
	s.c.feed(Room{ID: id}, true)
	return nil
}

func (s *fencedStore) AddAudience(ctx context.Context, roomID string, m User) error {
	if err := s.c.check(ctx, KindRoom, roomID); err != nil {
		return err
	}
	return s.memStore.AddAudience(ctx, roomID, m)
}

func (s *fencedStore) RemoveAudience(ctx context.Context, roomID, uid string) error {
	if err := s.c.check(ctx, KindRoom, roomID); err != nil {
		return err
	}
	return s.memStore.RemoveAudience(ctx, roomID, uid)
}

func (s *fencedStore) SaveCall(ctx context.Context, call Call) error {
	if err := s.c.check(ctx, KindCall, call.ID); err != nil {
		return err
	}
	return s.memStore.SaveCall(ctx, call)
}

func (s *fencedStore) DeleteCall(ctx context.Context, id string) error {
	if err := s.c.check(ctx, KindCall, id); err != nil {
		return err
	}
	return s.memStore.DeleteCall(ctx, id)
}

// fencedPublisher drops pushes whose fence is stale, as the Redis push script does, and
// numbers a PublishIfLive push only while its room is live and the node a member.
type fencedPublisher struct {
	c    *memCluster
	node string
}

func (p *fencedPublisher) PublishIfLive(ctx context.Context, m Push) error {
	if p.c.stallPushes.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if !p.c.isAlive(p.node) {
		return ErrFenced
	}
	if r, ok := p.c.store.room(m.Topic); !ok || r.Ended() {
		return ErrRoomGone
	}
	p.c.pub.Publish(m)
	return nil
}

func (p *fencedPublisher) Publish(m Push) {
	if !m.Fence.IsZero() {
		if err := p.c.check(WithFence(context.Background(), m.Fence), m.Fence.Kind, m.Fence.ID); err != nil {
			return
		}
	}
	p.c.pub.Publish(m)
}
func (p *fencedPublisher) CreateTopic(t string) { p.c.pub.CreateTopic(t) }
func (p *fencedPublisher) DeleteTopic(t string) { p.c.pub.DeleteTopic(t) }

type memPlacement struct {
	c    *memCluster
	node string
}

func (p *memPlacement) Node() string { return p.node }

func (p *memPlacement) Claim(_ context.Context, kind, id string) (Owner, error) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.alive[p.node] {
		return Owner{}, ErrFenced
	}
	key := kind + ":" + id
	cur, ok := c.owners[key]
	switch {
	case ok && cur.Node == p.node:
		return Owner{Node: p.node, Addr: p.node, Epoch: cur.Epoch, Mine: true}, nil
	case ok && cur.Node != "" && c.alive[cur.Node]:
		return Owner{Node: cur.Node, Addr: cur.Node, Epoch: cur.Epoch}, nil
	}
	if ok && cur.Node != "" {
		c.takeover++
	}
	next := Fence{Kind: kind, ID: id, Node: p.node, Epoch: cur.Epoch + 1}
	c.owners[key] = next
	return Owner{Node: p.node, Addr: p.node, Epoch: next.Epoch, Mine: true}, nil
}

func (p *memPlacement) Lookup(_ context.Context, kind, id string) (Owner, bool, error) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.owners[kind+":"+id]
	if !ok || cur.Node == "" || !c.alive[cur.Node] {
		return Owner{}, false, nil
	}
	return Owner{Node: cur.Node, Addr: cur.Node, Epoch: cur.Epoch, Mine: cur.Node == p.node}, true, nil
}

func (p *memPlacement) Release(_ context.Context, kind, id string, epoch int64) error {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	key := kind + ":" + id
	if cur := c.owners[key]; cur.Node == p.node && cur.Epoch == epoch {
		cur.Node = ""
		c.owners[key] = cur
	}
	return nil
}

func (p *memPlacement) Due(_ context.Context, now time.Time, limit int) ([]DueEntity, error) {
	rooms, _ := p.c.store.LoadRooms(context.Background())
	calls, _ := p.c.store.LoadCalls(context.Background())
	var out []DueEntity
	for _, r := range rooms {
		if at := earliest(r.NoPublishDeadline, r.TopicDeleteDeadline); !at.IsZero() && !at.After(now) {
			out = append(out, DueEntity{Kind: KindRoom, ID: r.ID, At: at})
		}
	}
	for _, call := range calls {
		if call.Phase == PhaseStarting || call.Phase == PhaseClosing {
			out = append(out, DueEntity{Kind: KindCall, ID: call.ID, At: now})
		}
	}
	return out[:min(len(out), limit)], nil
}

func (p *memPlacement) LoadRoom(_ context.Context, id string) (Room, error) {
	r, ok := p.c.store.room(id)
	if !ok {
		return Room{}, ErrNotFound
	}
	return r, nil
}

func (p *memPlacement) LoadCall(_ context.Context, id string) (Call, error) {
	call, ok := p.c.store.call(id)
	if !ok {
		return Call{}, ErrNotFound
	}
	return call, nil
}

func (p *memPlacement) Reserve(_ context.Context, callID string, rooms, users []string) (string, error) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := map[string]string{}
	for _, r := range rooms {
		keys["room:"+r] = r
	}
	for _, u := range users {
		keys["user:"+u] = u
	}
	for k, name := range keys {
		if held, ok := c.busy[k]; ok && held != callID {
			return name, nil
		}
	}
	for k := range keys {
		c.busy[k] = callID
	}
	return "", nil
}

func (p *memPlacement) Unreserve(_ context.Context, callID string, rooms, users []string) error {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range append(prefixed("room:", rooms), prefixed("user:", users)...) {
		if c.busy[k] == callID {
			delete(c.busy, k)
		}
	}
	return nil
}

func prefixed(p string, ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = p + id
	}
	return out
}

func (p *memPlacement) CallOf(_ context.Context, roomID string) (string, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.c.busy["room:"+roomID], nil
}

// memTransport delivers a peer request to the engine of the node named by addr, through
// the JSON encoding both ways.
type memTransport struct{ c *memCluster }

var errRefused = fmt.Errorf("%w: connection refused", ErrPeerUnreachable)

func (t memTransport) Send(ctx context.Context, addr string, req PeerRequest) (PeerReply, error) {
	t.c.sends.Add(1)
	t.c.mu.Lock()
	eng, down := t.c.nodes[addr], t.c.down[addr]
	t.c.mu.Unlock()
	if eng == nil || down {
		return PeerReply{}, errRefused
	}
	var wire PeerRequest
	mustRecode(req, &wire)
	rep := eng.ServePeer(ctx, wire)
	var back PeerReply
	mustRecode(rep, &back)
	return back, nil
}

func mustRecode(in, out any) {
	b, err := json.Marshal(in)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", in, err))
	}
	if err := json.Unmarshal(b, out); err != nil {
		panic(fmt.Sprintf("decode %T: %v", out, err))
	}
}
