package actors

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// createRoomRequest asks the registry for a new room; the new room actor answers the caller.
type createRoomRequest struct {
	host        User
	description string
	roomType    int
	status      int
}

// ListQuery selects rooms for /live/list.
type ListQuery struct {
	RoomID string // "" = every listed room; "-1" = every room whatever its state
	Offset int
	Limit  int // 0 = no limit
}

type listRequest struct{ q ListQuery }

// listReply is the JSON array of room objects, ready to embed in the envelope.
type listReply struct{ json []byte }

// hostRoomRequest asks for a user's live host room (the newest, if several).
type hostRoomRequest struct{ uid string }
type hostRoomReply struct{ roomID string }

// resetRequest wipes the store (key "": everything, else one room or user) and what the
// registries hold of it; fromFeed: another node wiped the store, only forget.
type resetRequest struct {
	key      string
	fromFeed bool
}
type resetReply struct{ err error }

// roomEntry is what the registry knows of one room: its actor (nil while not running) and
// its latest durable snapshot, rendered once for /live/list.
type roomEntry struct {
	pid    *actor.PID
	room   Room
	exists bool
	view   []byte

	lastSeen time.Time    // when a message was last routed to the actor
	stopping bool         // passivating: messages wait in pending until it has stopped
	pending  []pendingMsg // messages for the room while it stops
	wake     func() bool  // stops the wake-up timer armed for a deadline while not running

	// owned is true while this node acts for the room (fence is its token, zero on a single
	// node, which owns every room). In a cluster an entry that is not owned is only the read
	// model's copy, kept current from the feed, and remote is the owner last seen, tried first.
	owned  bool
	fence  Fence
	remote *Owner
}

// pendingMsg is a request held for a room that is stopping, with who to answer; a zero
// request (no event) is a deadline's wake, which only re-spawns the room.
type pendingMsg struct {
	req    roomRequest
	sender *actor.PID
}

// Passivation messages: the registry's own sweep timer, and a deadline of a room that is not
// running.
type (
	sweepIdle struct{}
	wakeRoom  struct{ roomID string }
	// activeRequest asks how many room actors are running (tests, metrics).
	activeRequest struct{}
	activeReply   struct{ running, rooms int }
)

// roomRegistry owns the set of rooms: it creates them, routes every message to the right
// room actor (spawning it from its snapshot when it is not running), and keeps the read
// model that /live/list serves without asking 1,000 actors.
type roomRegistry struct {
	deps    *roomDeps
	entries map[string]*roomEntry
	byPID   map[string]string // actor id → room id, to recognise a child's Terminated

	// sorted is every entry that exists and has not ended, oldest first; nil when stale.
	sorted     []*roomEntry
	listedJSON []byte // cached answer for the default filter; nil when stale
	liveCount  int
	onLive     func(int) // told the number of live rooms whenever it changes

	// idleTimeout passivates a room actor that got no message for that long (0 = never).
	idleTimeout time.Duration
	self        *actor.PID
	system      *actor.ActorSystem
	// own is the ownership seam: rooms this node does not act for are resolved through it.
	own ownership
}

func newRoomRegistry(deps *roomDeps, snapshots []Room, onLive func(int), idleTimeout time.Duration) *roomRegistry {
	r := &roomRegistry{deps: deps, entries: make(map[string]*roomEntry, len(snapshots)),
		byPID: map[string]string{}, onLive: onLive, idleTimeout: idleTimeout, own: deps.own}
	owned := r.own.ownsLoaded()
	for _, s := range snapshots {
		e := &roomEntry{room: s, exists: true, view: r.render(s), owned: owned}
		r.entries[s.ID] = e
		r.countLive(nil, e.view)
	}
	return r
}

func (r *roomRegistry) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		r.self, r.system = ctx.Self(), ctx.ActorSystem()
		for id, e := range r.entries {
			r.armWake(id, e)
		}
		r.invalidate()
		r.scheduleSweep()
	case *actor.Stopping:
		// Room actors are not children: stop them, after what they already hold.
		var stops []*actor.Future
		for _, e := range r.entries {
			if e.pid != nil {
				stops = append(stops, ctx.PoisonFuture(e.pid))
			}
		}
		for _, f := range stops {
			_ = f.Wait()
		}
	case sweepIdle:
		r.sweep(ctx)
		r.scheduleSweep()
	case wakeRoom:
		if e, ok := r.entries[msg.roomID]; ok && e.pid == nil {
			if e.stopping {
				e.pending = append(e.pending, pendingMsg{}) // re-spawn once stopped
			} else {
				r.spawn(ctx, msg.roomID, e)
			}
		}
	case activeRequest:
		ctx.Respond(activeReply{running: len(r.byPID), rooms: len(r.entries)})
	case ownedRequest:
		ctx.Respond(ownedReply{n: r.ownedRooms()})
	case createRoomRequest:
		r.create(ctx, msg, ctx.Sender())
	case roomRequest:
		r.route(ctx, msg, ctx.Sender())
	case entityAdopted, entityUnknown, roomLost, ownerSeen, ownerLost, feedRoom, feedRoomGone, feedResync, dueRoom, createClaimed:
		r.receiveCluster(ctx, msg)
	case roomChanged:
		r.changed(msg)
	case roomGone:
		if e, ok := r.entries[msg.roomID]; ok {
			delete(r.entries, msg.roomID)
			if e.wake != nil {
				e.wake()
			}
			r.countLive(e.view, nil)
			if e.pid != nil {
				delete(r.byPID, e.pid.Id)
				ctx.Poison(e.pid) // after any messages already forwarded to it
			}
			r.invalidate()
		}
	case *actor.Terminated:
		if id, ok := r.byPID[msg.Who.Id]; ok {
			delete(r.byPID, msg.Who.Id)
			if e, ok := r.entries[id]; ok && e.pid != nil && e.pid.Id == msg.Who.Id {
				r.stopped(ctx, id, e)
			}
		}
	case listRequest:
		ctx.Respond(listReply{json: r.list(msg.q)})
	case roomsRequest:
		ctx.Respond(roomsReply{rooms: r.snapshots()})
	case hostRoomRequest:
		ctx.Respond(hostRoomReply{roomID: r.hostRoomOf(msg.uid)})
	case resetRequest:
		ctx.Respond(resetReply{err: r.reset(ctx, msg.key, !msg.fromFeed)})
	}
}

// spawn starts a room actor. It is spawned at the root and watched rather than made a child:
// protoactor's child set keeps removed PIDs in its backing array, and a PID caches its
// process, so passivated children would never be freed. Watching delivers the same
// Terminated without holding on to the actor.
func (r *roomRegistry) spawn(ctx actor.Context, id string, e *roomEntry) *actor.PID {
	snapshot, exists := e.room, e.exists
	fence := e.fence
	props := actor.PropsFromProducer(func() actor.Actor { return newRoomActor(r.deps, snapshot, exists, fence) },
		actor.WithDispatcher(r.deps.dispatcher), actor.WithGuardian(r.deps.stopOnPanic))
	e.pid = ctx.ActorSystem().Root.Spawn(props)
	ctx.Watch(e.pid)
	e.lastSeen = r.deps.clock.Now()
	if e.wake != nil {
		e.wake() // the running actor arms its own timers
		e.wake = nil
	}
	r.byPID[e.pid.Id] = id
	return e.pid
}

// armWake makes sure a room that is not running still meets its deadline: a timer wakes it
// (re-spawns it from its snapshot, which arms and fires the room's own timer). This is how
// timers survive both passivation and a restart without starting every room at once.
func (r *roomRegistry) armWake(id string, e *roomEntry) {
	at := earliest(e.room.NoPublishDeadline, e.room.TopicDeleteDeadline)
	// Only the owner arms a room's deadline; in a cluster the sweep of the due set wakes a
	// room whose owner is gone.
	if at.IsZero() || e.pid != nil || !e.owned {
		return
	}
	if e.wake != nil {
		e.wake()
	}
	self, root := r.self, r.system.Root
	e.wake = r.deps.clock.AfterFunc(at.Sub(r.deps.clock.Now()), func() { root.Send(self, wakeRoom{roomID: id}) })
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

func (r *roomRegistry) scheduleSweep() {
	if r.idleTimeout <= 0 {
		return
	}
	self, root := r.self, r.system.Root
	r.deps.clock.AfterFunc(max(r.idleTimeout/4, time.Millisecond), func() { root.Send(self, sweepIdle{}) })
}

// sweep passivates room actors that have been idle for idleTimeout: they finish what is
// in their mailbox and stop; what arrives meanwhile waits in the registry (a room never
// stops itself, so no message is lost to a stopping actor).
func (r *roomRegistry) sweep(ctx actor.Context) {
	now := r.deps.clock.Now()
	for _, e := range r.entries {
		if e.pid == nil || e.stopping || now.Sub(e.lastSeen) < r.idleTimeout {
			continue
		}
		e.stopping = true
		ctx.Poison(e.pid)
	}
}

// stopped handles a room actor's end: passivated, or stopped after a panic. Messages that
// waited meanwhile re-spawn it at once; otherwise a deadline timer waits for it.
func (r *roomRegistry) stopped(ctx actor.Context, id string, e *roomEntry) {
	e.pid, e.stopping = nil, false
	pending := e.pending
	e.pending = nil
	if len(pending) == 0 {
		r.armWake(id, e)
		return
	}
	pid := r.spawn(ctx, id, e)
	for _, m := range pending {
		if m.req.ev != nil {
			ctx.RequestWithCustomSender(pid, m.req, m.sender)
		}
	}
}

func (r *roomRegistry) create(ctx actor.Context, req createRoomRequest, sender *actor.PID) {
	r.own.claimNew(ctx.ActorSystem().Root, ctx.Self(), req, r.newRoomID(), sender)
}

// createOwned spawns a new room's actor, which this node has claimed, and has it create
// the room.
func (r *roomRegistry) createOwned(ctx actor.Context, req createRoomRequest, id string, fence Fence, sender *actor.PID) {
	now := r.deps.clock.Now()
	room := Room{
		ID: id, UID: req.host.ID, Name: req.host.Name, Description: req.description,
		CreateTime: now, Status: req.status, Type: req.roomType,
		PushURL: r.deps.urls.PushURL(id, now),
	}
	// The entry exists (without a snapshot) from now on, so the id is never handed out twice
	// and messages for the room queue behind its creation in the room's mailbox.
	e := &roomEntry{room: Room{ID: id}, owned: true, fence: fence}
	r.entries[id] = e
	pid := r.spawn(ctx, id, e)
	ctx.RequestWithCustomSender(pid, roomRequest{roomID: id, ev: evCreate{room: room}}, sender)
}

func (r *roomRegistry) newRoomID() string {
	var b [5]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
		id := hex.EncodeToString(b[:])
		if _, taken := r.entries[id]; !taken {
			return id
		}
	}
}

func (r *roomRegistry) route(ctx actor.Context, req roomRequest, sender *actor.PID) {
	e, ok := r.entries[req.roomID]
	if !ok || !e.owned {
		r.resolve(ctx, req, sender, e)
		return
	}
	if e.stopping {
		e.pending = append(e.pending, pendingMsg{req: req, sender: sender})
		return
	}
	pid := e.pid
	if pid == nil {
		pid = r.spawn(ctx, req.roomID, e)
	}
	e.lastSeen = r.deps.clock.Now()
	ctx.RequestWithCustomSender(pid, req, sender)
}

// answerUnknown answers a request for a room that does not exist: a callback (or a sweep's
// wake) gets an empty success, a command 2003.
func (r *roomRegistry) answerUnknown(ctx actor.Context, req roomRequest, sender *actor.PID) {
	switch {
	case sender == nil:
	case req.callback || req.ev == nil:
		ctx.Send(sender, roomReply{})
	default:
		ctx.Send(sender, roomReply{err: ErrNoSuchRoom(req.roomID)})
	}
}

func (r *roomRegistry) changed(msg roomChanged) {
	e, ok := r.entries[msg.room.ID]
	if !ok {
		return
	}
	before := e.view
	e.room, e.exists = msg.room, msg.exists
	e.view = nil
	if msg.exists && !msg.room.Ended() {
		e.view = r.render(msg.room)
	}
	r.countLive(before, e.view)
	r.invalidate()
}

// countLive keeps the live-room count from a view's appearance (nil = not live).
func (r *roomRegistry) countLive(before, after []byte) {
	switch {
	case before == nil && after != nil:
		r.liveCount++
	case before != nil && after == nil:
		r.liveCount--
	default:
		return
	}
	if r.onLive != nil {
		r.onLive(r.liveCount)
	}
}

// hostRoomOf scans the live rooms: only co-streaming admissions ask, which are rare next to
// the requests that keep this registry busy.
func (r *roomRegistry) hostRoomOf(uid string) string {
	var best *roomEntry
	for _, e := range r.live() {
		if e.room.UID == uid && e.room.Type == TypeHost {
			best = e // live() is oldest first: the last match is the newest
		}
	}
	if best == nil {
		return ""
	}
	return best.room.ID
}

func (r *roomRegistry) render(room Room) []byte {
	if room.Ended() {
		return nil
	}
	b, err := MarshalJSON(ViewOf(room, r.deps.urls))
	if err != nil {
		panic("actors: encode room view: " + err.Error()) // plain strings and numbers
	}
	return b
}

func (r *roomRegistry) invalidate() {
	r.sorted, r.listedJSON = nil, nil
}

// live returns the rooms that exist for clients, oldest first.
func (r *roomRegistry) live() []*roomEntry {
	if r.sorted != nil {
		return r.sorted
	}
	r.sorted = make([]*roomEntry, 0, len(r.entries))
	for _, e := range r.entries {
		if e.exists && e.view != nil {
			r.sorted = append(r.sorted, e)
		}
	}
	slices.SortFunc(r.sorted, func(x, y *roomEntry) int {
		if c := x.room.CreateTime.Compare(y.room.CreateTime); c != 0 {
			return c
		}
		return bytes.Compare([]byte(x.room.ID), []byte(y.room.ID))
	})
	return r.sorted
}

func (r *roomRegistry) list(q ListQuery) []byte {
	all := q.RoomID == "-1"
	if q.RoomID == "" && q.Offset == 0 && q.Limit == 0 {
		if r.listedJSON == nil {
			r.listedJSON = joinViews(r.live(), func(e *roomEntry) bool { return listed(e.room) }, 0, 0)
		}
		return r.listedJSON
	}
	if q.RoomID != "" && !all {
		e, ok := r.entries[q.RoomID]
		if !ok || !e.exists || e.view == nil || !listed(e.room) {
			return []byte("[]")
		}
		return joinViews([]*roomEntry{e}, func(*roomEntry) bool { return true }, q.Offset, q.Limit)
	}
	keep := func(e *roomEntry) bool { return all || listed(e.room) }
	return joinViews(r.live(), keep, q.Offset, q.Limit)
}

// joinViews concatenates the pre-rendered views of the entries that pass keep, after
// skipping offset of them and taking at most limit (0 = all).
func joinViews(entries []*roomEntry, keep func(*roomEntry) bool, offset, limit int) []byte {
	var buf bytes.Buffer
	buf.WriteByte('[')
	n, skipped := 0, 0
	for _, e := range entries {
		if !keep(e) {
			continue
		}
		if skipped < offset {
			skipped++
			continue
		}
		if limit > 0 && n == limit {
			break
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(e.view)
		n++
	}
	buf.WriteByte(']')
	return buf.Bytes()
}

// reset stops the affected room actors (letting them finish what is queued), then wipes the
// store, so no running actor writes a snapshot back after the wipe.
func (r *roomRegistry) reset(ctx actor.Context, key string, wipeStore bool) error {
	for id, e := range r.entries {
		if key != "" && id != key {
			continue
		}
		if e.pid != nil {
			delete(r.byPID, e.pid.Id)
			_ = ctx.PoisonFuture(e.pid).Wait() // a timeout only means it was already gone
		}
		r.countLive(e.view, nil)
		delete(r.entries, id)
	}
	r.invalidate()
	if !wipeStore {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.Background(), r.deps.storeTimeout+time.Second)
	defer cancel()
	return r.deps.store.Reset(sctx, key)
}
