package cluster

import (
	"context"
	"log/slog"
	"time"

	"roomengine/actors"
	redisstore "roomengine/persistence/redis"
)

// feedHandler applies the room-change feed to the engine's read model.
type feedHandler struct {
	engine *actors.Engine
	store  *redisstore.Store
	log    *slog.Logger
	self   string // this node's incarnation: its own resets are applied already
}

func (h feedHandler) Room(room actors.Room) { h.engine.FeedRoom(room) }
func (h feedHandler) RoomDeleted(id string) { h.engine.FeedRoomGone(id) }

// Reset: /reset on another node wiped the store; the node that made it has already
// forgotten what it held, before it answered.
func (h feedHandler) Reset(key, from string) {
	if from == h.self {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.engine.FeedReset(ctx, key); err != nil {
		h.log.Warn("a reset made on another node not applied here", "key", key, "err", err)
	}
}

// Gap: entries were trimmed before this node read them: the read model is reloaded.
func (h feedHandler) Gap() {
	h.log.Warn("cluster feed position trimmed away: reloading rooms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rooms, err := h.store.LoadRooms(ctx)
	if err != nil {
		h.log.Error("rooms not reloaded after a feed gap", "err", err)
		return
	}
	h.engine.FeedResync(rooms)
}
