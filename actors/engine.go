package actors

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// EngineConfig wires an Engine.
type EngineConfig struct {
	Room      RoomConfig
	Store     Store
	Publisher Publisher
	Clock     Clock // nil = SystemClock
	URLs      URLs
	Logger    *slog.Logger
	// AskTimeout bounds how long a command waits for its actor's answer.
	AskTimeout time.Duration
	// StoreTimeout bounds one store call made by an actor.
	StoreTimeout time.Duration
	// LoadTimeout bounds loading every room and call at start-up (default 30 s): with many
	// rooms that takes far longer than one store call.
	LoadTimeout time.Duration
	// OnLiveRooms, if set, is told the number of live rooms whenever it changes.
	OnLiveRooms func(int)
	// IdleTimeout passivates a room actor that got no message for that long; its snapshot
	// stays in the registry and the next message re-activates it (0 = never).
	IdleTimeout time.Duration

	// Mixer starts and stops CDN mixes for co-streaming calls.
	Mixer Mixer
	// MixerReady, if set, reports whether the CDN can be called now (breaker closed).
	// Co-streaming commands that need the CDN fail fast with 503 while it cannot.
	MixerReady func() error
	// MixTimeout bounds one Start or Stop as the call actor sees it (default 30 s; the Mixer
	// applies Aliyun's own, shorter timeout).
	MixTimeout time.Duration
	// StopAttempts and StopBackoff bound the retries of a failing Stop (default 5 and 1 s,
	// doubling).
	StopAttempts int
	StopBackoff  time.Duration
	// ResumeMixes says the mixes run in this process (mix: ffmpeg), so they die with it: a
	// call loaded after a restart, or taken over from another node, starts its running
	// mixes again (MixRequest.Resume). Mixes in a CDN outlive the process and are left be.
	ResumeMixes bool

	// Cluster makes this engine one node of a cluster (nil: a single node).
	Cluster *ClusterConfig
}

// Engine is the Go API of the room engine: every method sends a message to an actor and
// waits (bounded by AskTimeout) for its answer. It holds no domain state of its own.
type Engine struct {
	system     *actor.ActorSystem
	rooms      *actor.PID
	users      *actor.PID
	known      *userCache // the user registry's copies, read without an ask
	calls      *actor.PID
	publisher  Publisher
	urlBuilder URLs
	mixerReady func() error
	timeout    time.Duration
	clock      Clock
	roomCfg    RoomConfig
	log        *slog.Logger
	stopped    sync.Once
	workers    *workerDispatcher
	// own is the ownership seam (owners.go); stopSweep ends its deadline sweep.
	own       ownership
	stopSweep func()
	// leaving is set when a cluster node starts its graceful leave: peers are told to ask
	// the placement again instead of waiting for a node that is stopping.
	leaving atomic.Bool
}

// NewEngine loads the rooms and calls from the store and starts the registries. Rooms are
// started lazily: by their first message, or by a wake-up at their next deadline.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AskTimeout <= 0 {
		cfg.AskTimeout = 5 * time.Second
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = cfg.AskTimeout
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.LoadTimeout)
	defer cancel()
	snapshots, err := cfg.Store.LoadRooms(ctx)
	if err != nil {
		return nil, fmt.Errorf("load rooms: %w", err)
	}
	// The ownership seam: the single node, the one-node case, unless cfg makes this node
	// one of a cluster. In a cluster a call is activated by its owner on demand (or by the
	// sweep when its Start or Stop was in flight), never by every node at start-up.
	var own ownership
	var calls []Call
	if cfg.Cluster != nil {
		own = newClusterDeps(cfg)
	} else {
		if calls, err = cfg.Store.LoadCalls(ctx); err != nil {
			return nil, fmt.Errorf("load calls: %w", err)
		}
		own = newOneNode(calls)
	}
	if cfg.MixTimeout <= 0 {
		cfg.MixTimeout = 30 * time.Second
	}
	if cfg.StopAttempts <= 0 {
		cfg.StopAttempts = 5
	}
	if cfg.StopBackoff <= 0 {
		cfg.StopBackoff = time.Second
	}
	logger := cfg.Logger
	workers := newWorkerDispatcher(0, 300)
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(typesOnly{logger.Handler()}).With("component", "protoactor")
	}))
	// The registries find each other by name, which protoactor resolves locally.
	roomsPID, callsPID := actor.NewPID(system.Address(), "rooms"), actor.NewPID(system.Address(), "calls")
	deps := &roomDeps{cfg: cfg.Room, store: cfg.Store, publisher: cfg.Publisher, clock: cfg.Clock,
		urls: cfg.URLs, log: cfg.Logger, storeTimeout: cfg.StoreTimeout, rooms: roomsPID, calls: callsPID,
		dispatcher: workers, own: own}
	cdeps := &callDeps{store: cfg.Store, publisher: cfg.Publisher, mixer: cfg.Mixer, mixerReady: cfg.MixerReady,
		urls: cfg.URLs, clock: cfg.Clock, log: cfg.Logger, storeTimeout: cfg.StoreTimeout, askTimeout: cfg.AskTimeout,
		mixTimeout: cfg.MixTimeout, stopAttempts: cfg.StopAttempts, stopBackoff: cfg.StopBackoff, resumeMixes: cfg.ResumeMixes,
		rooms: roomsPID, calls: callsPID, dispatcher: workers, own: own}

	// A room actor that panics is stopped, not restarted in place: its in-memory state is
	// suspect, and the registry re-spawns it from its last durable snapshot on demand.
	stopOnPanic := actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })
	deps.stopOnPanic = stopOnPanic
	// The start-up snapshots are handed over once, so the producer does not keep them alive;
	// a registry restarted after a panic reloads the rooms from the store.
	initial := snapshots
	roomsProps := actor.PropsFromProducer(func() actor.Actor {
		rooms := initial
		initial = nil
		if rooms == nil {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.LoadTimeout)
			defer cancel()
			var err error
			if rooms, err = cfg.Store.LoadRooms(ctx); err != nil {
				cfg.Logger.Error("room registry restarted without its rooms", "err", err)
			}
		}
		return newRoomRegistry(deps, rooms, cfg.OnLiveRooms, cfg.IdleTimeout)
	}, actor.WithSupervisor(stopOnPanic), actor.WithDispatcher(workers))
	callsProps := actor.PropsFromProducer(func() actor.Actor {
		return newCallRegistry(cdeps, calls)
	}, actor.WithSupervisor(stopOnPanic), actor.WithDispatcher(workers))
	callsReg, err := system.Root.SpawnNamed(callsProps, "calls")
	if err != nil {
		return nil, err
	}
	rooms, err := system.Root.SpawnNamed(roomsProps, "rooms")
	if err != nil {
		return nil, err
	}
	known := newUserCache()
	users, err := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return newUserRegistry(cfg.Store, cfg.StoreTimeout, roomsPID, known)
	}, actor.WithDispatcher(workers)), "users")
	if err != nil {
		return nil, err
	}
	e := &Engine{workers: workers, system: system, rooms: rooms, users: users, known: known, calls: callsReg, publisher: cfg.Publisher, urlBuilder: cfg.URLs,
		mixerReady: cfg.MixerReady, timeout: cfg.AskTimeout, clock: cfg.Clock, roomCfg: cfg.Room, log: cfg.Logger, own: own}
	e.stopSweep = own.startSweep(sweepTargets{root: system.Root, rooms: rooms, calls: callsReg, clock: cfg.Clock,
		leaving: e.leaving.Load})
	if own.ownsLoaded() {
		e.healOrphans(snapshots, calls)
	}
	return e, nil
}

// healOrphans releases rooms that point at a call that was never saved (the process died
// between a room joining and the call's first save).
func (e *Engine) healOrphans(rooms []Room, calls []Call) {
	known := map[string]bool{}
	for _, c := range calls {
		known[c.ID] = true
	}
	for _, r := range rooms {
		if r.CallID != "" && !known[r.CallID] {
			e.system.Root.Send(e.rooms, roomRequest{roomID: r.ID, ev: evLeaveCall{callID: r.CallID}, callback: true})
		}
	}
}

// Shutdown stops the registries and every room after they finished their queued messages.
// Every acknowledged change is already durable, so nothing needs flushing.
// It is safe to call more than once.
func (e *Engine) Shutdown() {
	e.stopped.Do(func() {
		e.stopSweep()
		// Poison queues behind what the registries already hold; a registry stops its rooms
		// only after they too have finished their mailboxes.
		_ = e.system.Root.PoisonFuture(e.calls).Wait()
		_ = e.system.Root.PoisonFuture(e.rooms).Wait()
		_ = e.system.Root.PoisonFuture(e.users).Wait()
		e.system.Shutdown()
		e.workers.Close()
	})
}

// ask sends msg and waits for the answer.
func (e *Engine) ask(ctx context.Context, pid *actor.PID, msg any) (any, error) {
	timeout := e.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return nil, Errorf(CodeUnavailable, "请求超时")
	}
	if !e.own.member() {
		return nil, errNotMember()
	}
	res, err := e.system.Root.RequestFuture(pid, msg, timeout).Result()
	if err != nil {
		return nil, Errorf(CodeUnavailable, "请求超时，请稍后重试")
	}
	return res, nil
}

func (e *Engine) askRoom(ctx context.Context, req roomRequest) (roomReply, error) {
	return roomAnswer(e.ask(ctx, e.rooms, req))
}

// roomAnswer unpacks a room's answer to an ask.
func roomAnswer(res any, err error) (roomReply, error) {
	if err != nil {
		return roomReply{}, err
	}
	reply, ok := res.(roomReply)
	if !ok {
		return roomReply{}, Errorf(CodeInternal, "系统异常")
	}
	if reply.err != nil {
		return reply, reply.err
	}
	return reply, nil
}

// Login creates a new user (each call a new one, as the old server did).
func (e *Engine) Login(ctx context.Context, name string) (User, error) {
	reply, err := e.askUser(ctx, loginRequest{name: name})
	if err != nil {
		return User{}, err
	}
	return reply.user, nil
}

// User returns a user, or 2002 when the id is unknown.
func (e *Engine) User(ctx context.Context, uid string) (User, error) {
	reply, err := e.askUser(ctx, getUserRequest{id: uid})
	if err != nil {
		return User{}, err
	}
	if !reply.found {
		return User{ID: uid}, ErrNoSuchUser(uid)
	}
	return reply.user, nil
}

func (e *Engine) askUser(ctx context.Context, msg any) (userReply, error) {
	res, err := e.ask(ctx, e.users, msg)
	if err != nil {
		return userReply{}, err
	}
	reply, ok := res.(userReply)
	if !ok {
		return userReply{}, Errorf(CodeInternal, "系统异常")
	}
	if reply.err != nil {
		return reply, ErrStoreUnavailable(reply.err)
	}
	return reply, nil
}

// CreateRoom opens a host room for uid.
func (e *Engine) CreateRoom(ctx context.Context, uid, description string) (Room, error) {
	host, err := e.User(ctx, uid)
	if err != nil {
		return Room{}, err
	}
	if strings.TrimSpace(description) == "" {
		description = host.Name + "的直播"
	}
	res, err := e.ask(ctx, e.rooms, createRoomRequest{host: host, description: description,
		roomType: TypeHost, status: StatusCreated})
	if err != nil {
		return Room{}, err
	}
	reply, _ := res.(roomReply)
	if reply.err != nil {
		return Room{}, reply.err
	}
	return reply.room, nil
}

// Play adds uid to the audience of roomID.
func (e *Engine) Play(ctx context.Context, roomID, uid string) (Room, User, error) {
	var viewer User
	reply, err := e.askRoomAs(ctx, uid, roomID, evPlay{})
	if err != nil {
		return Room{}, User{}, err
	}
	viewer, _ = reply.result.(User)
	return reply.room, viewer, nil
}

// AudienceLeave removes uid from the audience of roomID. Leaving twice is fine.
func (e *Engine) AudienceLeave(ctx context.Context, roomID, uid string) error {
	_, err := e.askRoom(ctx, roomRequest{roomID: roomID, ev: evAudienceLeave{uid: uid}, callback: true})
	return err
}

// Leave ends a room: push 8, audience cleared, topic deleted after the delay.
func (e *Engine) Leave(ctx context.Context, roomID string) error {
	_, err := e.askRoom(ctx, roomRequest{roomID: roomID, ev: evLeave{}})
	return err
}

// Comment pushes a comment (type 6) to the room. It touches no store.
func (e *Engine) Comment(ctx context.Context, roomID, uid, text string) error {
	if served, err := e.pushHere(ctx, roomID, uid, evComment{text: text}); served {
		return err
	}
	_, err := e.askRoomAs(ctx, uid, roomID, evComment{text: text})
	return err
}

// Like pushes a like (type 7) to the room. It touches no store.
func (e *Engine) Like(ctx context.Context, roomID, uid string) error {
	if served, err := e.pushHere(ctx, roomID, uid, evLike{}); served {
		return err
	}
	_, err := e.askRoomAs(ctx, uid, roomID, evLike{})
	return err
}

// askRoomAs sends a room command on behalf of a user: the user registry resolves the user
// and passes the command to the room, which answers; an unknown user is for the room to
// refuse (2003 wins over 2002).
func (e *Engine) askRoomAs(ctx context.Context, uid, roomID string, ev userEvent) (roomReply, error) {
	return roomAnswer(e.ask(ctx, e.users, withUser{uid: uid, roomID: roomID, ev: ev}))
}

// Audience lists who is watching roomID; an unknown room has nobody.
func (e *Engine) Audience(ctx context.Context, roomID string) ([]User, error) {
	reply, err := e.askRoom(ctx, roomRequest{roomID: roomID, ev: queryAudience{}, callback: true})
	if err != nil {
		return nil, err
	}
	members, _ := reply.result.([]User)
	if members == nil {
		members = []User{}
	}
	return members, nil
}

// List returns the JSON array of room objects selected by q.
func (e *Engine) List(ctx context.Context, q ListQuery) ([]byte, error) {
	res, err := e.ask(ctx, e.rooms, listRequest{q: q})
	if err != nil {
		return nil, err
	}
	reply, _ := res.(listReply)
	return reply.json, nil
}

// StreamPublished handles Aliyun's publish callback; unknown streams are ignored.
func (e *Engine) StreamPublished(ctx context.Context, roomID string) error {
	_, err := e.askRoom(ctx, roomRequest{roomID: roomID, ev: evPublish{}, callback: true})
	return err
}

// StreamPublishDone handles Aliyun's publish_done callback; unknown streams are ignored.
func (e *Engine) StreamPublishDone(ctx context.Context, roomID string) error {
	_, err := e.askRoom(ctx, roomRequest{roomID: roomID, ev: evPublishDone{}, callback: true})
	return err
}

// MixAvailable handles Aliyun's mix-available callback for a room.
func (e *Engine) MixAvailable(ctx context.Context, roomID string) error {
	_, err := e.askRoom(ctx, roomRequest{roomID: roomID, ev: evMixAvailable{}, callback: true})
	return err
}

// ActiveRooms reports how many room actors are running and how many rooms exist (ended
// rooms waiting for their topic deletion included).
func (e *Engine) ActiveRooms(ctx context.Context) (running, rooms int, err error) {
	res, err := e.ask(ctx, e.rooms, activeRequest{})
	if err != nil {
		return 0, 0, err
	}
	reply, _ := res.(activeReply)
	return reply.running, reply.rooms, nil
}

// Reset wipes the store (key == "") or one room or user.
func (e *Engine) Reset(ctx context.Context, key string) error {
	if _, err := e.ask(ctx, e.calls, resetRequest{key: key}); err != nil {
		return err
	}
	res, err := e.ask(ctx, e.rooms, resetRequest{key: key})
	if err != nil {
		return err
	}
	if reply, _ := res.(resetReply); reply.err != nil {
		return ErrStoreUnavailable(reply.err)
	}
	_, err = e.ask(ctx, e.users, resetUsersRequest{key: key})
	return err
}
