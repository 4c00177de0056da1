package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// Before layout 2 (keys.go) the store's keys had no hash tags and each index was one set:
//
//	{p}:user:nextid  {p}:user:ID  {p}:user:req:NONCE
//	{p}:room:ID  {p}:audience:ID  {p}:rooms  {p}:call:ID  {p}:calls
//
// Deployments that ran that layout (one redis-server or Sentinel: it never ran on a Redis
// Cluster) keep their data: Open moves it to the new names once, before the store serves,
// and then sets {p}:layout. The move is idempotent — every step can run again, or on two
// nodes starting together — and nothing is deleted before its copy exists:
//
//   - the counter: the new one is raised to the old value, then the old one goes;
//   - a room or call: its id joins its index shard, then RENAMENX moves the key (if the
//     new key exists already, a concurrent mover won and the old key goes);
//   - users and audiences: RENAMENX;
//   - the old sets go last; CreateUser's markers are left to expire.
//
// Nodes of the old version must be stopped before the first node of this one starts: they
// would keep writing the old names, which the new version no longer reads.

const layoutVersion = "2"

// migrateLayout moves old-layout keys once (above). The SCAN runs only while {p}:layout is
// missing: on the first start after the upgrade, and on a new deployment's starts until it
// has stored something (an empty namespace is left untouched: a dry run writes nothing).
func (s *Store) migrateLayout(ctx context.Context) error {
	v, err := withTimeout(ctx, s.timeout, func(ctx context.Context) (string, error) {
		return s.rc.Get(ctx, s.layoutKey).Result()
	})
	if err == nil && v == layoutVersion {
		return nil
	}
	if err != nil && !errors.Is(err, goredis.Nil) {
		return fmt.Errorf("read %s: %w", s.layoutKey, err)
	}
	if err == nil {
		return fmt.Errorf("%s is %q: written by a newer version of the store", s.layoutKey, v)
	}
	var moved, seen atomic.Int64
	err = s.forEachMaster(ctx, func(ctx context.Context, c goredis.UniversalClient, _ bool) error {
		var cursor uint64
		for {
			keys, next, err := withTimeout2(ctx, s.timeout, func(ctx context.Context) ([]string, uint64, error) {
				return c.Scan(ctx, cursor, s.scanPattern, batchSize).Result()
			})
			if err != nil {
				return err
			}
			seen.Add(int64(len(keys)))
			n, err := s.migrateBatch(ctx, c, keys)
			if err != nil {
				return fmt.Errorf("move keys to the new key layout: %w", err)
			}
			moved.Add(int64(n))
			if next == 0 {
				return nil
			}
			cursor = next
		}
	})
	if err != nil {
		return err
	}
	if seen.Load() == 0 {
		// An empty namespace (a new deployment, a dry run): nothing to move, and nothing
		// written; a later start that finds keys marks the layout.
		return nil
	}
	// The old sets last: until every entity has moved they still list it.
	_, err = withTimeout(ctx, s.timeout, func(ctx context.Context) (int64, error) {
		n, err := s.rc.Del(ctx, s.prefix+"rooms").Result()
		if err != nil {
			return 0, err
		}
		m, err := s.rc.Del(ctx, s.prefix+"calls").Result()
		if err != nil {
			return 0, err
		}
		return n + m, s.rc.Set(ctx, s.layoutKey, layoutVersion, 0).Err()
	})
	if err != nil {
		return fmt.Errorf("finish the move to the new key layout: %w", err)
	}
	if n := moved.Load(); n > 0 {
		s.log.Info("redis: moved the store's keys to the hash-tagged layout", "keys", n, "prefix", s.prefix)
	}
	return nil
}

// oldKey is an entity key of the old layout and where it goes.
type oldKey struct {
	old, new  string
	index, id string // the index shard the id joins first ("" for none)
}

// classify names the new key of an old-layout key (ok false: not one of those); counter
// reports the old id counter.
func (s *Store) classify(key string) (k oldKey, counter, ok bool) {
	rest, found := strings.CutPrefix(key, s.prefix)
	if !found || strings.ContainsAny(rest, "{}") {
		return oldKey{}, false, false // new layout, or not the store's
	}
	kind, id, _ := strings.Cut(rest, ":")
	switch {
	case rest == "user:nextid":
		return oldKey{}, true, true
	case kind == "user" && actors.IsDecimalID(id):
		return oldKey{old: key, new: s.userKey(id)}, false, true
	case kind == "room" && id != "":
		return oldKey{old: key, new: s.roomKey(id), index: s.roomsIndex(id), id: id}, false, true
	case kind == "audience" && id != "":
		return oldKey{old: key, new: s.audKey(id)}, false, true
	case kind == "call" && id != "":
		return oldKey{old: key, new: s.callKey(id), index: s.callsIndex(id), id: id}, false, true
	}
	return oldKey{}, false, false
}

// migrateBatch moves the old-layout keys among one SCAN batch, returning how many: one
// pipeline (on one connection, so in order) adds each index entry before its RENAMENX, a
// second deletes the old keys whose new key existed already (a concurrent mover won).
// Old-layout keys only ever lived on one server, where keys of different slots may share a
// pipeline and a rename.
func (s *Store) migrateBatch(ctx context.Context, c goredis.UniversalClient, keys []string) (int, error) {
	var todo []oldKey
	for _, key := range keys {
		k, counter, ok := s.classify(key)
		switch {
		case counter:
			if err := s.migrateCounter(ctx, key); err != nil {
				return 0, err
			}
		case ok:
			todo = append(todo, k)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	renames := make([]*goredis.BoolCmd, len(todo))
	cmds, err := withTimeout(ctx, s.timeout, func(ctx context.Context) ([]goredis.Cmder, error) {
		return c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range todo {
				if k.index != "" {
					p.SAdd(ctx, k.index, k.id)
				}
				renames[i] = p.RenameNX(ctx, k.old, k.new)
			}
			return nil
		})
	})
	// A pipeline reports its first failed command; a rename of a key another node moved
	// meanwhile fails harmlessly, so look at each.
	if err != nil && len(cmds) == 0 {
		return 0, err
	}
	for _, cmd := range cmds {
		if e := cmd.Err(); e != nil && !strings.Contains(e.Error(), "no such key") {
			return 0, e
		}
	}
	var stale []string
	for i, r := range renames {
		done, rerr := r.Result()
		switch {
		case rerr != nil && strings.Contains(rerr.Error(), "no such key"):
			// another node moved it
		case rerr != nil:
			return 0, fmt.Errorf("%s: %w", todo[i].old, rerr)
		case !done:
			stale = append(stale, todo[i].old) // the new key exists: it wins
		}
	}
	if len(stale) > 0 {
		_, err := withTimeout(ctx, s.timeout, func(ctx context.Context) ([]goredis.Cmder, error) {
			return c.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for _, k := range stale {
					p.Del(ctx, k)
				}
				return nil
			})
		})
		if err != nil {
			return 0, err
		}
	}
	return len(todo), nil
}

func (s *Store) migrateCounter(ctx context.Context, old string) error {
	_, err := withTimeout(ctx, s.timeout, func(ctx context.Context) (struct{}, error) {
		v, err := s.rc.Get(ctx, old).Result()
		if errors.Is(err, goredis.Nil) {
			return struct{}{}, nil // another node moved it
		}
		if err != nil {
			return struct{}{}, err
		}
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return struct{}{}, fmt.Errorf("the old id counter is %q, not a number", v)
		}
		if err := reserveUserIDs.Run(ctx, s.rc, []string{s.counterKey}, v).Err(); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.rc.Del(ctx, old).Err()
	})
	return err
}

// withTimeout2 is withTimeout for a call with two results.
func withTimeout2[A, B any](ctx context.Context, d time.Duration, fn func(context.Context) (A, B, error)) (A, B, error) {
	type ab struct {
		a A
		b B
	}
	r, err := withTimeout(ctx, d, func(ctx context.Context) (ab, error) {
		a, b, err := fn(ctx)
		return ab{a, b}, err
	})
	return r.a, r.b, err
}

// migrateDue moves the due set of the earlier cluster layout ({p}:due, no hash tag) into
// {p}:due:{T} (keys.go), keeping the earlier deadline of an entity in both. Cluster mode
// never ran on a Redis Cluster before, so there is nothing to move there. Idempotent: two
// nodes starting together both merge, the second finds nothing left.
var mergeDue = goredis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('ZUNIONSTORE', KEYS[1], 2, KEYS[1], KEYS[2], 'AGGREGATE', 'MIN')
redis.call('DEL', KEYS[2])
return 1
`)

func (s *Store) migrateDue(ctx context.Context) error {
	if s.onCluster() {
		return nil
	}
	_, err := withTimeout(ctx, s.timeout, func(ctx context.Context) (int64, error) {
		return mergeDue.Run(ctx, s.rc, []string{s.dueKey, s.prefix + "due"}).Int64()
	})
	if err != nil {
		return fmt.Errorf("move %sdue: %w", s.prefix, err)
	}
	return nil
}
