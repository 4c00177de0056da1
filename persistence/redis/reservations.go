package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
)

// Call admission across nodes. A call occupies both its rooms and both its users; two
// accepts handled by different nodes must not both win, so the reservation of all four is
// one script: {p}:busy:room:{id} and {p}:busy:user:{uid} hold the id of the call they
// belong to. They have no TTL: a call lives as long as it lives, and a node that dies with
// it hands the call (and its Unreserve) to the next owner.

// reserve takes every key for the call or none.
// KEYS[1] the caller's member key, KEYS[2..] the busy keys.
// ARGV[1] the caller's incarnation, ARGV[2] the call id, ARGV[3..] the room or user each
// busy key is about (same order). Returns {'ok'}, {'busy', name} or {'expelled'}.
var reserve = goredis.NewScript(`
local me = redis.call('GET', KEYS[1])
if not me or string.sub(me, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return {'expelled'} end
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and v ~= ARGV[2] then return {'busy', ARGV[i + 1]} end
end
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[2]) end
return {'ok'}
`)

// Reserve makes every room and user the call's, or none of them: it returns the first room
// (rooms are checked before users) or user held by another call, "" on success. Reserving
// again for the same call succeeds.
func (m *Member) Reserve(ctx context.Context, callID string, rooms, users []string) (string, error) {
	if callID == "" {
		return "", errors.New("redis: reserve: empty call id")
	}
	keys, names := m.s.busyKeys(rooms, users)
	keys = append([]string{m.key}, keys...)
	args := []any{m.inc, callID}
	for _, n := range names {
		args = append(args, n)
	}
	res, err := run(ctx, m, func(ctx context.Context) ([]string, error) {
		return reserve.Run(ctx, m.s.rc, keys, args...).StringSlice()
	})
	if err != nil {
		return "", fmt.Errorf("redis: reserve for call %s: %w", callID, err)
	}
	switch res[0] {
	case "busy":
		return res[1], nil
	case "expelled":
		return "", fmt.Errorf("redis: reserve for call %s: %w", callID, m.lapsed())
	}
	return "", nil
}

// unreserve deletes the busy keys that still hold the call id. KEYS: busy keys. ARGV: id.
var unreserve = goredis.NewScript(`
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
`)

// Unreserve frees what callID holds among rooms and users; another call's keys stay.
func (m *Member) Unreserve(ctx context.Context, callID string, rooms, users []string) error {
	keys, _ := m.s.busyKeys(rooms, users)
	if callID == "" || len(keys) == 0 {
		return nil
	}
	_, err := run(ctx, m, func(ctx context.Context) (any, error) {
		return unreserve.Run(ctx, m.s.rc, keys, callID).Result()
	})
	if err != nil {
		return fmt.Errorf("redis: unreserve for call %s: %w", callID, err)
	}
	return nil
}

// CallOf returns the call the room is reserved for, "" when none.
func (m *Member) CallOf(ctx context.Context, roomID string) (string, error) {
	id, err := run(ctx, m, func(ctx context.Context) (string, error) {
		return m.s.rc.Get(ctx, m.s.busyRoomPrefix+roomID).Result()
	})
	if errors.Is(err, goredis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("redis: call of room %s: %w", roomID, err)
	}
	return id, nil
}

// busyKeys returns the busy key of every room then every user, and what each is about.
// Empty ids are skipped: they name nothing.
func (s *Store) busyKeys(rooms, users []string) (keys, names []string) {
	for _, r := range rooms {
		if r != "" {
			keys, names = append(keys, s.busyRoomPrefix+r), append(names, r)
		}
	}
	for _, u := range users {
		if u != "" {
			keys, names = append(keys, s.busyUserPrefix+u), append(names, u)
		}
	}
	return keys, names
}
