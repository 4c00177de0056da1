package actors

import (
	"context"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// ownership is the one seam between the registries (and the call actor) and the cluster:
// who acts for a room or a call, how a request reaches that node, which calls hold which
// rooms and users, and the sweep of deadlines whose owner is gone. The registries hold one,
// never nil, and have no branch of their own for a cluster:
//
//   - oneNode (this file) is the single node, the one-node case: it owns every entity, with
//     a zero fence, and keeps the call reservations in memory.
//   - *clusterDeps (cluster_routing.go) asks the shared store (Placement) and forwards a
//     request to the owner on another node (Transport).
//
// resolve, claimNew and startSweep never block: what waits on the network runs in their own
// goroutines. claim, reserve, unreserve and callOf wait on the store in a cluster: the
// registries call them from goroutines, the call actor from its mailbox as it makes its
// other store writes. ownerOf is the Engine's (an admin request's goroutine).
type ownership interface {
	// member reports whether this node may act now (its membership lease holds).
	member() bool
	// ownsLoaded reports whether the rooms and calls in the store at start-up are this
	// node's. A cluster node claims each on demand; what it loads is only its read model.
	ownsLoaded() bool
	// resolve finds the owner of an entity this node does not act for and ends in one
	// message to res.registry (entityAdopted, entityUnknown) or an answer to res.sender.
	// It does not block.
	resolve(root *actor.RootContext, res resolution)
	// claimNew makes this node the owner of a new room id and sends createClaimed to
	// registry, or answers sender why not. It does not block.
	claimNew(root *actor.RootContext, registry *actor.PID, req createRoomRequest, id string, sender *actor.PID)
	// claim makes this node the owner of an entity (a new call).
	claim(ctx context.Context, kind, id string) (Owner, error)
	// reserve, unreserve and callOf are Placement's call reservations.
	reserve(ctx context.Context, callID string, rooms, users []string) (busy string, err error)
	unreserve(ctx context.Context, callID string, rooms, users []string) error
	callOf(ctx context.Context, roomID string) (string, error)
	// forget drops what this node keeps of the store outside it after the store was wiped.
	forget()
	// ownerOf names the node that acts for a room now.
	ownerOf(ctx context.Context, roomID string) (Owner, error)
	// startSweep starts what finds due deadlines whose owner is gone; the func stops it.
	startSweep(s sweepTargets) (stop func())
}

// sweepTargets is where a sweep sends what fell due.
type sweepTargets struct {
	root         *actor.RootContext
	rooms, calls *actor.PID
	clock        Clock
	leaving      func() bool
}

// oneNode is a single node: every room and call is its own, under the zero fence (writes
// are not fenced), and the call reservations live in its memory, where the call registry
// reads and writes them as a cluster node does in the shared store.
type oneNode struct {
	mu       sync.Mutex
	reserved map[string]string // "room:"+id, "user:"+uid → the call id
}

// newOneNode reserves what the calls in the store hold.
func newOneNode(calls []Call) *oneNode {
	o := &oneNode{reserved: map[string]string{}}
	for _, c := range calls {
		rooms, users := reservedBy(admitRequest{inviter: c.Inviter, invitee: c.Invitee})
		_, _ = o.reserve(context.Background(), c.ID, rooms, users)
	}
	return o
}

func (*oneNode) member() bool     { return true }
func (*oneNode) ownsLoaded() bool { return true }

// resolve: a single node holds every entity that exists, so one it does not hold is unknown.
func (*oneNode) resolve(root *actor.RootContext, res resolution) {
	root.Send(res.registry, entityUnknown{id: res.id, req: res.req, sender: res.sender})
}

func (*oneNode) claimNew(root *actor.RootContext, registry *actor.PID, req createRoomRequest, id string, sender *actor.PID) {
	root.Send(registry, createClaimed{req: req, id: id, sender: sender})
}

func (*oneNode) claim(context.Context, string, string) (Owner, error) { return Owner{Mine: true}, nil }

// reserve reserves rooms and users for callID, all or none. The busy one named is the first
// room held by another call, else the first user: rooms are checked first, as a refused
// accept names the room.
func (o *oneNode) reserve(_ context.Context, callID string, rooms, users []string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range rooms {
		if held, ok := o.reserved["room:"+r]; ok && held != callID {
			return r, nil
		}
	}
	for _, u := range users {
		if held, ok := o.reserved["user:"+u]; ok && held != callID {
			return u, nil
		}
	}
	for _, r := range rooms {
		o.reserved["room:"+r] = callID
	}
	for _, u := range users {
		o.reserved["user:"+u] = callID
	}
	return "", nil
}

func (o *oneNode) unreserve(_ context.Context, callID string, rooms, users []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range rooms {
		if o.reserved["room:"+k] == callID {
			delete(o.reserved, "room:"+k)
		}
	}
	for _, k := range users {
		if o.reserved["user:"+k] == callID {
			delete(o.reserved, "user:"+k)
		}
	}
	return nil
}

func (o *oneNode) callOf(_ context.Context, roomID string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reserved["room:"+roomID], nil
}

func (o *oneNode) forget() {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.reserved)
}

func (*oneNode) ownerOf(context.Context, string) (Owner, error) {
	return Owner{}, Errorf(CodeBadState, "not a cluster")
}

// startSweep: a single node's own timers meet every deadline; there is no other owner.
func (*oneNode) startSweep(sweepTargets) func() { return func() {} }
