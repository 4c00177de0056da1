package actors

import (
	"context"
	"errors"
	"time"
)

// This file declares what the domain needs from a cluster (cluster.enabled): ownership of
// rooms and calls decided by the shared store, fenced writes, deadlines every node can see,
// and call admission across nodes. persistence/redis implements it; single-node mode uses
// none of it.

// Entity kinds that have an owner in a cluster.
const (
	KindRoom = "room"
	KindCall = "call"
)

// Fence is the ownership token of one entity: the node that owns it, the incarnation of that
// node's membership, and the entity's epoch, which grows by one with every change of owner.
// Every durable write and every push of an owned entity carries it; the store refuses a
// write whose fence is no longer current (ErrFenced).
type Fence struct {
	Kind  string `json:"kind"`
	ID    string `json:"id"`
	Node  string `json:"node"`
	Epoch int64  `json:"epoch"`
}

// fenceOf is the fence of an entity o owns: zero for a single node's (epoch 0).
func fenceOf(kind, id string, o Owner) Fence {
	if o.Epoch == 0 {
		return Fence{}
	}
	return Fence{Kind: kind, ID: id, Node: o.Node, Epoch: o.Epoch}
}

// IsZero reports whether f is the absence of a fence (single-node mode, or a push that
// belongs to no entity).
func (f Fence) IsZero() bool { return f.Epoch == 0 }

// ErrFenced is returned by a Store or Placement call whose fence is stale: another node owns
// the entity now, or this node's membership lapsed. The caller stops acting for the entity.
var ErrFenced = errors.New("ownership lost: write refused")

// ErrPeerUnreachable is returned by a Transport that could not reach the node at all (no
// connection): the request was not delivered, so sending it elsewhere cannot apply it twice.
// Any other transport error leaves the outcome unknown.
var ErrPeerUnreachable = errors.New("peer unreachable")

type fenceKey struct{}

// WithFence returns a context whose store writes are fenced by f. The Store interface keeps
// its shape: a Store that supports clusters reads the fence from the context.
func WithFence(ctx context.Context, f Fence) context.Context {
	if f.IsZero() {
		return ctx
	}
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceOf returns the fence carried by ctx, if any.
func FenceOf(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}

// Owner is who acts for an entity now.
type Owner struct {
	Node  string // node name
	Addr  string // where that node listens for the other nodes
	Epoch int64
	Mine  bool // this node owns it (Claim took or kept it)
}

// DueEntity is an entity with a deadline (or an unfinished Start/Stop) that has fallen due.
type DueEntity struct {
	Kind string
	ID   string
	At   time.Time
}

// Placement is what the engine needs from the shared store in a cluster.
type Placement interface {
	// Node is this node's name.
	Node() string
	// Claim makes this node the owner of the entity if it has none, or its owner's
	// membership has lapsed (epoch+1), or it is already this node's (epoch unchanged). It
	// returns the owner either way; Mine tells whether that is this node.
	Claim(ctx context.Context, kind, id string) (Owner, error)
	// Lookup returns the live owner, if any, without claiming.
	Lookup(ctx context.Context, kind, id string) (Owner, bool, error)
	// Release gives the entity up if this node still owns it at that epoch, so the next
	// message activates it elsewhere at once.
	Release(ctx context.Context, kind, id string, epoch int64) error
	// Due returns up to limit entities whose deadline is at or before now.
	Due(ctx context.Context, now time.Time, limit int) ([]DueEntity, error)
	// LoadRoom and LoadCall read one snapshot (ErrNotFound when it does not exist).
	LoadRoom(ctx context.Context, id string) (Room, error)
	LoadCall(ctx context.Context, id string) (Call, error)
	// Reserve admits a call: all of rooms and users become the call's, or none does. It
	// returns the first room or user already in another call ("" on success).
	Reserve(ctx context.Context, callID string, rooms, users []string) (busy string, err error)
	// Unreserve frees what callID reserved (idempotent; another call's reservations stay).
	Unreserve(ctx context.Context, callID string, rooms, users []string) error
	// CallOf returns the call a room is reserved for ("" when none).
	CallOf(ctx context.Context, roomID string) (string, error)
}

// LeaseValid reports whether this node's membership lease still holds by its own monotonic
// clock. When it does not, the node must not act at all (its entities may have moved).
type LeaseValid func() bool
