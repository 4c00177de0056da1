package actors

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/asynkron/protoactor-go/actor"
)

// callRequest routes an event to one call. from names the room that sent it, so a room that
// believes it is in a call that no longer exists can be told to leave it.
type callRequest struct {
	callID string
	ev     callEvent // nil only in a sweep's wake, which never reaches an actor
	from   string
	remote bool // from another node: answered here, never forwarded again
}

// roomCallRequest routes an event to the call a room is in (close, mix results): Aliyun and
// clients name rooms, not calls. A room in no call gets an empty success.
type roomCallRequest struct {
	roomID string
	ev     callEvent
	remote bool
}

// mixCallRequest routes an event to the call that has a mix with this id (MixLeg.MixID):
// the Live API's mix callbacks may name only the mix. No such call gets an empty success.
type mixCallRequest struct {
	mixID, mainRoom string
	ev              callEvent
}

// callReply answers call requests.
type callReply struct {
	call Call
	err  *Error
}

// admitRequest asks for a new call. A side whose RoomID is empty gets a co-stream room.
type admitRequest struct {
	inviter, invitee CallSide
	layout           string
}

// admitReply answers an admission: the call and both rooms as they are in it.
type admitReply struct {
	call                     Call
	inviterRoom, inviteeRoom Room
	err                      *Error
}

// busyRequest asks whether a room is in a call (or being admitted into one).
type busyRequest struct{ roomID string }
type busyReply struct{ busy bool }

type callChanged struct{ call Call }
type callGone struct{ callID string }

type callEntry struct {
	pid  *actor.PID
	call Call
	// fence is the call's ownership token (zero on a single node).
	fence Fence
}

// callRegistry routes events to the call actors this node acts for, re-spawning them from
// their snapshot when they are not running, and hands every other call's events to the
// ownership seam. Admission reserves both rooms and both users in one atomic step of the
// seam (in memory on a single node, in the shared store in a cluster), so two accepts
// racing for one room cannot both win (calls_routing.go).
type callRegistry struct {
	deps  *callDeps
	calls map[string]*callEntry
	byPID map[string]string // actor id → call id
	own   ownership
	// admitting holds what was routed to a call being admitted, until it is made.
	admitting map[string][]routeCall
}

func newCallRegistry(deps *callDeps, snapshots []Call) *callRegistry {
	r := &callRegistry{deps: deps, calls: map[string]*callEntry{}, byPID: map[string]string{}, own: deps.own,
		admitting: map[string][]routeCall{}}
	for _, c := range snapshots {
		r.calls[c.ID] = &callEntry{call: c}
	}
	return r
}

func (r *callRegistry) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		// Calls with a Start or Stop outstanding resume at once (their actor re-issues it), and
		// mixed calls whose mixes died with the previous process.
		for id, e := range r.calls {
			if e.call.Phase == PhaseStarting || e.call.Phase == PhaseClosing ||
				(e.call.Phase == PhaseMixed && r.deps.resumeMixes) {
				r.spawn(ctx, id, e, nil)
			}
		}
	case admitRequest:
		r.admit(ctx, msg)
	case callRequest:
		e, ok := r.calls[msg.callID]
		if !ok {
			r.resolve(ctx, msg, ctx.Sender())
			return
		}
		r.forward(ctx, msg.callID, e)
	case roomCallRequest:
		r.callOf(ctx, msg, ctx.Sender())
	case ownedRequest:
		ctx.Respond(ownedReply{n: r.ownedCalls()})
	case callsRequest:
		ctx.Respond(callsReply{calls: r.snapshots()})
	case mixCallRequest:
		for id, e := range r.calls {
			for _, leg := range e.call.Legs {
				if msg.mixID != "" && leg.MixID == msg.mixID {
					r.forward(ctx, id, e)
					return
				}
			}
		}
		// Not a mix of this node's calls: in a cluster the call may be another node's; it is
		// found through its main room (the call still matches the mix id, so a stale mix's
		// callback changes nothing).
		if msg.mainRoom == "" {
			ctx.Respond(callReply{})
			return
		}
		r.callOf(ctx, roomCallRequest{roomID: msg.mainRoom, ev: msg.ev}, ctx.Sender())
	case busyRequest:
		r.busyOf(ctx, msg, ctx.Sender())
	case callChanged:
		if e, ok := r.calls[msg.call.ID]; ok {
			e.call = msg.call
		}
	case callGone:
		r.release(ctx, msg.callID)
	case entityAdopted, entityUnknown, ownerSeen, ownerLost, callLost, admitReserved, admitFailed, routeCall, dueCall:
		r.receiveCluster(ctx, msg)
	case *actor.Terminated:
		if id, ok := r.byPID[msg.Who.Id]; ok {
			delete(r.byPID, msg.Who.Id)
			if e, ok := r.calls[id]; ok && e.pid != nil && e.pid.Id == msg.Who.Id {
				e.pid = nil
			}
		}
	case resetRequest:
		if msg.key == "" {
			for id := range r.calls {
				r.release(ctx, id)
			}
			r.own.forget()
		}
		ctx.Respond(resetReply{})
	}
}

// answerUnknown answers a request for a call that does not exist. A room that points at it
// (e.g. after a crash between the room's join and the call's first save) is released.
func (r *callRegistry) answerUnknown(ctx actor.Context, req callRequest, sender *actor.PID) {
	if req.from != "" {
		ctx.Send(r.deps.rooms, roomRequest{roomID: req.from, ev: evLeaveCall{callID: req.callID}, callback: true})
	}
	if sender != nil {
		ctx.Send(sender, callReply{})
	}
}

// admissible refuses calls that could never work: with oneself, or with no host side (a
// call is mixed into a host's stream; two viewers have none, and no room would get its
// pushes).
func admissible(req admitRequest) *Error {
	switch {
	case req.inviter.UID == req.invitee.UID:
		return Errorf(CodeBadState, "不能与自己连麦")
	case req.inviter.RoomID == "" && req.invitee.RoomID == "":
		return Errorf(CodeBadState, "连麦双方至少要有一位正在直播的主播")
	}
	return nil
}

func (r *callRegistry) forward(ctx actor.Context, id string, e *callEntry) {
	pid := e.pid
	if pid == nil {
		pid = r.spawn(ctx, id, e, nil)
	}
	ctx.Forward(pid)
}

// spawn starts a call actor: for an admission (admit != nil) it starts empty and builds the
// call; otherwise it resumes from the snapshot.
func (r *callRegistry) spawn(ctx actor.Context, id string, e *callEntry, admit *admitRequest) *actor.PID {
	snapshot, resume, fence := e.call, admit == nil, e.fence
	props := actor.PropsFromProducer(func() actor.Actor { return newCallActor(r.deps, snapshot, resume, fence) },
		actor.WithDispatcher(r.deps.dispatcher))
	e.pid = ctx.Spawn(props)
	r.byPID[e.pid.Id] = id
	return e.pid
}

// release forgets a call; its actor freed its reservations before it said it is gone.
func (r *callRegistry) release(ctx actor.Context, id string) {
	e, ok := r.calls[id]
	if !ok {
		return
	}
	delete(r.calls, id)
	if e.pid != nil {
		delete(r.byPID, e.pid.Id)
		ctx.Poison(e.pid)
	}
}

func newCallID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "call-" + hex.EncodeToString(b[:])
}
