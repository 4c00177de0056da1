package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Call admission across nodes. A call occupies both its rooms and both its users; two
// accepts handled by different nodes must not both win. Each room and user has its own busy
// key, {p}:busy:room:{id} or {p}:busy:user:{uid} (each its own slot), holding the id of the
// call it belongs to; a reservation takes them one at a time, in one fixed order (rooms by
// id, then users by id), with SET NX and a short TTL, and rolls back what it took at the
// first key held by another call. When all are taken it removes their TTL: a call lives as
// long as it lives, and a node that dies with it hands the call (and its Unreserve) to the
// next owner.
//
// Exactly one of two calls racing for a room or user wins: both try the keys they share in
// the same order, so whichever takes the first shared key first finds every later shared
// key free of the other (the other would have had to take the first one before it), and the
// other stops at that first key at the latest. The loser may see a key held only for the
// moment (by a reservation that rolls back): it answers busy, as if it had come a moment
// earlier. The TTL is what cleans up after a node that dies between two steps (before the
// rollback or the PERSIST): the keys it took free themselves.

// reserveTTL bounds how long a reservation in progress holds its keys if its node dies.
const reserveTTL = 10 * time.Second

// reserveOne takes one busy key for the call. KEYS: busy key. ARGV: call id, ttl ms.
// Returns 2 (taken now), 1 (already the call's) or 0 (another call's).
var reserveOne = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return 1 end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
`)

// keepOne makes a busy key that holds the call permanent. KEYS: busy key. ARGV: call id.
var keepOne = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PERSIST', KEYS[1]) return 1 end
return 0
`)

// Reserve makes every room and user the call's, or none of them: it returns the first room
// (rooms are taken before users, each kind in id order) or user held by another call, ""
// on success. Reserving again for the same call succeeds.
func (m *Member) Reserve(ctx context.Context, callID string, rooms, users []string) (string, error) {
	if callID == "" {
		return "", errors.New("redis: reserve: empty call id")
	}
	keys, names := m.s.busyKeys(sortedIDs(rooms), sortedIDs(users))
	busy, err := run(ctx, m, func(ctx context.Context) (string, error) {
		v, err := m.s.rc.Get(ctx, m.key).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return "", err
		}
		if !holds(v, m.inc) {
			return "", errNotOurs
		}
		var taken []string
		for i, k := range keys {
			n, err := reserveOne.Run(ctx, m.s.rc, []string{k}, callID, reserveTTL.Milliseconds()).Int()
			if err != nil {
				return "", err // the TTL frees what was taken
			}
			switch n {
			case 2:
				taken = append(taken, k)
			case 0:
				return names[i], m.s.unreserveKeys(ctx, callID, taken)
			}
		}
		_, err = m.s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, k := range keys {
				keepOne.Eval(ctx, p, []string{k}, callID)
			}
			return nil
		})
		return "", err
	})
	if errors.Is(err, errNotOurs) {
		return "", fmt.Errorf("redis: reserve for call %s: %w", callID, m.lapsed())
	}
	if err != nil {
		return "", fmt.Errorf("redis: reserve for call %s: %w", callID, err)
	}
	return busy, nil
}

// unreserveOne deletes a busy key if it still holds the call id. KEYS: busy key. ARGV: id.
var unreserveOne = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`)

// unreserveKeys frees the busy keys that still hold callID, pipelined. (Eval in a
// pipeline, here and for keepOne: Run cannot fall back from a NOSCRIPT there, whose answer
// comes only at Exec; the scripts are a few lines.)
func (s *Store) unreserveKeys(ctx context.Context, callID string, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range keys {
			unreserveOne.Eval(ctx, p, []string{k}, callID)
		}
		return nil
	})
	return err
}

// Unreserve frees what callID holds among rooms and users; another call's keys stay.
func (m *Member) Unreserve(ctx context.Context, callID string, rooms, users []string) error {
	keys, _ := m.s.busyKeys(rooms, users)
	if callID == "" || len(keys) == 0 {
		return nil
	}
	_, err := run(ctx, m, func(ctx context.Context) (any, error) {
		return nil, m.s.unreserveKeys(ctx, callID, keys)
	})
	if err != nil {
		return fmt.Errorf("redis: unreserve for call %s: %w", callID, err)
	}
	return nil
}

// sortedIDs is ids in order without repeats: the fixed order of the reservation.
func sortedIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
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
