package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

type loginRequest struct{ name string }
type getUserRequest struct{ id string }

// userReply answers loginRequest and getUserRequest. For getUserRequest, found is false for an
// unknown user (err stays nil: that is an answer, not a failure).
type userReply struct {
	user  User
	found bool
	err   error
}

// userStored is the store's answer, delivered back to the registry as a message so the
// registry's mailbox never waits on a disk or network write.
type userStored struct {
	reply   userReply
	replyTo *actor.PID
}

type resetUsersRequest struct{ key string }

// withUser resolves a user and passes the room command, with the user filled in, on to the
// room registry, which answers the original caller: one round trip for a comment instead of
// a user lookup followed by a room request.
type withUser struct {
	uid    string
	roomID string
	ev     userEvent
}

// userEvent is a room event made on behalf of a user (play, comment, like): the user
// registry fills the user in; known is false for an id the store does not hold.
type userEvent interface {
	withUser(u User, known bool) roomEvent
}

func (e evPlay) withUser(u User, known bool) roomEvent {
	e.member, e.userKnown = u, known
	return e
}

func (e evComment) withUser(u User, known bool) roomEvent {
	e.user, e.userKnown = u, known
	return e
}

func (e evLike) withUser(u User, known bool) roomEvent {
	e.user, e.userKnown = u, known
	return e
}

// request is the room command once the user is known.
func (w withUser) request(u User, known bool) roomRequest {
	return roomRequest{roomID: w.roomID, ev: w.ev.withUser(u, known)}
}

// userLoaded carries a looked-up user back to the registry to continue a withUser.
type userLoaded struct {
	reply   userReply
	next    withUser
	replyTo *actor.PID
}

// userRegistry hands out user ids and answers who a user is. Ids are allocated by the store
// (atomically and durably, so they are never reused, also across restarts and nodes); the
// registry pipelines those writes: many logins are in flight at once, which lets the store
// group-commit them, and each caller is answered only once its user is durable.
type userRegistry struct {
	store        Store
	storeTimeout time.Duration
	cache        *userCache // shared with the Engine, which reads it (comment_local.go)
	rooms        *actor.PID
}

func newUserRegistry(store Store, storeTimeout time.Duration, rooms *actor.PID, cache *userCache) *userRegistry {
	return &userRegistry{store: store, storeTimeout: storeTimeout, cache: cache, rooms: rooms}
}

func (u *userRegistry) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case loginRequest:
		u.async(ctx, func(c context.Context) userReply {
			user, err := u.store.CreateUser(c, msg.name)
			return userReply{user: user, found: err == nil, err: err}
		})
	case getUserRequest:
		if user, ok := u.cache.get(msg.id); ok {
			ctx.Respond(userReply{user: user, found: true})
			return
		}
		u.async(ctx, func(c context.Context) userReply {
			user, err := u.store.GetUser(c, msg.id)
			if errors.Is(err, ErrNotFound) {
				return userReply{user: User{ID: msg.id}}
			}
			return userReply{user: user, found: err == nil, err: err}
		})
	case userStored:
		if msg.reply.found {
			u.cache.put(msg.reply.user)
		}
		ctx.Send(msg.replyTo, msg.reply)
	case withUser:
		if user, ok := u.cache.get(msg.uid); ok {
			ctx.RequestWithCustomSender(u.rooms, msg.request(user, true), ctx.Sender())
			return
		}
		self, replyTo, root := ctx.Self(), ctx.Sender(), ctx.ActorSystem().Root
		go func() {
			c, cancel := context.WithTimeout(context.Background(), u.storeTimeout)
			defer cancel()
			user, err := u.store.GetUser(c, msg.uid)
			reply := userReply{user: user, found: err == nil, err: err}
			if errors.Is(err, ErrNotFound) {
				reply = userReply{user: User{ID: msg.uid}}
			}
			root.Send(self, userLoaded{reply: reply, next: msg, replyTo: replyTo})
		}()
	case userLoaded:
		if msg.reply.err != nil {
			ctx.Send(msg.replyTo, roomReply{err: ErrStoreUnavailable(msg.reply.err)})
			return
		}
		if msg.reply.found {
			u.cache.put(msg.reply.user)
		}
		ctx.RequestWithCustomSender(u.rooms, msg.next.request(msg.reply.user, msg.reply.found), msg.replyTo)
	case resetUsersRequest:
		u.cache.forget(msg.key)
		ctx.Respond(userReply{})
	}
}

// async runs a store call off the mailbox and feeds its result back as userStored.
func (u *userRegistry) async(ctx actor.Context, call func(context.Context) userReply) {
	self, replyTo, root := ctx.Self(), ctx.Sender(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), u.storeTimeout)
		defer cancel()
		root.Send(self, userStored{reply: call(c), replyTo: replyTo})
	}()
}
