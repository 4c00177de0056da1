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
			for _, k := range keys {
				ok, err := s.migrateKey(ctx, k)
				if err != nil {
					return fmt.Errorf("move %s to the new key layout: %w", k, err)
				}
				if ok {
					moved.Add(1)
				}
			}
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

// migrateKey moves one key if it has an old name, and reports whether it did.
func (s *Store) migrateKey(ctx context.Context, key string) (bool, error) {
	rest, ok := strings.CutPrefix(key, s.prefix)
	if !ok || strings.ContainsAny(rest, "{}") {
		return false, nil // new layout, or not the store's
	}
	kind, id, _ := strings.Cut(rest, ":")
	switch {
	case rest == "user:nextid":
		return true, s.migrateCounter(ctx, key)
	case kind == "user" && actors.IsDecimalID(id):
		return true, s.renameOld(ctx, key, s.userKey(id), "", id)
	case kind == "room" && id != "":
		return true, s.renameOld(ctx, key, s.roomKey(id), s.roomsIndex(id), id)
	case kind == "audience" && id != "":
		return true, s.renameOld(ctx, key, s.audKey(id), "", id)
	case kind == "call" && id != "":
		return true, s.renameOld(ctx, key, s.callKey(id), s.callsIndex(id), id)
	}
	return false, nil
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

// renameOld moves old to new, first adding the id to index (when not "").
func (s *Store) renameOld(ctx context.Context, old, new, index, id string) error {
	_, err := withTimeout(ctx, s.timeout, func(ctx context.Context) (struct{}, error) {
		if index != "" {
			if err := s.rc.SAdd(ctx, index, id).Err(); err != nil {
				return struct{}{}, err
			}
		}
		done, err := s.rc.RenameNX(ctx, old, new).Result()
		if err != nil {
			if strings.Contains(err.Error(), "no such key") {
				return struct{}{}, nil // another node moved it
			}
			return struct{}{}, err
		}
		if !done {
			return struct{}{}, s.rc.Del(ctx, old).Err() // the new key exists: it wins
		}
		return struct{}{}, nil
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
