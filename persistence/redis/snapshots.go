package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// One snapshot at a time: a node activating a room or call it just claimed reads only that
// entity, not the whole set as LoadRooms does at a single node's start-up.

// LoadRoom returns the stored room; an error wrapping actors.ErrNotFound if there is none.
func (s *Store) LoadRoom(ctx context.Context, id string) (actors.Room, error) {
	r, err := loadOne[actors.Room](ctx, s, s.roomKey, "room", id)
	if err != nil {
		return actors.Room{}, fmt.Errorf("redis: load room %s: %w", id, err)
	}
	return r, nil
}

// LoadCall returns the stored call; an error wrapping actors.ErrNotFound if there is none.
func (s *Store) LoadCall(ctx context.Context, id string) (actors.Call, error) {
	c, err := loadOne[actors.Call](ctx, s, s.callKey, "call", id)
	if err != nil {
		return actors.Call{}, fmt.Errorf("redis: load call %s: %w", id, err)
	}
	return c, nil
}

// LoadRoom is Store.LoadRoom for a member that has not been expelled.
func (m *Member) LoadRoom(ctx context.Context, id string) (actors.Room, error) {
	if err := m.gone(); err != nil {
		return actors.Room{}, fmt.Errorf("redis: load room %s: %w", id, err)
	}
	return m.s.LoadRoom(ctx, id)
}

// LoadCall is Store.LoadCall for a member that has not been expelled.
func (m *Member) LoadCall(ctx context.Context, id string) (actors.Call, error) {
	if err := m.gone(); err != nil {
		return actors.Call{}, fmt.Errorf("redis: load call %s: %w", id, err)
	}
	return m.s.LoadCall(ctx, id)
}

func loadOne[T any](ctx context.Context, s *Store, key func(string) string, what, id string) (T, error) {
	var x T
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return x, err
	}
	defer cancel()
	if id == "" {
		return x, fmt.Errorf("empty %s id: %w", what, actors.ErrNotFound)
	}
	b, err := s.rc.Get(ctx, key(id)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return x, fmt.Errorf("%s %s: %w", what, id, actors.ErrNotFound)
	}
	if err != nil {
		return x, err
	}
	if err := json.Unmarshal(b, &x); err != nil {
		return x, err
	}
	return x, nil
}
