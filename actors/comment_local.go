package actors

import "github.com/asynkron/protoactor-go/actor"

// A comment or a like changes nothing of its room: it is one push to the room's topic, and
// whether it is allowed depends only on the room being live and the user being known. So in
// a cluster the node that receives one serves it itself, from its read model (kept current
// from the room-change feed), instead of forwarding it to the room's owner: the topic's seq
// is assigned by the shared feed, which orders it among the owner's pushes. A forward is an
// HTTP round trip between nodes and an ask of the owner's room actor — most of what a
// comment cost in a cluster (docs/benchmarks.md, "Cost per request").
//
// The read model may lag the owner by the feed's delay (milliseconds). A room it does not
// know yet (created a moment ago elsewhere) is forwarded as before. A room that ended a
// moment ago may still look live here: the comment is then pushed after the room's end
// push, as it would be had it reached the owner a moment earlier, and the feed refuses it
// if the topic has been deleted meanwhile (Push.Unowned), so it never starts a new life of
// a dead topic.

// servesLocally reports whether ev is answered by any node from its read model.
func servesLocally(ev any) bool {
	switch ev.(type) {
	case evComment, evLike:
		return true
	}
	return false
}

// serveLocally answers req, a comment or like for a room this node does not own, from the
// read-model entry e. It returns false when the request must go to the owner instead.
func (r *roomRegistry) serveLocally(ctx actor.Context, req roomRequest, sender *actor.PID, e *roomEntry) bool {
	if req.remote || e == nil || !e.exists || !servesLocally(req.ev) || !r.cl.member() {
		return false
	}
	now := r.deps.clock.Now()
	st := stepRoom(r.deps.cfg, e.room, e.exists, noAudience, req.ev, now)
	for _, p := range st.pushes {
		topic := p.topic
		if topic == "" {
			topic = e.room.ID
		}
		push := EncodePush(topic, p.tag, p.importance, p.typ, p.data, now)
		push.Unowned = true
		r.deps.publisher.Publish(push)
	}
	if sender != nil {
		ctx.Send(sender, roomReply{room: e.room, err: st.err})
	}
	return true
}

// noAudience: comments and likes do not look at the audience.
func noAudience(string) bool { return false }
