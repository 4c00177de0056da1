package redis

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// How a write is fenced. A Store method whose context carries a fence (actors.WithFence)
// writes through fencedWrite below instead of its plain transaction: one Lua script, in the
// entity's slot, that checks that the entity's owner hash (the fence token, keys.go) still
// names the Store's member — node and incarnation — at the fence's epoch, and only then
// writes the entity. Nothing is written otherwise, and the error wraps actors.ErrFenced:
// the caller (a copy of the entity that lost ownership, or a node that was frozen past its
// ttl) stops acting for it. The member key is not read: it is in another slot. What it
// guarded is covered by the epoch and the lease: an owner whose key lapsed can be replaced
// only by a claim, which raises the epoch in this same hash, so once anyone else owns the
// entity none of the old owner's writes lands; and the old owner stops writing by itself
// when its lease ends, before its key can lapse (ownership.go). A write it sent just before
// that, landing after its key lapsed but before anyone claimed the entity, is simply its
// last write, which the next owner loads.
//
// What the cluster reads about the entity besides — its index entry, its deadline in the
// due set (due.go) and, for rooms, the change on the {p}:feed stream that every node tails
// for its read models — is in other slots, written as ordered steps around that script:
//
//	save:   index entry  →  fenced write of the entity  →  due + feed (guarded)
//	delete: fenced delete  →  index entry  →  due + feed (guarded)  →  owned set
//
// The due and feed step (guardDue) runs in the feed's slot and carries the fence's epoch:
// {p}:fences:{T} holds the last epoch that wrote each entity's deadline and feed entry, and
// a lower one is refused. So a copy that lost the entity between its fenced write and this
// step (frozen in between) cannot put back an old deadline or an old snapshot on the feed
// after the new owner's; a deleted entity's epoch is kept a day (as its owner hash) so a
// late step of a save cannot resurrect it either.
//
// A crash between the steps leaves: an index entry without its entity (readers skip it);
// an entity without its deadline or feed entry — the deadline is re-written by the next
// owner's activation (it re-arms the timers from the snapshot and saves), and the sweep and
// activations are idempotent, so a missing or late due entry delays a dead owner's timer at
// worst until the room is next touched; a read model misses the change until the room's next
// change, or until the node reloads (a start, a feed gap); a deleted entity still in an index
// (skipped), in an owned set (Leave finds its hash gone), or in the due set and not deleted
// on the feed (Due runs the missed step, due.go). Nothing acknowledged is lost:
// the caller gets the error of the step that failed, and the outcome is unknown as after
// any timeout.
//
// Without a fence (single-node mode) none of this runs and the methods behave as they
// always did.

// feedMaxLen caps the feed stream (approximately, MAXLEN ~): readers that fall further
// behind than that reload instead.
const feedMaxLen = 100000

// fencedWrite's ops, ARGV[4].
const (
	opSaveRoom   = "saveroom"
	opDeleteRoom = "delroom"
	opAddAud     = "addaud"
	opRemoveAud  = "remaud"
	opSaveCall   = "savecall"
	opDeleteCall = "delcall"
)

// fencedWrite checks the fence, then performs one op on the entity's keys (one slot).
// KEYS[1] the entity's owner hash, KEYS[2..] the op's. ARGV[1] the writer's incarnation,
// ARGV[2] its node, ARGV[3] the fence epoch, ARGV[4] the op, ARGV[5..] the op's. Returns
// 'ok' or 'fenced' (another owner, incarnation or epoch).
var fencedWrite = goredis.NewScript(`
local o = redis.call('HMGET', KEYS[1], 'node', 'inc', 'epoch')
if o[1] ~= ARGV[2] or o[2] ~= ARGV[1] or o[3] ~= ARGV[3] then return 'fenced' end
local op = ARGV[4]
if op == 'saveroom' or op == 'savecall' then
  -- KEYS[2] room or call; ARGV[5] JSON
  redis.call('SET', KEYS[2], ARGV[5])
elseif op == 'delroom' then
  -- KEYS[2] room, [3] audience; ARGV[5] owner keep ms
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
elseif op == 'delcall' then
  -- KEYS[2] call; ARGV[5] owner keep ms
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
elseif op == 'addaud' then
  -- KEYS[2] audience; ARGV[5] uid, [6] JSON
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[6])
elseif op == 'remaud' then
  -- KEYS[2] audience; ARGV[5] uid
  redis.call('HDEL', KEYS[2], ARGV[5])
else
  return redis.error_reply('unknown op ' .. op)
end
return 'ok'
`)

// guardDue writes an entity's deadline and feed entry unless a higher epoch already did.
// KEYS: due zset, fences hash, feed stream, gone zset (all in the feed's slot).
// ARGV[1] "kind:id", [2] epoch, [3] due ms or "" (none), [4] feed entry kind ("room",
// "roomdel" or "" for none), [5] id, [6] room JSON, [7] feed cap, [8] "1" when the entity
// was deleted, [9] how long a deleted entity's epoch is kept (ms).
// Returns 1, or 0 when a higher epoch wrote already.
var guardDue = goredis.NewScript(`
local e = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) < e then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
if ARGV[4] == 'room' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'k', 'room', 'id', ARGV[5], 'v', ARGV[6])
elseif ARGV[4] == 'roomdel' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'k', 'roomdel', 'id', ARGV[5])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[8] == '1' then redis.call('ZADD', KEYS[4], now, ARGV[1]) end
-- Forget the epochs of entities deleted longer ago than their owner hashes are kept.
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[9]), 'LIMIT', 0, 64)
for _, m in ipairs(old) do
  redis.call('HDEL', KEYS[2], m)
  redis.call('ZREM', KEYS[4], m)
end
return 1
`)

// due is one guardDue step.
type due struct {
	kind, id string
	at       string // unix ms, "" for none
	feed     string // "room", "roomdel" or ""
	val      []byte // the room's JSON for a "room" entry
	deleted  bool
}

func (s *Store) fencedSaveRoom(ctx context.Context, f actors.Fence, room actors.Room, val []byte) error {
	return s.fenced(ctx, f, actors.KindRoom, room.ID,
		func(ctx context.Context, p goredis.Pipeliner) { p.SAdd(ctx, s.roomsIndex(room.ID), room.ID) },
		opSaveRoom, []string{s.roomKey(room.ID)}, []any{val},
		&due{kind: actors.KindRoom, id: room.ID, at: roomDue(room), feed: "room", val: val})
}

func (s *Store) fencedDeleteRoom(ctx context.Context, f actors.Fence, roomID string) error {
	return s.fenced(ctx, f, actors.KindRoom, roomID, nil,
		opDeleteRoom, []string{s.roomKey(roomID), s.audKey(roomID)}, []any{ownerKeep},
		&due{kind: actors.KindRoom, id: roomID, feed: "roomdel", deleted: true},
		func(ctx context.Context) error { return s.rc.SRem(ctx, s.roomsIndex(roomID), roomID).Err() })
}

func (s *Store) fencedAddAudience(ctx context.Context, f actors.Fence, roomID, uid string, val []byte) error {
	return s.fenced(ctx, f, actors.KindRoom, roomID, nil, opAddAud, []string{s.audKey(roomID)}, []any{uid, val}, nil)
}

func (s *Store) fencedRemoveAudience(ctx context.Context, f actors.Fence, roomID, uid string) error {
	return s.fenced(ctx, f, actors.KindRoom, roomID, nil, opRemoveAud, []string{s.audKey(roomID)}, []any{uid}, nil)
}

func (s *Store) fencedSaveCall(ctx context.Context, f actors.Fence, call actors.Call, val []byte) error {
	return s.fenced(ctx, f, actors.KindCall, call.ID,
		func(ctx context.Context, p goredis.Pipeliner) { p.SAdd(ctx, s.callsIndex(call.ID), call.ID) },
		opSaveCall, []string{s.callKey(call.ID)}, []any{val},
		&due{kind: actors.KindCall, id: call.ID, at: callDue(call, time.Now())})
}

func (s *Store) fencedDeleteCall(ctx context.Context, f actors.Fence, callID string) error {
	return s.fenced(ctx, f, actors.KindCall, callID, nil,
		opDeleteCall, []string{s.callKey(callID)}, []any{ownerKeep},
		&due{kind: actors.KindCall, id: callID, deleted: true},
		func(ctx context.Context) error { return s.rc.SRem(ctx, s.callsIndex(callID), callID).Err() })
}

// fenced runs one op of fencedWrite for the entity kind:id under fence f, as the Store's
// member, with the steps around it (above): before, if not nil, ahead of the fenced write;
// after the write, first afterDelete (if given), then the guarded due and feed step (if
// d is not nil), then, for a deletion, dropping the entity from the owner's owned set.
//
// A fence for another entity, or a node that is not this Store's member, is refused like a
// stale one: the write cannot be proven current; so is a write while the member's lease has
// lapsed (it must not act, membership.go). A fence carries no incarnation: the Store's
// current member supplies it. That is enough because a new incarnation of a node name never
// owns what the old one did without claiming it, which raises the epoch, so an old
// incarnation's fence never matches again.
func (s *Store) fenced(ctx context.Context, f actors.Fence, kind, id string, before func(context.Context, goredis.Pipeliner),
	op string, keys []string, args []any, d *due, afterDelete ...func(context.Context) error) error {
	m := s.member.Load()
	var refuse error
	switch {
	case f.Kind != kind || f.ID != id:
		refuse = fmt.Errorf("%w: the fence is for %s %s, not %s %s", actors.ErrFenced, f.Kind, f.ID, kind, id)
	case m == nil:
		refuse = fmt.Errorf("%w: this store has no cluster membership", actors.ErrFenced)
	case f.Node != m.node:
		refuse = fmt.Errorf("%w: the fence is node %s's, this store is node %s", actors.ErrFenced, f.Node, m.node)
	default:
		if err := m.gone(); err != nil {
			refuse = fmt.Errorf("%w: %w", actors.ErrFenced, err)
		} else if !m.LeaseValid() {
			refuse = fmt.Errorf("%w: node %s's membership lease lapsed", actors.ErrFenced, m.node)
		}
	}
	if refuse != nil {
		s.stats.fencedRefused.Add(1)
		return refuse
	}
	keys = append([]string{s.ownerKey(kind, id)}, keys...)
	args = append([]any{m.inc, m.node, f.Epoch, op}, args...)
	res, err := s.writeFenced(ctx, before, keys, args)
	if err != nil {
		return err
	}
	switch res {
	case "ok":
	case "fenced":
		s.stats.fencedRefused.Add(1)
		return fmt.Errorf("%w: %s %s is no longer node %s's at epoch %d", actors.ErrFenced, kind, id, f.Node, f.Epoch)
	default:
		return errors.New("unexpected fenced write reply " + res)
	}
	for _, step := range afterDelete {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if d != nil {
		deleted := "0"
		if d.deleted {
			deleted = "1"
		}
		err := guardDue.Run(ctx, s.rc, []string{s.dueKey, s.fencesKey, s.feedKey, s.goneKey},
			d.kind+":"+d.id, f.Epoch, d.at, d.feed, d.id, d.val, feedMaxLen, deleted, ownerKeep).Err()
		if err != nil {
			return err
		}
	}
	if d != nil && d.deleted {
		if err := s.rc.SRem(ctx, s.ownedKey(f.Node), kind+":"+id).Err(); err != nil {
			return err
		}
	}
	s.stats.fencedOK.Add(1)
	return nil
}

// writeFenced runs the step before (if any), then the fenced script. On one server both go
// in one pipeline — Redis runs a connection's commands in order, so the index entry is
// still added first — and a missing script is loaded and the pair sent again (the index
// entry is idempotent). On a Redis Cluster they are in different slots: one round trip
// after the other.
func (s *Store) writeFenced(ctx context.Context, before func(context.Context, goredis.Pipeliner), keys []string, args []any) (string, error) {
	if s.onCluster() {
		if before != nil {
			if _, err := s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error { before(ctx, p); return nil }); err != nil {
				return "", err
			}
		}
		return fencedWrite.Run(ctx, s.rc, keys, args...).Text()
	}
	for attempt := 0; ; attempt++ {
		var cmd *goredis.Cmd
		_, err := s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
			if before != nil {
				before(ctx, p)
			}
			cmd = fencedWrite.EvalSha(ctx, p, keys, args...)
			return nil
		})
		if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
			if err := fencedWrite.Load(ctx, s.rc).Err(); err != nil {
				return "", err
			}
			continue
		}
		if err != nil {
			return "", err
		}
		return cmd.Text()
	}
}

// ClusterStats are the counters behind the cluster metrics, monotonic since Open.
type ClusterStats struct {
	// Takeovers counts Claims that took an entity from a dead owner
	// (roomengine_ownership_takeovers_total).
	Takeovers int64
	// FencedWritesOK and FencedWritesRefused count fenced writes by outcome
	// (roomengine_fenced_writes_total{result="ok"|"refused"}); a write that failed for
	// another reason (Redis unreachable) is in neither.
	FencedWritesOK      int64
	FencedWritesRefused int64
}

type clusterCounters struct {
	takeovers     atomic.Int64
	fencedOK      atomic.Int64
	fencedRefused atomic.Int64
}

// ClusterStats returns the counters' current values.
func (s *Store) ClusterStats() ClusterStats {
	return ClusterStats{
		Takeovers:           s.stats.takeovers.Load(),
		FencedWritesOK:      s.stats.fencedOK.Load(),
		FencedWritesRefused: s.stats.fencedRefused.Load(),
	}
}
