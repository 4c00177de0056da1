package actors

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// This file is how a message finds the node that owns its room or call in a cluster. The
// registries call it for every entity they do not own; it runs off their mailboxes, in its
// own goroutine, and ends in exactly one of: the message delivered to the owner on another
// node (and its answer sent to the asker), this node becoming the owner (the registry
// adopts the entity and delivers the message itself), or an answer saying why neither
// happened (unknown entity, 503 when no owner could be reached in time).

// Transport carries a request to another node and brings back its answer.
type Transport interface {
	Send(ctx context.Context, addr string, req PeerRequest) (PeerReply, error)
}

// ClusterConfig turns an Engine into one node of a cluster (nil: single node).
type ClusterConfig struct {
	Placement Placement
	Lease     LeaseValid
	Transport Transport
	// SweepInterval is how often this node looks for due deadlines whose owner is gone
	// (default 500 ms).
	SweepInterval time.Duration
	// RetryInterval paces the attempts to reach an owner that does not answer (default 100 ms).
	RetryInterval time.Duration
}

// clusterDeps is what the registries and actors of a cluster node share.
type clusterDeps struct {
	placement    Placement
	lease        LeaseValid
	transport    Transport
	log          *slog.Logger
	storeTimeout time.Duration
	askTimeout   time.Duration
	retry        time.Duration
	watch        time.Duration // how often a forwarded request checks its owner is alive
	sweep        time.Duration // how often the due set is read
}

func newClusterDeps(cfg EngineConfig) *clusterDeps {
	c := &clusterDeps{placement: cfg.Cluster.Placement, lease: cfg.Cluster.Lease, transport: cfg.Cluster.Transport,
		log: cfg.Logger, storeTimeout: cfg.StoreTimeout, askTimeout: cfg.AskTimeout, retry: cfg.Cluster.RetryInterval,
		watch: 250 * time.Millisecond, sweep: cfg.Cluster.SweepInterval}
	if c.retry <= 0 {
		c.retry = 100 * time.Millisecond
	}
	if c.sweep <= 0 {
		c.sweep = 500 * time.Millisecond
	}
	return c
}

// clusterDeps is the cluster's side of the ownership seam (owners.go).
var _ ownership = (*clusterDeps)(nil)

func (c *clusterDeps) member() bool   { return c.lease == nil || c.lease() }
func (*clusterDeps) ownsLoaded() bool { return false }

func (c *clusterDeps) claim(ctx context.Context, kind, id string) (Owner, error) {
	return c.placement.Claim(ctx, kind, id)
}

func (c *clusterDeps) reserve(ctx context.Context, callID string, rooms, users []string) (string, error) {
	return c.placement.Reserve(ctx, callID, rooms, users)
}

func (c *clusterDeps) unreserve(ctx context.Context, callID string, rooms, users []string) error {
	return c.placement.Unreserve(ctx, callID, rooms, users)
}

func (c *clusterDeps) callOf(ctx context.Context, roomID string) (string, error) {
	return c.placement.CallOf(ctx, roomID)
}

// forget: the wipe of the shared store took the reservations with it.
func (*clusterDeps) forget() {}

// claimNew claims a new room's id before the room is created here.
func (c *clusterDeps) claimNew(root *actor.RootContext, registry *actor.PID, req createRoomRequest, id string, sender *actor.PID) {
	go func() {
		o, err := c.claimBounded(KindRoom, id)
		switch {
		case err != nil:
			c.log.Warn("room id not claimed", "room", id, "err", err)
			root.Send(sender, roomReply{err: ErrStoreUnavailable(err)})
		case !o.Mine:
			root.RequestWithCustomSender(registry, req, sender) // taken by another node: try another id
		default:
			root.Send(registry, createClaimed{req: req, id: id, fence: fenceOf(KindRoom, id, o), sender: sender})
		}
	}()
}

// errNotMember is the answer of a node whose membership lease has lapsed: it must not act
// for any entity until it has rejoined (it exits and its supervisor restarts it).
func errNotMember() *Error { return Errorf(CodeUnavailable, "节点不在集群中，请稍后重试") }

// movedReply answers a peer's request for an entity this node does not own.
type movedReply struct{ owner *Owner }

// entityRequest is a request for one room or call, the message a resolution carries to the
// node that owns its entity: roomRequest, callRequest or roomCallRequest (a closed set; the
// unexported method seals it). peer splits it into the wire header and the event.
type entityRequest interface {
	peer() (PeerRequest, any)
}

// resolution is one request on its way to the owner of its entity. It is plain data: what
// happens on the way comes back to the registry that started it as messages (entityAdopted,
// entityUnknown, ownerSeen, ownerLost), handled in that registry's mailbox.
type resolution struct {
	kind, id string
	req      entityRequest // nil for a sweep's wake (activate the entity if its owner is gone)
	sender   *actor.PID    // who waits for the answer (nil: nobody)
	registry *actor.PID    // the registry that started it: told what became of it
	remote   bool          // came from a peer: never forwarded again
	known    bool          // the entity is known to exist (skip the existence check)
	hint     *Owner        // the owner last seen, tried first
}

// What a resolution tells the registry that started it.
type (
	// entityAdopted: this node claimed the entity and read its snapshot (room or call, by the
	// fence's kind); the registry runs it, then delivers req (if any) and answers sender.
	entityAdopted struct {
		fence  Fence
		room   Room
		call   Call
		req    entityRequest
		sender *actor.PID
	}
	// entityUnknown: the entity does not exist (any more); the registry answers req as it
	// answers a request for an id it never had.
	entityUnknown struct {
		id     string
		req    entityRequest
		sender *actor.PID
	}
	// ownerSeen: the node that answered for the entity, to try first next time.
	ownerSeen struct {
		id    string
		owner Owner
	}
	// ownerLost: the node last seen as the owner did not answer (lapsed, or gone): the next
	// request claims the entity instead of trying it.
	ownerLost struct {
		id    string
		owner Owner
	}
)

// resolve runs res to its end in its own goroutine.
func (c *clusterDeps) resolve(root *actor.RootContext, res resolution) { go c.run(root, res) }

// run runs res to its end. It blocks.
func (c *clusterDeps) run(root *actor.RootContext, res resolution) {
	deadline := time.Now().Add(c.askTimeout)
	reply := func(msg any) {
		if res.sender != nil && msg != nil {
			root.Send(res.sender, msg)
		}
	}
	unknown := func() {
		root.Send(res.registry, entityUnknown{id: res.id, req: res.req, sender: res.sender})
	}
	unavailable := func(cause error) {
		if cause != nil {
			c.log.Warn("no owner reachable", "kind", res.kind, "id", res.id, "err", cause)
		}
		if res.kind == KindRoom {
			reply(roomReply{err: Errorf(CodeUnavailable, "房间暂时不可用，请稍后重试")})
		} else {
			reply(callReply{err: Errorf(CodeUnavailable, "连麦暂时不可用，请稍后重试")})
		}
	}
	owner := res.hint
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if time.Now().Add(c.retry).After(deadline) {
				unavailable(lastErr)
				return
			}
			time.Sleep(c.retry)
		}
		if !c.member() {
			reply(errReplyOf(res.kind, errNotMember()))
			return
		}
		if owner == nil {
			if !res.known {
				_, exists, err := c.load(res.kind, res.id)
				if err != nil {
					lastErr = err
					continue
				}
				if !exists {
					unknown()
					return
				}
				res.known = true
			}
			o, err := c.claimBounded(res.kind, res.id)
			if err != nil {
				lastErr = err
				if errors.Is(err, ErrFenced) {
					reply(errReplyOf(res.kind, errNotMember()))
					return
				}
				continue
			}
			if o.Mine {
				if c.adoptClaimed(root, res, o) {
					return
				}
				continue
			}
			owner = &o
		}
		if res.remote || res.req == nil {
			// A peer asked us, or a sweep found a live owner: its owner answers for it.
			if res.remote {
				reply(movedReply{owner: owner})
			}
			return
		}
		rep, err := c.sendWatched(res.kind, res.id, *owner, res.req, deadline)
		switch {
		case err != nil && errors.Is(err, ErrPeerUnreachable):
			// Not delivered (a node that is gone): claim it or find the new owner.
			lastErr, owner = err, nil
		case err != nil:
			// Delivered, or maybe: the owner may have applied it (and frozen or died before
			// answering). Running it again here could apply it twice, or answer that a room
			// this very request ended does not exist; the client is told the outcome is
			// unknown (503) and its retry finds the next owner.
			root.Send(res.registry, ownerLost{id: res.id, owner: *owner})
			unavailable(err)
			return
		case rep.Status == PeerOK:
			root.Send(res.registry, ownerSeen{id: res.id, owner: *owner})
			reply(answerOf(res.kind, rep))
			return
		case rep.Status == PeerMoved && rep.Owner != nil && rep.Owner.Node != owner.Node && !rep.Owner.Mine:
			owner = rep.Owner
		default:
			owner = nil
		}
	}
}

// adoptClaimed loads the entity this node now owns and hands it to the registry. It
// reports false when the snapshot could not be read (the caller tries again).
func (c *clusterDeps) adoptClaimed(root *actor.RootContext, res resolution, o Owner) bool {
	snap, exists, err := c.load(res.kind, res.id)
	if err != nil {
		return false
	}
	if !exists {
		// Gone between the check and the claim: give the claim back.
		ctx, cancel := context.WithTimeout(context.Background(), c.storeTimeout)
		_ = c.placement.Release(ctx, res.kind, res.id, o.Epoch)
		cancel()
		root.Send(res.registry, entityUnknown{id: res.id, req: res.req, sender: res.sender})
		return true
	}
	snap.fence = Fence{Kind: res.kind, ID: res.id, Node: o.Node, Epoch: o.Epoch}
	snap.req, snap.sender = res.req, res.sender
	root.Send(res.registry, snap)
	return true
}

// load reads an entity's snapshot from the shared store, bounded by the store timeout;
// exists is false when it does not exist (any more).
func (c *clusterDeps) load(kind, id string) (snap entityAdopted, exists bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.storeTimeout)
	defer cancel()
	if kind == KindRoom {
		snap.room, err = c.placement.LoadRoom(ctx, id)
	} else {
		snap.call, err = c.placement.LoadCall(ctx, id)
	}
	if errors.Is(err, ErrNotFound) {
		return snap, false, nil
	}
	return snap, err == nil, err
}

func (c *clusterDeps) claimBounded(kind, id string) (Owner, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.storeTimeout)
	defer cancel()
	return c.placement.Claim(ctx, kind, id)
}

// errOwnerLost ends a forwarded request whose owner stopped being the live owner while it
// waited for the answer (a frozen or dead node): the entity is claimed again.
var errOwnerLost = errors.New("the owner lost its membership while the request waited")

// sendWatched sends msg to owner and, while the answer is awaited, checks every watch
// interval that owner is still the entity's live owner. A node that froze holding the
// entity never answers; without the watch every request for the entity would wait out its
// whole deadline although another node may act for it once the frozen node's membership
// lapsed. A frozen node that resumes applies nothing (its lease is gone, its writes are
// fenced), so the request abandoned here is not applied twice; a request the node applied
// just before freezing, whose answer was lost, may be (at most once more, as on a retry).
func (c *clusterDeps) sendWatched(kind, id string, owner Owner, msg entityRequest, deadline time.Time) (PeerReply, error) {
	type result struct {
		rep PeerReply
		err error
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	done := make(chan result, 1)
	go func() {
		rep, err := c.sendCtx(ctx, owner.Addr, msg)
		done <- result{rep, err}
	}()
	tick := time.NewTicker(c.watch)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			return r.rep, r.err
		case <-tick.C:
			lctx, lcancel := context.WithTimeout(ctx, c.storeTimeout)
			o, live, err := c.placement.Lookup(lctx, kind, id)
			lcancel()
			if err == nil && (!live || o.Node != owner.Node || o.Epoch != owner.Epoch) {
				cancel()
				return PeerReply{}, errOwnerLost
			}
		}
	}
}

func (c *clusterDeps) sendCtx(ctx context.Context, addr string, msg entityRequest) (PeerReply, error) {
	req, err := peerRequestOf(msg)
	if err != nil {
		return PeerReply{}, err
	}
	return c.transport.Send(ctx, addr, req)
}

func errReplyOf(kind string, err *Error) any {
	if kind == KindRoom {
		return roomReply{err: err}
	}
	return callReply{err: err}
}

// fencedContext bounds one store call of an owned entity and carries its fence.
func fencedContext(f Fence, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return WithFence(ctx, f), cancel
}
