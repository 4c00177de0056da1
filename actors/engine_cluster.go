package actors

import (
	"context"
	"errors"
	"time"
)

// The Engine's cluster API: what the peer transport, the cluster feed, the admin route and
// the metrics call on a node of a cluster.

type (
	ownedRequest struct{}
	ownedReply   struct{ n int }
)

// ServePeer answers a request another node sent for an entity it believes this node owns.
func (e *Engine) ServePeer(ctx context.Context, req PeerRequest) PeerReply {
	if e.leaving.Load() || !e.own.member() {
		return PeerReply{Status: PeerRetry}
	}
	msg, err := localMessage(req)
	if err != nil {
		e.log.Warn("peer request refused", "err", err)
		return PeerReply{Status: PeerOK, Code: CodeInternal, Message: "bad peer request"}
	}
	target := e.rooms
	if req.Kind != PeerRoom {
		target = e.calls
	}
	timeout := e.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	res, err := e.system.Root.RequestFuture(target, msg, timeout).Result()
	if err != nil {
		if e.leaving.Load() {
			return PeerReply{Status: PeerRetry}
		}
		return PeerReply{Status: PeerOK, Code: CodeUnavailable, Message: "请求超时，请稍后重试"}
	}
	// The node that asked answers its client after this reply: the pushes this request
	// caused are written first, as for a request of this node's own clients.
	if err := e.Settle(ctx); err != nil {
		return PeerReply{Status: PeerOK, Code: CodeUnavailable, Message: "推送未确认，请稍后重试"}
	}
	return peerReplyOf(res)
}

// Settle returns once the pushes caused by what this node has done so far are written to
// the shared feed (a cluster); on a single node there is nothing to wait for. The HTTP
// layer calls it before answering a command, so an acknowledged comment cannot be lost in
// a queue of a node that is frozen or killed right after answering.
func (e *Engine) Settle(ctx context.Context) error {
	s, ok := e.publisher.(Syncer)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		return Errorf(CodeUnavailable, "推送未确认，请稍后重试")
	}
	return nil
}

// FeedRoom applies a room's change seen on the cluster feed to this node's read model.
func (e *Engine) FeedRoom(room Room) { e.system.Root.Send(e.rooms, feedRoom{room: room}) }

// FeedRoomGone applies a room's deletion seen on the cluster feed.
func (e *Engine) FeedRoomGone(roomID string) {
	e.system.Root.Send(e.rooms, feedRoomGone{roomID: roomID})
}

// FeedResync replaces the read model with rooms, every room the store holds, after the
// node's feed follower lost entries (a trimmed position).
func (e *Engine) FeedResync(rooms []Room) { e.system.Root.Send(e.rooms, feedResync{rooms: rooms}) }

// FeedReset applies a /reset another node made: the store no longer holds key (a room or
// user; "" for everything), so this node forgets its copies and stops its actors for it.
func (e *Engine) FeedReset(ctx context.Context, key string) error {
	if _, err := e.ask(ctx, e.calls, resetRequest{key: key, fromFeed: true}); err != nil {
		return err
	}
	if _, err := e.ask(ctx, e.rooms, resetRequest{key: key, fromFeed: true}); err != nil {
		return err
	}
	_, err := e.ask(ctx, e.users, resetUsersRequest{key: key})
	return err
}

// Owned reports how many rooms and calls this node acts for.
func (e *Engine) Owned(ctx context.Context) (rooms, calls int, err error) {
	r, err := e.ask(ctx, e.rooms, ownedRequest{})
	if err != nil {
		return 0, 0, err
	}
	c, err := e.ask(ctx, e.calls, ownedRequest{})
	if err != nil {
		return 0, 0, err
	}
	return r.(ownedReply).n, c.(ownedReply).n, nil
}

// OwnerOf names the node that acts for a room now, placing it on this node if it has no
// live owner. An unknown room is 2003; a single node answers that it is not a cluster.
func (e *Engine) OwnerOf(ctx context.Context, roomID string) (Owner, error) {
	return e.own.ownerOf(ctx, roomID)
}

func (c *clusterDeps) ownerOf(ctx context.Context, roomID string) (Owner, error) {
	if _, err := c.placement.LoadRoom(ctx, roomID); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Owner{}, ErrNoSuchRoom(roomID)
		}
		return Owner{}, ErrStoreUnavailable(err)
	}
	o, err := c.placement.Claim(ctx, KindRoom, roomID)
	if err != nil {
		return Owner{}, ErrStoreUnavailable(err)
	}
	return o, nil
}

// BeginLeave marks the start of a graceful leave: peers asking this node from now on are
// told to look the owner up again (they find the next owner once this node has released
// its entities).
func (e *Engine) BeginLeave() { e.leaving.Store(true) }

// startSweep looks for due deadlines every sweep interval: a room's no-publish expiry or
// topic deletion, a call's outstanding Start or Stop. The owner's own timers handle its
// entities; the sweep is what finds the ones whose owner is gone, claims them, and lets
// their activation fire what is overdue. Exactly once comes from the entity, not the sweep:
// the firing is a fenced write of a state change that only one owner can make.
func (c *clusterDeps) startSweep(s sweepTargets) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(c.sweep)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				c.sweepOnce(s)
			}
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

func (c *clusterDeps) sweepOnce(s sweepTargets) {
	if !c.member() || s.leaving() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.storeTimeout)
	due, err := c.placement.Due(ctx, s.clock.Now(), 256)
	cancel()
	if err != nil {
		c.log.Warn("due deadlines not read", "err", err)
		return
	}
	for _, d := range due {
		switch d.Kind {
		case KindRoom:
			s.root.Send(s.rooms, dueRoom{roomID: d.ID})
		case KindCall:
			s.root.Send(s.calls, dueCall{callID: d.ID})
		}
	}
}
