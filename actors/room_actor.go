package actors

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"roomengine/internal/logcap"
)

// roomRequest routes an event to one room through the room registry. Callback events (from
// Aliyun, timers) are answered with an empty success when the room is unknown; commands get
// 2003.
type roomRequest struct {
	roomID   string
	ev       roomEvent // nil only in a sweep's wake, which never reaches an actor
	callback bool
	// remote marks a request from another node: answered here, never forwarded again.
	remote bool
}

// roomReply answers a roomRequest.
type roomReply struct {
	room   Room
	result any
	err    *Error
}

// queryAudience asks a room for its audience; it changes nothing.
type queryAudience struct{}

// roomChanged tells the registry a room's latest durable snapshot.
type roomChanged struct {
	room   Room
	exists bool
}

// roomGone asks the registry to forget a room and stop its actor.
type roomGone struct{ roomID string }

type timerKind int

const (
	timerNoPublish timerKind = iota
	timerTopicDelete
)

// timerFired is sent by a room's clock timer to the room itself. The generation number lets
// the room ignore a timer that fires after it was re-armed or cancelled.
type timerFired struct {
	kind timerKind
	gen  uint64
}

type armedTimer struct {
	at   time.Time
	gen  uint64
	stop func() bool
}

// roomDeps are what every room actor shares.
type roomDeps struct {
	cfg          RoomConfig
	store        Store
	publisher    Publisher
	clock        Clock
	urls         URLs
	log          *slog.Logger
	storeTimeout time.Duration
	rooms, calls *actor.PID // the room and call registries
	dispatcher   actor.Dispatcher
	// stopOnPanic supervises room actors: a room that panicked stops (its state is suspect)
	// and the registry re-spawns it from its snapshot.
	stopOnPanic actor.SupervisorStrategy
	// own is the ownership seam (a single node, or one node of a cluster).
	own ownership
}

// roomActor is the thin shell around stepRoom: it feeds events in, performs the effects in
// order (durable first, then pushes and timers) and replies.
type roomActor struct {
	deps     *roomDeps
	room     Room
	exists   bool
	audience map[string]User
	// audienceLoaded is false until the audience was read from the store; a room whose
	// read failed (store away at activation) reads it again before it uses it.
	audienceLoaded bool
	timers         [2]armedTimer
	self           *actor.PID
	system         *actor.ActorSystem
	// fence is the room's ownership token in a cluster (zero on a single node): every
	// write and push carries it.
	fence Fence
}

func newRoomActor(deps *roomDeps, snapshot Room, exists bool, fence Fence) *roomActor {
	return &roomActor{deps: deps, room: snapshot, exists: exists, audience: map[string]User{}, fence: fence}
}

func (a *roomActor) Receive(ctx actor.Context) {
	defer a.recoverAndReport(ctx)
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.self, a.system = ctx.Self(), ctx.ActorSystem()
		a.activate()
	case *actor.Stopping:
		a.cancelTimers()
	case roomRequest:
		a.handle(ctx, msg)
	case timerFired:
		a.fire(ctx, msg)
	}
}

// recoverAndReport answers a request whose handling panicked with a 500 and logs the stack at
// ERROR, then re-panics so the supervisor stops this actor; the registry re-spawns it from its
// last durable snapshot on the next message.
func (a *roomActor) recoverAndReport(ctx actor.Context) {
	p := recover()
	if p == nil {
		return
	}
	a.deps.log.Error("room actor panicked", "room", a.room.ID, "panic", p, "stack", logcap.Trusted(debug.Stack()))
	if ctx.Sender() != nil {
		ctx.Respond(roomReply{err: Errorf(CodeInternal, "系统异常")})
	}
	panic(p)
}

// activate restores what the snapshot does not hold: the audience and the armed timers.
func (a *roomActor) activate() {
	a.reconcileTimers()
	if !a.exists || a.room.Ended() {
		a.audienceLoaded = true // nobody watches an ended room
		return
	}
	if err := a.loadAudience(); err != nil {
		// Not fatal: the first request that needs the audience tries again (and answers 503
		// if the store is still away) rather than serve a room with viewers missing.
		a.deps.log.Warn("load audience failed", "room", a.room.ID, "err", err)
	}
}

func (a *roomActor) loadAudience() error {
	ctx, cancel := context.WithTimeout(context.Background(), a.deps.storeTimeout)
	defer cancel()
	members, err := a.deps.store.LoadAudience(ctx, a.room.ID)
	if err != nil {
		return err
	}
	for _, m := range members {
		a.audience[m.ID] = m
	}
	a.audienceLoaded = true
	return nil
}

// needsAudience tells the events whose answer or effect depends on who is watching.
func needsAudience(ev roomEvent) bool {
	switch ev.(type) {
	case queryAudience, evPlay, evAudienceLeave:
		return true
	}
	return false
}

func (a *roomActor) handle(ctx actor.Context, req roomRequest) {
	if !a.deps.own.member() {
		ctx.Respond(roomReply{room: a.room, err: errNotMember()})
		return
	}
	if !a.audienceLoaded && needsAudience(req.ev) {
		if err := a.loadAudience(); err != nil {
			ctx.Respond(roomReply{room: a.room, err: ErrStoreUnavailable(err)})
			return
		}
	}
	switch req.ev.(type) {
	case queryAudience:
		ctx.Respond(roomReply{room: a.room, result: a.audienceList()})
		return
	case queryRoom:
		if !a.exists || a.room.Ended() {
			ctx.Respond(roomReply{err: ErrNoSuchRoom(req.roomID)})
			return
		}
		ctx.Respond(roomReply{room: a.room, result: a.room})
		return
	}
	st := stepRoom(a.deps.cfg, a.room, a.exists, a.isMember, req.ev, a.deps.clock.Now())
	a.debugStep(req.ev, st)
	if st.err != nil {
		ctx.Respond(roomReply{room: a.room, err: st.err})
		return
	}
	if err := a.persist(st); err != nil {
		a.deps.log.Warn("room change not persisted", "room", st.next.ID, "err", err)
		ctx.Respond(roomReply{room: a.room, err: ErrStoreUnavailable(err)})
		if a.fenced(ctx, err) {
			return
		}
		if !a.exists {
			ctx.Send(a.deps.rooms, roomGone{roomID: st.next.ID}) // a creation that failed leaves nothing
			undoCreation(a.deps, st.next.ID, 0, false)
		}
		return
	}
	a.commit(ctx, st)
	ctx.Respond(roomReply{room: a.room, result: st.result})
}

func (a *roomActor) fire(ctx actor.Context, t timerFired) {
	armed := &a.timers[t.kind]
	if t.gen != armed.gen || armed.at.IsZero() {
		return // cancelled or re-armed since
	}
	armed.at = time.Time{} // fired: reconcileTimers re-arms if the deadline still stands
	var ev roomEvent = evNoPublishDue{}
	if t.kind == timerTopicDelete {
		ev = evTopicDeleteDue{}
	}
	if !a.deps.own.member() {
		return // not a member: the room's new owner fires it
	}
	st := stepRoom(a.deps.cfg, a.room, a.exists, a.isMember, ev, a.deps.clock.Now())
	a.debugStep(ev, st)
	if err := a.persist(st); err != nil {
		if a.fenced(ctx, err) {
			return
		}
		a.deps.log.Warn("timer effect not persisted, retrying", "room", a.room.ID, "err", err)
		a.arm(t.kind, a.deps.clock.Now().Add(time.Second))
		return
	}
	a.commit(ctx, st)
}

// persist performs the durable effects of a step. Nothing else happens before they succeed.
func (a *roomActor) persist(st roomStep) error {
	if !st.save && !st.remove && st.audienceAdd == nil && st.audienceRemove == "" {
		return nil
	}
	ctx, cancel := fencedContext(a.fence, a.deps.storeTimeout)
	defer cancel()
	id := st.next.ID
	switch {
	case st.remove:
		return a.deps.store.DeleteRoom(ctx, id)
	case st.save:
		return a.deps.store.SaveRoom(ctx, st.next)
	case st.audienceAdd != nil:
		return a.deps.store.AddAudience(ctx, id, *st.audienceAdd)
	default:
		return a.deps.store.RemoveAudience(ctx, id, st.audienceRemove)
	}
}

// commit applies a persisted step to memory and performs its outbound effects.
func (a *roomActor) commit(ctx actor.Context, st roomStep) {
	changed := st.save || st.remove || st.exists != a.exists
	a.room, a.exists = st.next, st.exists
	if st.audienceAdd != nil {
		a.audience[st.audienceAdd.ID] = *st.audienceAdd
	}
	if st.audienceRemove != "" {
		delete(a.audience, st.audienceRemove)
	}
	if st.clearAudience {
		clear(a.audience)
	}
	// The registry is told before anything is pushed. Lists are answered from its mailbox,
	// so a client that reacts to a push (type 8, 9…) by listing rooms already sees the room
	// as the push says.
	if changed {
		ctx.Send(a.deps.rooms, roomChanged{room: a.room, exists: a.exists})
	}
	if st.stop {
		ctx.Send(a.deps.rooms, roomGone{roomID: a.room.ID})
	}
	if st.createTopic {
		a.deps.publisher.CreateTopic(a.room.ID)
	}
	now := a.deps.clock.Now()
	for _, p := range st.pushes {
		topic := p.topic
		if topic == "" {
			topic = a.room.ID
		}
		push := EncodePush(topic, p.tag, p.importance, p.typ, p.data, now)
		push.Fence, push.Changed = a.fence, changed
		a.deps.publisher.Publish(push)
	}
	if st.deleteTopic {
		a.deps.publisher.DeleteTopic(a.room.ID)
	}
	a.reconcileTimers()
	if st.notifyCall != nil {
		ctx.Send(a.deps.calls, *st.notifyCall)
	}
}

// fenced handles a write the store refused because another node owns the room now: this
// copy stops acting at once and the registry forgets that it owned the room.
func (a *roomActor) fenced(ctx actor.Context, err error) bool {
	if !errors.Is(err, ErrFenced) {
		return false
	}
	a.deps.log.Warn("room owned by another node now; this copy stops", "room", a.room.ID, "epoch", a.fence.Epoch)
	a.cancelTimers()
	ctx.Send(a.deps.rooms, roomLost{roomID: a.room.ID, fence: a.fence})
	return true
}

func (a *roomActor) isMember(uid string) bool {
	_, ok := a.audience[uid]
	return ok
}

func (a *roomActor) audienceList() []User {
	out := make([]User, 0, len(a.audience))
	for _, u := range a.audience {
		out = append(out, u)
	}
	slices.SortFunc(out, func(x, y User) int { return CompareIDs(x.ID, y.ID) })
	return out
}

// reconcileTimers makes the armed timers match the deadlines in the snapshot. Deriving timers
// from the snapshot is what makes them survive a restart: activation just calls this.
func (a *roomActor) reconcileTimers() {
	var noPublish, topicDelete time.Time
	if a.exists {
		noPublish, topicDelete = a.room.NoPublishDeadline, a.room.TopicDeleteDeadline
	}
	a.reconcile(timerNoPublish, noPublish)
	a.reconcile(timerTopicDelete, topicDelete)
}

func (a *roomActor) reconcile(kind timerKind, deadline time.Time) {
	armed := &a.timers[kind]
	if armed.at.Equal(deadline) {
		return
	}
	if deadline.IsZero() {
		a.cancel(kind)
		return
	}
	a.arm(kind, deadline)
}

func (a *roomActor) arm(kind timerKind, at time.Time) {
	a.cancel(kind)
	armed := &a.timers[kind]
	armed.gen++
	armed.at = at
	msg := timerFired{kind: kind, gen: armed.gen}
	self, system := a.self, a.system
	armed.stop = a.deps.clock.AfterFunc(at.Sub(a.deps.clock.Now()), func() {
		system.Root.Send(self, msg)
	})
}

func (a *roomActor) cancel(kind timerKind) {
	armed := &a.timers[kind]
	if armed.stop != nil {
		armed.stop()
		armed.stop = nil
	}
	armed.at = time.Time{}
}

func (a *roomActor) cancelTimers() {
	a.cancel(timerNoPublish)
	a.cancel(timerTopicDelete)
}

// undoCreation deletes from the store a room whose creation was answered 503. A store that
// timed out may still apply the write later (a Redis that hung runs the command when it
// resumes), and a room its host was told does not exist must not reappear after a restart.
// The delete is retried with backoff until the store takes it (for about an hour at most),
// then made once more a second later, because the original write may land after the first
// delete. Room ids are random and never reused, so the delete cannot hit another room.
func undoCreation(deps *roomDeps, id string, attempt int, deleted bool) {
	const maxAttempts = 720
	delay := min(time.Second<<min(attempt, 3), 5*time.Second)
	deps.clock.AfterFunc(delay, func() {
		ctx, cancel := context.WithTimeout(context.Background(), deps.storeTimeout)
		err := deps.store.DeleteRoom(ctx, id)
		cancel()
		switch {
		case err == nil && deleted:
			deps.log.Info("undone a room creation that had failed", "room", id)
		case err == nil:
			undoCreation(deps, id, 0, true)
		case attempt+1 < maxAttempts:
			undoCreation(deps, id, attempt+1, deleted)
		default:
			deps.log.Error("could not undo a room creation that had failed; the room may reappear after a restart", "room", id, "err", err)
		}
	})
}
