package actors

import (
	"context"
	"slices"
	"strings"
)

// Read-only views for the operator console (http/console): they change nothing and never
// start a room or call actor.

type (
	// roomsRequest asks the room registry for every live room's latest snapshot.
	roomsRequest struct{}
	roomsReply   struct{ rooms []Room }
	// callsRequest asks the call registry for the snapshot of every call it holds.
	callsRequest struct{}
	callsReply   struct{ calls []Call }
)

// Rooms returns the snapshot of every room that exists for clients (any status but ended),
// oldest first. In a cluster that is this node's read model: every room of the cluster.
func (e *Engine) Rooms(ctx context.Context) ([]Room, error) {
	res, err := e.ask(ctx, e.rooms, roomsRequest{})
	if err != nil {
		return nil, err
	}
	reply, _ := res.(roomsReply)
	return reply.rooms, nil
}

// Calls returns the snapshot of every call this engine holds (in a cluster: the calls this
// node owns), oldest first.
func (e *Engine) Calls(ctx context.Context) ([]Call, error) {
	res, err := e.ask(ctx, e.calls, callsRequest{})
	if err != nil {
		return nil, err
	}
	reply, _ := res.(callsReply)
	return reply.calls, nil
}

// snapshots copies the live rooms (the registry's own slices must not escape).
func (r *roomRegistry) snapshots() []Room {
	live := r.live()
	out := make([]Room, 0, len(live))
	for _, e := range live {
		room := e.room
		room.CallHostRooms = slices.Clone(room.CallHostRooms)
		out = append(out, room)
	}
	return out
}

// snapshots copies the calls, oldest first.
func (r *callRegistry) snapshots() []Call {
	out := make([]Call, 0, len(r.calls))
	for _, e := range r.calls {
		c := e.call
		c.Legs = slices.Clone(c.Legs)
		for i := range c.Legs {
			c.Legs[i].Streams = slices.Clone(c.Legs[i].Streams)
		}
		c.Results = slices.Clone(c.Results)
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y Call) int {
		if c := x.CreateTime.Compare(y.CreateTime); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return out
}
