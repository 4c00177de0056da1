package actors

import (
	"context"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
)

// How the call registry finds a call and admits one, through the ownership seam
// (owners.go): admission reserves both rooms and both users in one atomic step (in memory on
// a single node, Placement.Reserve in a cluster), "which call is this room in" is read from
// those reservations, and a call this node does not act for is resolved to its owner
// (cluster_routing.go; on a single node it does not exist). The seam's calls that may wait
// on the network run off the mailbox, in goroutines, and come back as messages.

type (
	// callLost: a write of the call was refused (another node owns it now).
	callLost struct {
		callID string
		fence  Fence
	}
	// admitReserved: both rooms and users are reserved for a new call this node owns.
	admitReserved struct {
		req    admitRequest
		id     string
		fence  Fence
		sender *actor.PID
	}
	// admitFailed: the admission of call id was refused before the call was made.
	admitFailed struct{ id string }
	// routeCall: the call a room is in was found; deliver req to it.
	routeCall struct {
		req    callRequest
		sender *actor.PID
	}
	// dueCall: the sweep found the call with a Start or Stop outstanding.
	dueCall struct{ callID string }
)

func (r *callRegistry) receiveCluster(ctx actor.Context, msg any) {
	switch m := msg.(type) {
	case entityAdopted:
		e, ok := r.calls[m.call.ID]
		if ok && e.fence != m.fence {
			r.drop(ctx, m.call.ID, e)
			ok = false
		}
		if !ok {
			e = &callEntry{call: m.call, fence: m.fence}
			r.calls[m.call.ID] = e
		}
		if req, ok := m.req.(callRequest); ok {
			r.deliver(ctx, m.call.ID, e, req, m.sender)
		} else if e.pid == nil {
			r.spawn(ctx, m.call.ID, e, nil)
		}
	case entityUnknown:
		req, _ := m.req.(callRequest) // zero for a sweep's wake: nobody to answer
		r.answerUnknown(ctx, req, m.sender)
	case ownerSeen, ownerLost:
		// Calls keep no hint of their owner: their requests are few, each asks the placement.
	case callLost:
		if e, ok := r.calls[m.callID]; ok && e.fence == m.fence {
			r.drop(ctx, m.callID, e)
		}
	case admitReserved:
		e := &callEntry{call: Call{ID: m.id, Inviter: m.req.inviter, Invitee: m.req.invitee}, fence: m.fence}
		r.calls[m.id] = e
		pid := r.spawn(ctx, m.id, e, &m.req)
		ctx.RequestWithCustomSender(pid, m.req, m.sender)
		for _, h := range r.admitting[m.id] {
			ctx.RequestWithCustomSender(pid, h.req, h.sender) // behind the admission
		}
		delete(r.admitting, m.id)
	case admitFailed:
		for _, h := range r.admitting[m.id] {
			r.answerUnknown(ctx, h.req, h.sender)
		}
		delete(r.admitting, m.id)
	case routeCall:
		if held, ok := r.admitting[m.req.callID]; ok {
			// Found from its reservations before the admission made it: it waits for it.
			r.admitting[m.req.callID] = append(held, m)
			return
		}
		if e, ok := r.calls[m.req.callID]; ok {
			r.deliver(ctx, m.req.callID, e, m.req, m.sender)
			return
		}
		r.resolve(ctx, m.req, m.sender)
	case dueCall:
		if e, ok := r.calls[m.callID]; ok {
			if e.pid == nil {
				r.spawn(ctx, m.callID, e, nil)
			}
			return
		}
		r.resolve(ctx, callRequest{callID: m.callID}, nil)
	}
}

// deliver hands req to the call's actor (spawning it from its snapshot if needed).
func (r *callRegistry) deliver(ctx actor.Context, id string, e *callEntry, req callRequest, sender *actor.PID) {
	pid := e.pid
	if pid == nil {
		pid = r.spawn(ctx, id, e, nil)
	}
	ctx.RequestWithCustomSender(pid, req, sender)
}

// drop forgets a call this node no longer owns, without touching its reservations or
// rooms: they are the new owner's.
func (r *callRegistry) drop(ctx actor.Context, id string, e *callEntry) {
	delete(r.calls, id)
	if e.pid != nil {
		delete(r.byPID, e.pid.Id)
		ctx.Poison(e.pid)
	}
}

// resolve sends req to the call's owner, or makes this node the owner. A nil ev is a
// sweep's wake: only activate the call (re-issuing its Start or Stop) if its owner is gone.
func (r *callRegistry) resolve(ctx actor.Context, req callRequest, sender *actor.PID) {
	if !r.own.member() {
		if sender != nil {
			ctx.Send(sender, callReply{err: errNotMember()})
		}
		return
	}
	res := resolution{kind: KindCall, id: req.callID, sender: sender, registry: ctx.Self(),
		remote: req.remote || req.ev == nil}
	if req.ev != nil {
		res.req = req
	}
	r.own.resolve(ctx.ActorSystem().Root, res)
}

// callOf finds the call a room is reserved for and routes the event to it.
func (r *callRegistry) callOf(ctx actor.Context, msg roomCallRequest, sender *actor.PID) {
	root, self, own, timeout := ctx.ActorSystem().Root, ctx.Self(), r.own, r.deps.storeTimeout
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		id, err := own.callOf(c, msg.roomID)
		cancel()
		switch {
		case err != nil:
			root.Send(sender, callReply{err: ErrStoreUnavailable(err)})
		case id == "":
			root.Send(sender, callReply{})
		default:
			root.Send(self, routeCall{req: callRequest{callID: id, ev: msg.ev, remote: msg.remote}, sender: sender})
		}
	}()
}

// busyOf answers whether a room is reserved for a call (or one being admitted).
func (r *callRegistry) busyOf(ctx actor.Context, msg busyRequest, sender *actor.PID) {
	root, own, timeout, log := ctx.ActorSystem().Root, r.own, r.deps.storeTimeout, r.deps.log
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		id, err := own.callOf(c, msg.roomID)
		cancel()
		if err != nil {
			log.Warn("call reservation not read", "room", msg.roomID, "err", err)
		}
		root.Send(sender, busyReply{busy: id != ""})
	}()
}

// admit reserves the call's rooms and users (on every node's behalf in a cluster), then
// claims the new call: of concurrent accepts of one room exactly one wins, wherever they
// were sent. A user is in one call at most: a viewer already in a call would otherwise get
// a second co-stream room and be on camera in two calls.
func (r *callRegistry) admit(ctx actor.Context, req admitRequest) {
	if err := admissible(req); err != nil {
		ctx.Respond(admitReply{err: err})
		return
	}
	root, self, sender, own, timeout := ctx.ActorSystem().Root, ctx.Self(), ctx.Sender(), r.own, r.deps.storeTimeout
	id := newCallID()
	rooms, users := reservedBy(req)
	// From its reservation on, the call can be found from its rooms: what is routed to it
	// before it is made waits in admitting (a close racing the accept closes it after its
	// admission, as when the admission ran in the mailbox).
	r.admitting[id] = nil
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		refuse := func(err *Error) {
			root.Send(self, admitFailed{id: id})
			root.Send(sender, admitReply{err: err})
		}
		busy, err := own.reserve(c, id, rooms, users)
		switch {
		case err != nil:
			refuse(ErrStoreUnavailable(err))
			return
		case busy != "" && slices.Contains(rooms, busy):
			refuse(ErrInCall(busy))
			return
		case busy != "":
			refuse(Errorf(CodeInCall, "用户%s已经在连麦中", busy))
			return
		}
		o, err := own.claim(c, KindCall, id)
		if err != nil || !o.Mine {
			_ = own.unreserve(c, id, rooms, users)
			refuse(Errorf(CodeUnavailable, "连麦暂时不可用，请稍后重试"))
			return
		}
		root.Send(self, admitReserved{req: req, id: id, fence: fenceOf(KindCall, id, o), sender: sender})
	}()
}

// reservedBy lists what an admission reserves: the rooms that exist (a co-stream room is
// made, and reserved, during the admission) and both users.
func reservedBy(req admitRequest) (rooms, users []string) {
	for _, s := range []CallSide{req.inviter, req.invitee} {
		if s.RoomID != "" {
			rooms = append(rooms, s.RoomID)
		}
		users = append(users, s.UID)
	}
	return rooms, users
}

// ownedCalls counts the calls this node acts for.
func (r *callRegistry) ownedCalls() int { return len(r.calls) }
