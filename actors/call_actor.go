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

// callDeps are what every call actor shares.
type callDeps struct {
	store     Store
	publisher Publisher
	mixer     Mixer
	// mixerReady reports whether the CDN can be called now (its circuit breaker is closed);
	// nil means always.
	mixerReady   func() error
	urls         URLs
	clock        Clock
	log          *slog.Logger
	storeTimeout time.Duration
	askTimeout   time.Duration
	// mixTimeout bounds one Start or Stop (the Mixer has its own, shorter timeout).
	mixTimeout time.Duration
	// stopAttempts and stopBackoff bound the retries of a failing Stop: a mix left running
	// costs money, so a Stop is retried, but a call must end even if the CDN never answers.
	stopAttempts int
	stopBackoff  time.Duration
	// resumeMixes: mixes die with the process (EngineConfig.ResumeMixes).
	resumeMixes  bool
	rooms, calls *actor.PID
	dispatcher   actor.Dispatcher
	// own is the ownership seam: it holds the call reservations.
	own ownership
}

// callActor is the thin shell around stepCall. Start and Stop run in their own goroutines
// and come back as events, so the mailbox never waits on the CDN.
type callActor struct {
	deps   *callDeps
	call   Call
	resume bool
	self   *actor.PID
	system *actor.ActorSystem
	// fence is the call's ownership token in a cluster (zero on a single node).
	fence Fence
}

func newCallActor(deps *callDeps, snapshot Call, resume bool, fence Fence) *callActor {
	return &callActor{deps: deps, call: snapshot, resume: resume, fence: fence}
}

func (a *callActor) Receive(ctx actor.Context) {
	defer a.recoverAndReport(ctx)
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.self, a.system = ctx.Self(), ctx.ActorSystem()
		if a.resume {
			a.reissue()
		}
	case admitRequest:
		a.admit(ctx, msg)
	case callRequest:
		a.handle(ctx, msg.ev)
	case roomCallRequest:
		a.handle(ctx, msg.ev)
	case mixCallRequest:
		a.handle(ctx, msg.ev)
	}
}

func (a *callActor) recoverAndReport(ctx actor.Context) {
	p := recover()
	if p == nil {
		return
	}
	a.deps.log.Error("call actor panicked", "call", a.call.ID, "panic", p, "stack", logcap.Trusted(debug.Stack()))
	if ctx.Sender() != nil {
		ctx.Respond(callReply{err: Errorf(CodeInternal, "系统异常")})
	}
	panic(p)
}

// reissue resumes a call loaded after a restart: a Start or Stop that was in flight when the
// process died is sent again (Aliyun's Start and Stop are idempotent for the same streams).
func (a *callActor) reissue() {
	for i, leg := range a.call.Legs {
		switch leg.State {
		case legStarting:
			// The Start may have created the mix before the process died: adopt it.
			a.runMix(mixCall{leg: i, attempt: leg.Attempt, start: true,
				req: MixRequest{MainStream: leg.Main, MixStream: leg.Mix, Template: a.call.Layout, Adopt: true}})
		case legStopping:
			a.runMix(mixCall{leg: i, attempt: leg.Attempt,
				req: MixRequest{MainStream: leg.Main, MixStream: leg.Mix, MixID: leg.MixID}})
		case legStarted:
			// A mix that ran in the process that died is started again; its answer is stale
			// for the call (the leg is not starting), a failure arrives as a mix event.
			if a.deps.resumeMixes && a.call.Phase == PhaseMixed {
				a.runMix(mixCall{leg: i, attempt: leg.Attempt, start: true, req: MixRequest{MainStream: leg.Main,
					MixStream: leg.Mix, Template: a.call.Layout, Adopt: true, Resume: true}})
			}
		}
	}
}

// ask sends a request to another actor and waits; used only while admitting a call, which
// no one else can reach yet.
func (a *callActor) ask(ctx actor.Context, pid *actor.PID, msg any) (roomReply, *Error) {
	res, err := ctx.RequestFuture(pid, msg, a.deps.askTimeout).Result()
	if err != nil {
		return roomReply{}, Errorf(CodeUnavailable, "请求超时，请稍后重试")
	}
	reply, _ := res.(roomReply)
	return reply, reply.err
}

// admit builds an accepted call: co-stream rooms for sides that have none, both rooms join,
// the call is saved, push 2 goes to the inviter. Any failure undoes what was done, so a
// refused accept leaves no room, call or message behind.
func (a *callActor) admit(ctx actor.Context, req admitRequest) {
	id := a.call.ID
	sides := []*CallSide{&req.inviter, &req.invitee}
	var created, joined []string
	fail := func(err *Error) {
		a.unreserve(req.inviter, req.invitee, created)
		for _, room := range joined {
			ctx.Send(a.deps.rooms, roomRequest{roomID: room, ev: evLeaveCall{callID: id}, callback: true})
		}
		for _, room := range created {
			if !slices.Contains(joined, room) {
				ctx.Send(a.deps.rooms, roomRequest{roomID: room, ev: evLeave{}, callback: true})
			}
		}
		ctx.Respond(admitReply{err: err})
		ctx.Send(a.deps.calls, callGone{callID: id})
	}
	for _, s := range sides {
		if s.RoomID != "" {
			continue
		}
		reply, err := a.ask(ctx, a.deps.rooms, createRoomRequest{host: User{ID: s.UID, Name: s.Name},
			description: s.Name + "的直播", roomType: TypeViewer, status: StatusCostream})
		if err != nil {
			fail(err)
			return
		}
		s.RoomID, s.Type = reply.room.ID, TypeViewer
		created = append(created, s.RoomID)
	}
	if err := a.reserveCreated(created, req.inviter.UID, req.invitee.UID); err != nil {
		fail(err)
		return
	}
	var hostRooms []string
	for _, s := range sides {
		if s.Type == TypeHost {
			hostRooms = append(hostRooms, s.RoomID)
		}
	}
	var rooms [2]Room
	for i, s := range sides {
		reply, err := a.ask(ctx, a.deps.rooms, roomRequest{roomID: s.RoomID, ev: evJoinCall{callID: id, hostRooms: hostRooms}})
		if err != nil {
			fail(err)
			return
		}
		rooms[i], s.Ready = reply.room, reply.room.IsMixReady
		joined = append(joined, s.RoomID)
	}
	call := newCall(id, req.layout, req.inviter, req.invitee, a.deps.clock.Now())
	if err := a.save(call, false); err != nil {
		fail(ErrStoreUnavailable(err))
		return
	}
	a.call = call
	ctx.Send(a.deps.calls, callChanged{call: call})

	topic := call.Invitee.RoomID
	if call.Inviter.Type == TypeHost {
		topic = call.Inviter.RoomID
	}
	// Push 2 is sent by the room itself, so it is ordered with the room's own end: a host who
	// left while this accept was being admitted has already had its type 8 pushed, and then
	// the room refuses, the admission is undone and the accept answers 2003.
	announce := evAnnounceCall{callID: id, push: outPush{topic: topic, tag: call.Inviter.UID, importance: 4, typ: 2,
		data: acceptedData{
			InviteeUID: call.Invitee.UID, InviteeName: call.Invitee.Name,
			InviteeRoomID: call.Invitee.RoomID, InviterRoomID: call.Inviter.RoomID,
			InviteePlayURL: a.deps.urls.ShortDelayPlayURL(call.Invitee.RoomID), RtmpURL: rooms[0].PushURL,
			Type: call.Layout, InviterType: call.Inviter.Type, InviteeType: call.Invitee.Type, Status: 1,
		}}}
	if _, err := a.ask(ctx, a.deps.rooms, roomRequest{roomID: topic, ev: announce}); err != nil {
		if err := a.save(call, true); err != nil {
			a.deps.log.Warn("snapshot of an undone call not deleted", "call", id, "err", err)
		}
		fail(err)
		return
	}
	ctx.Respond(admitReply{call: call, inviterRoom: rooms[0], inviteeRoom: rooms[1]})
	// Saved before the Starts go out, like every step: a process that dies while they are
	// in flight finds the call starting and re-issues them (adopting what they created).
	st := stepCall(a.call, evCallStart{}, a.deps.urls.MixPlayURL)
	if st.changed {
		if err := a.save(st.next, st.release); err != nil {
			a.deps.log.Warn("call snapshot not persisted", "call", a.call.ID, "err", err)
		}
	}
	a.apply(ctx, st)
}

func (a *callActor) handle(ctx actor.Context, ev callEvent) {
	if !a.deps.own.member() {
		if ctx.Sender() != nil {
			ctx.Respond(callReply{call: a.call, err: errNotMember()})
		}
		return
	}
	if e, ok := ev.(evCallClose); ok && !e.roomEnded && a.needsStop() && a.deps.mixerReady != nil {
		// Closing a mixed call needs the CDN; while its breaker is open, refuse fast and
		// change nothing, so the client can retry.
		if err := a.deps.mixerReady(); err != nil {
			ctx.Respond(callReply{call: a.call, err: Errorf(CodeUnavailable, "CDN混流服务不可用，请稍后重试: %v", err)})
			return
		}
	}
	st := stepCall(a.call, ev, a.deps.urls.MixPlayURL)
	a.debugStep(ev, st)
	if st.changed {
		if err := a.save(st.next, st.release); err != nil {
			if errors.Is(err, ErrFenced) {
				a.deps.log.Warn("call owned by another node now; this copy stops", "call", a.call.ID, "epoch", a.fence.Epoch)
				ctx.Send(a.deps.calls, callLost{callID: a.call.ID, fence: a.fence})
				if ctx.Sender() != nil {
					ctx.Respond(callReply{call: a.call, err: Errorf(CodeUnavailable, "连麦已迁移，请重试")})
				}
				return
			}
			if _, command := ev.(evCallClose); command && ctx.Sender() != nil {
				ctx.Respond(callReply{call: a.call, err: ErrStoreUnavailable(err)})
				return
			}
			// CDN answers and callbacks happened whatever the store says: keep the state in
			// memory; the next change saves it.
			a.deps.log.Warn("call snapshot not persisted", "call", a.call.ID, "err", err)
		}
	}
	a.apply(ctx, st)
	if ctx.Sender() != nil {
		ctx.Respond(callReply{call: a.call})
	}
}

// needsStop reports whether closing now would call the CDN.
func (a *callActor) needsStop() bool {
	for _, leg := range a.call.Legs {
		if leg.State == legStarted {
			return true
		}
	}
	return false
}

// apply performs a step's effects after its snapshot was saved. Room updates are waited
// for before anything is pushed: a client that reacts to push 5 or 15 by listing rooms must
// already see isMixed as the push says.
func (a *callActor) apply(ctx actor.Context, st callStep) {
	a.call = st.next
	var updates []*actor.Future
	for _, f := range st.flags {
		updates = append(updates, ctx.RequestFuture(a.deps.rooms, roomRequest{roomID: f.roomID,
			ev: evCallFlags{callID: a.call.ID, mixed: f.mixed, mixedStatus: f.mixedStatus}, callback: true}, a.deps.askTimeout))
	}
	if st.release {
		rooms := [2]string{a.call.Inviter.RoomID, a.call.Invitee.RoomID}
		for i, room := range rooms {
			updates = append(updates, ctx.RequestFuture(a.deps.rooms, roomRequest{roomID: room,
				ev: evLeaveCall{callID: a.call.ID, peer: rooms[1-i]}, callback: true}, a.deps.askTimeout))
		}
	}
	for _, f := range updates {
		if _, err := f.Result(); err != nil {
			a.deps.log.Warn("room did not confirm a call update", "call", a.call.ID, "err", err)
		}
	}
	now := a.deps.clock.Now()
	for _, p := range st.pushes {
		push := EncodePush(p.topic, p.tag, p.importance, p.typ, p.data, now)
		push.Fence = a.fence
		a.deps.publisher.Publish(push)
	}
	for _, m := range st.mixes {
		a.runMix(m)
	}
	if st.release {
		a.unreserve(a.call.Inviter, a.call.Invitee, nil)
		ctx.Send(a.deps.calls, callGone{callID: a.call.ID})
		return
	}
	if st.changed {
		ctx.Send(a.deps.calls, callChanged{call: a.call})
	}
}

// reserveCreated adds the co-stream rooms made during an admission to the call's
// reservations, so the call is found from them (in a cluster, by any node).
func (a *callActor) reserveCreated(created []string, users ...string) *Error {
	if len(created) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.deps.storeTimeout)
	defer cancel()
	busy, err := a.deps.own.reserve(ctx, a.call.ID, created, users)
	switch {
	case err != nil:
		return ErrStoreUnavailable(err)
	case busy != "":
		return Errorf(CodeInCall, "%s已经在连麦中", busy)
	}
	return nil
}

// unreserve frees the call's rooms and users before the call's end is answered, so an
// accept that follows a close is not refused as busy.
func (a *callActor) unreserve(inviter, invitee CallSide, created []string) {
	rooms := slices.DeleteFunc(append([]string{inviter.RoomID, invitee.RoomID}, created...), func(r string) bool { return r == "" })
	ctx, cancel := context.WithTimeout(context.Background(), a.deps.storeTimeout)
	defer cancel()
	if err := a.deps.own.unreserve(ctx, a.call.ID, rooms, []string{inviter.UID, invitee.UID}); err != nil {
		a.deps.log.Warn("call reservations not freed", "call", a.call.ID, "err", err)
	}
}

func (a *callActor) save(c Call, remove bool) error {
	ctx, cancel := fencedContext(a.fence, a.deps.storeTimeout)
	defer cancel()
	if remove {
		return a.deps.store.DeleteCall(ctx, c.ID)
	}
	return a.deps.store.SaveCall(ctx, c)
}

// runMix calls the CDN off the mailbox. The answer goes back through the call registry, which
// reaches this call even if its actor was re-spawned meanwhile.
func (a *callActor) runMix(m mixCall) {
	root, calls, id, d := a.system.Root, a.deps.calls, a.call.ID, a.deps
	go func() {
		if m.start {
			ctx, cancel := context.WithTimeout(context.Background(), d.mixTimeout)
			started, err := d.mixer.StartMix(ctx, m.req)
			cancel()
			root.Send(calls, callRequest{callID: id, ev: evStartAnswered{leg: m.leg, attempt: m.attempt,
				streams: started.Streams, id: started.ID, err: asError(err)}})
			return
		}
		var err error
		for try := range max(d.stopAttempts, 1) {
			ctx, cancel := context.WithTimeout(context.Background(), d.mixTimeout)
			err = d.mixer.StopMix(ctx, m.req)
			cancel()
			if err == nil || !retryable(err) {
				break
			}
			d.log.Warn("stop mix failed, retrying", "call", id, "main", m.req.MainStream, "attempt", try+1, "err", err)
			time.Sleep(d.stopBackoff << try)
		}
		root.Send(calls, callRequest{callID: id, ev: evStopAnswered{leg: m.leg, attempt: m.attempt, err: asError(err)}})
	}()
}

// retryable: an outage (503) or a CDN internal error is worth another try; a refused
// request (no such stream, invalid argument) is not.
func retryable(err error) bool {
	var e *Error
	return !errors.As(err, &e) || e.Code == CodeUnavailable || e.Code == CodeMixInternal || e.Code == CodeMixFailed
}

func asError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Errorf(CodeMixFailed, "%v", err)
}

// acceptedData is the body of push 2 (invitation accepted).
type acceptedData struct {
	InviteeUID     string `json:"inviteeUid"`
	InviteeName    string `json:"inviteeName"`
	InviteeRoomID  string `json:"inviteeRoomId"`
	InviterRoomID  string `json:"inviterRoomId"`
	InviteePlayURL string `json:"inviteePlayUrl"`
	RtmpURL        string `json:"rtmpUrl"`
	Type           string `json:"type"`
	InviterType    int    `json:"inviterType"`
	InviteeType    int    `json:"inviteeType"`
	Status         int    `json:"status"`
}
