package actors

import (
	"context"
	"errors"
)

// A comment or a like changes nothing of its room: it is one push to the room's topic,
// allowed while the room is live and the user known. In a cluster whose feed can check the
// room where it numbers the push (a LivePublisher: the Redis push script reads the room's
// snapshot in the topic's own slot), the node that receives one serves it itself instead
// of forwarding it to the room's owner. A forward is an HTTP round trip between nodes and an
// ask of the owner's room actor — most of what a comment cost in a cluster
// (docs/benchmarks.md, "Cost per request").
//
// It stays linearizable with the room's life: the feed numbers the push only if the room's
// durable snapshot, at that instant, says the room is live — the same snapshot the owner
// writes, fenced, before it acknowledges /live/leave and pushes the end (8). So a comment
// acknowledged here was numbered before the end push, and one that arrives after the end
// is answered 2003 as the owner would. An unknown user goes to the owner as before (which
// of 2002 and 2003 wins depends on the room, which only the owner reads).

// LivePublisher is a Publisher that can number a push only while the room of its topic (the
// topic is the room id) exists and has not ended, and tell the caller the outcome.
type LivePublisher interface {
	// PublishIfLive queues p and waits until it is numbered (nil), refused because the room
	// does not exist or has ended (ErrRoomGone), refused because this node's membership
	// lapsed (ErrFenced), or ctx ends.
	PublishIfLive(ctx context.Context, p Push) error
}

// ErrRoomGone is a LivePublisher's answer for a room that does not exist or has ended.
var ErrRoomGone = errors.New("room does not exist or has ended")

// pushHere serves a comment or like (ev, the user left to fill in) on this node. It
// reports false when the request must take the usual way, through the room's owner. A single
// node's feed (push.Memory) is no LivePublisher: there every comment goes to its room.
func (e *Engine) pushHere(ctx context.Context, roomID, uid string, ev userEvent) (bool, error) {
	lp, ok := e.publisher.(LivePublisher)
	if !ok || !e.own.member() {
		return false, nil
	}
	user, found := e.known.get(uid)
	if !found {
		reply, err := e.askUser(ctx, getUserRequest{id: uid})
		if err != nil {
			return true, err
		}
		if !reply.found {
			return false, nil
		}
		user = reply.user
	}
	// The step of a live stand-in builds the push exactly as the owner's room would; the
	// feed checks the real room when it numbers it.
	now := e.clock.Now()
	st := stepRoom(e.roomCfg, Room{ID: roomID}, true, noAudience, ev.withUser(user, true), now)
	if st.err != nil || len(st.pushes) != 1 {
		return false, nil
	}
	p := st.pushes[0]
	push := EncodePush(roomID, p.tag, p.importance, p.typ, p.data, now)
	push.IfLive = true
	// Bounded like an ask: with Redis away the client gets 503 (outcome unknown) in time.
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	switch err := lp.PublishIfLive(ctx, push); {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrRoomGone):
		return true, ErrNoSuchRoom(roomID)
	case errors.Is(err, ErrFenced):
		return true, errNotMember()
	default:
		return true, Errorf(CodeUnavailable, "推送未确认，请稍后重试")
	}
}

// noAudience: comments and likes do not look at the audience.
func noAudience(string) bool { return false }
