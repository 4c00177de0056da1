package actors

import (
	"github.com/asynkron/protoactor-go/actor"
)

// The room registry's part in a cluster: rooms this node owns run here as in single-node
// mode; every other room is a read-model entry (kept current from the cluster feed) and
// messages for it are resolved to its owner (cluster_routing.go).

type (
	// roomLost: a write of the room was refused (another node owns it now).
	roomLost struct {
		roomID string
		fence  Fence
	}
	// feedRoom and feedRoomGone: a room's change on the cluster feed (read model).
	feedRoom     struct{ room Room }
	feedRoomGone struct{ roomID string }
	// feedResync: the feed lost entries; these are every room the store holds now.
	feedResync struct{ rooms []Room }
	// dueRoom: the sweep found the room's deadline due.
	dueRoom struct{ roomID string }
	// createClaimed: a new room's id is claimed by this node (the ownership seam's
	// claimNew); create it.
	createClaimed struct {
		req    createRoomRequest
		id     string
		fence  Fence
		sender *actor.PID
	}
)

func (r *roomRegistry) receiveCluster(ctx actor.Context, msg any) {
	switch m := msg.(type) {
	case entityAdopted:
		r.adopt(ctx, m)
	case entityUnknown:
		req, _ := m.req.(roomRequest) // zero for a sweep's wake: nobody to answer
		r.answerUnknown(ctx, req, m.sender)
	case roomLost:
		if e, ok := r.entries[m.roomID]; ok && e.owned && e.fence == m.fence {
			r.disown(ctx, e)
		}
	case ownerSeen:
		if e, ok := r.entries[m.id]; ok && !e.owned {
			o := m.owner
			e.remote = &o
		}
	case feedRoom:
		r.feedChanged(m.room)
	case feedRoomGone:
		if e, ok := r.entries[m.roomID]; ok && !e.owned {
			delete(r.entries, m.roomID)
			r.countLive(e.view, nil)
			r.invalidate()
		}
	case ownerLost:
		if e, ok := r.entries[m.id]; ok && e.remote != nil && e.remote.Node == m.owner.Node && e.remote.Epoch == m.owner.Epoch {
			e.remote = nil
		}
	case feedResync:
		r.resync(m.rooms)
	case dueRoom:
		e, ok := r.entries[m.roomID]
		switch {
		case ok && e.owned && e.pid == nil && !e.stopping:
			r.spawn(ctx, m.roomID, e) // activation fires what is overdue
		case !ok || !e.owned:
			r.resolve(ctx, roomRequest{roomID: m.roomID}, nil, e)
		}
	case createClaimed:
		if _, taken := r.entries[m.id]; taken {
			// The feed (or another creation) took this id meanwhile: pick another.
			r.create(ctx, m.req, m.sender)
			return
		}
		r.createOwned(ctx, m.req, m.id, m.fence, m.sender)
	}
}

// resolve hands a request for a room this node does not act for to the ownership seam: on
// a single node the room does not exist; in a cluster the seam sends req to the room's
// owner, or makes this node the owner. A nil ev is a sweep's wake: nothing to deliver, only
// to activate the room if its owner is gone.
func (r *roomRegistry) resolve(ctx actor.Context, req roomRequest, sender *actor.PID, e *roomEntry) {
	if !r.own.member() {
		if sender != nil {
			ctx.Send(sender, roomReply{err: errNotMember()})
		}
		return
	}
	res := resolution{kind: KindRoom, id: req.roomID, sender: sender, registry: ctx.Self(),
		remote: req.remote || req.ev == nil, known: e != nil && e.exists}
	if req.ev != nil {
		res.req = req
	}
	if e != nil && e.remote != nil {
		o := *e.remote
		res.hint = &o
	}
	r.own.resolve(ctx.ActorSystem().Root, res)
}

// adopt runs a room this node has just claimed. A copy owned under another fence is
// stopped first: the claim is the newest word on who owns the room.
func (r *roomRegistry) adopt(ctx actor.Context, m entityAdopted) {
	e, ok := r.entries[m.room.ID]
	if !ok {
		e = &roomEntry{}
		r.entries[m.room.ID] = e
	}
	if !e.owned || e.fence != m.fence {
		if e.owned {
			r.disown(ctx, e)
		}
		before := e.view
		e.owned, e.fence, e.remote = true, m.fence, nil
		e.room, e.exists = m.room, true
		e.view = r.render(m.room)
		r.countLive(before, e.view)
		r.invalidate()
	}
	if req, ok := m.req.(roomRequest); ok {
		r.route(ctx, req, m.sender)
		return
	}
	if e.pid == nil && !e.stopping {
		r.spawn(ctx, m.room.ID, e)
	}
}

// disown stops acting for a room: its actor stops, its entry stays as a read-model copy.
func (r *roomRegistry) disown(ctx actor.Context, e *roomEntry) {
	e.owned, e.fence = false, Fence{}
	if e.wake != nil {
		e.wake()
		e.wake = nil
	}
	if e.pid != nil {
		delete(r.byPID, e.pid.Id)
		ctx.Poison(e.pid)
		e.pid = nil
	}
	e.stopping = false
	for _, p := range e.pending {
		if p.req.ev != nil && p.sender != nil {
			ctx.Send(p.sender, roomReply{err: Errorf(CodeUnavailable, "房间已迁移，请重试")})
		}
	}
	e.pending = nil
}

// feedChanged applies a room's change from the cluster feed to the read model. The owner's
// own actor is the newer word for rooms this node owns.
func (r *roomRegistry) feedChanged(room Room) {
	e, ok := r.entries[room.ID]
	if ok && e.owned {
		return
	}
	if !ok {
		e = &roomEntry{}
		r.entries[room.ID] = e
	}
	before := e.view
	e.room, e.exists = room, true
	e.view = r.render(room)
	r.countLive(before, e.view)
	r.invalidate()
}

// resync replaces the read model with the store's rooms after the feed lost entries: a
// change it missed is applied, a room deleted meanwhile is forgotten.
func (r *roomRegistry) resync(rooms []Room) {
	present := make(map[string]bool, len(rooms))
	for _, room := range rooms {
		present[room.ID] = true
		r.feedChanged(room)
	}
	for id, e := range r.entries {
		if !e.owned && !present[id] {
			delete(r.entries, id)
			r.countLive(e.view, nil)
			r.invalidate()
		}
	}
}

// ownedRooms counts the rooms this node acts for.
func (r *roomRegistry) ownedRooms() int {
	n := 0
	for _, e := range r.entries {
		if e.owned {
			n++
		}
	}
	return n
}
