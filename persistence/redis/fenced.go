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
// writes through fencedWrite below instead of its plain transaction: one Lua script that
// checks that the writer is alive as the member the Store joined as, and that the entity's
// owner hash still names that member at the fence's epoch, and only then writes. Nothing
// is written otherwise, and the error wraps actors.ErrFenced: the caller (a copy of the
// entity that lost ownership, or a node that was frozen past its ttl) stops acting for it.
//
// The fenced path also keeps what the cluster reads about the entity in the same step:
// its deadline in {p}:due (due.go) and, for rooms, the change on the {p}:feed stream that
// every node tails for its read models. Without a fence (single-node mode) neither is
// written and the methods behave as they always did.

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

// fencedWrite checks the fence, then performs one op.
// KEYS[1] the writer's member key, KEYS[2] the entity's owner hash, KEYS[3..] the op's.
// ARGV[1] the writer's incarnation, ARGV[2] its node, ARGV[3] the fence epoch, ARGV[4] the
// op, ARGV[5..] the op's. Returns 'ok', 'expelled' (the writer is no longer a member) or
// 'fenced' (another owner or epoch).
var fencedWrite = goredis.NewScript(`
local me = redis.call('GET', KEYS[1])
if not me or string.sub(me, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 'expelled' end
local o = redis.call('HMGET', KEYS[2], 'node', 'inc', 'epoch')
if o[1] ~= ARGV[2] or o[2] ~= ARGV[1] or o[3] ~= ARGV[3] then return 'fenced' end
local op = ARGV[4]
if op == 'saveroom' then
  -- KEYS[3] room, [4] rooms, [5] due, [6] feed; ARGV[5] id, [6] JSON, [7] due ms or '', [8] feed cap
  local id = ARGV[5]
  redis.call('SET', KEYS[3], ARGV[6])
  redis.call('SADD', KEYS[4], id)
  if ARGV[7] == '' then
    redis.call('ZREM', KEYS[5], 'room:' .. id)
  else
    redis.call('ZADD', KEYS[5], ARGV[7], 'room:' .. id)
  end
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[8], '*', 'k', 'room', 'id', id, 'v', ARGV[6])
elseif op == 'delroom' then
  -- KEYS[3] room, [4] rooms, [5] due, [6] feed, [7] audience, [8] owned;
  -- ARGV[5] id, [6] owner keep ms, [7] feed cap
  local id = ARGV[5]
  redis.call('DEL', KEYS[3], KEYS[7])
  redis.call('SREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], 'room:' .. id)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[7], '*', 'k', 'roomdel', 'id', id)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  redis.call('SREM', KEYS[8], 'room:' .. id)
elseif op == 'addaud' then
  -- KEYS[3] audience; ARGV[5] uid, [6] JSON
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
elseif op == 'remaud' then
  -- KEYS[3] audience; ARGV[5] uid
  redis.call('HDEL', KEYS[3], ARGV[5])
elseif op == 'savecall' then
  -- KEYS[3] call, [4] calls, [5] due; ARGV[5] id, [6] JSON, [7] due ms or ''
  local id = ARGV[5]
  redis.call('SET', KEYS[3], ARGV[6])
  redis.call('SADD', KEYS[4], id)
  if ARGV[7] == '' then
    redis.call('ZREM', KEYS[5], 'call:' .. id)
  else
    redis.call('ZADD', KEYS[5], ARGV[7], 'call:' .. id)
  end
elseif op == 'delcall' then
  -- KEYS[3] call, [4] calls, [5] due, [6] owned; ARGV[5] id, [6] owner keep ms
  local id = ARGV[5]
  redis.call('DEL', KEYS[3])
  redis.call('SREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], 'call:' .. id)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  redis.call('SREM', KEYS[6], 'call:' .. id)
else
  return redis.error_reply('unknown op ' .. op)
end
return 'ok'
`)

func (s *Store) fencedSaveRoom(ctx context.Context, f actors.Fence, room actors.Room, val []byte) error {
	return s.fenced(ctx, f, actors.KindRoom, room.ID, opSaveRoom,
		[]string{s.roomKey(room.ID), s.roomsIndex(room.ID), s.dueKey, s.feedKey},
		room.ID, val, roomDue(room), feedMaxLen)
}

func (s *Store) fencedDeleteRoom(ctx context.Context, f actors.Fence, roomID string) error {
	return s.fenced(ctx, f, actors.KindRoom, roomID, opDeleteRoom,
		[]string{s.roomKey(roomID), s.roomsIndex(roomID), s.dueKey, s.feedKey, s.audKey(roomID), s.ownedPrefix + f.Node},
		roomID, ownerKeep, feedMaxLen)
}

func (s *Store) fencedAddAudience(ctx context.Context, f actors.Fence, roomID, uid string, val []byte) error {
	return s.fenced(ctx, f, actors.KindRoom, roomID, opAddAud,
		[]string{s.audKey(roomID)}, uid, val)
}

func (s *Store) fencedRemoveAudience(ctx context.Context, f actors.Fence, roomID, uid string) error {
	return s.fenced(ctx, f, actors.KindRoom, roomID, opRemoveAud,
		[]string{s.audKey(roomID)}, uid)
}

func (s *Store) fencedSaveCall(ctx context.Context, f actors.Fence, call actors.Call, val []byte) error {
	return s.fenced(ctx, f, actors.KindCall, call.ID, opSaveCall,
		[]string{s.callKey(call.ID), s.callsIndex(call.ID), s.dueKey},
		call.ID, val, callDue(call, time.Now()))
}

func (s *Store) fencedDeleteCall(ctx context.Context, f actors.Fence, callID string) error {
	return s.fenced(ctx, f, actors.KindCall, callID, opDeleteCall,
		[]string{s.callKey(callID), s.callsIndex(callID), s.dueKey, s.ownedPrefix + f.Node},
		callID, ownerKeep)
}

// fenced runs one op of fencedWrite for the entity kind:id under fence f, as the Store's
// member. A fence for another entity, or a node that is not this Store's member, is
// refused like a stale one: the write cannot be proven current. A fence carries no
// incarnation: the Store's current member supplies it. That is enough because a new
// incarnation of a node name never owns what the old one did without claiming it, which
// raises the epoch, so an old incarnation's fence never matches again.
func (s *Store) fenced(ctx context.Context, f actors.Fence, kind, id, op string, keys []string, args ...any) error {
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
		}
	}
	if refuse != nil {
		s.stats.fencedRefused.Add(1)
		return refuse
	}
	keys = append([]string{m.key, s.ownerPrefix + kind + ":" + id}, keys...)
	args = append([]any{m.inc, m.node, f.Epoch, op}, args...)
	res, err := fencedWrite.Run(ctx, s.rc, keys, args...).Text()
	if err != nil {
		return err
	}
	switch res {
	case "ok":
		s.stats.fencedOK.Add(1)
		return nil
	case "expelled":
		s.stats.fencedRefused.Add(1)
		return fmt.Errorf("%w: %w", actors.ErrFenced, m.lapsed())
	case "fenced":
		s.stats.fencedRefused.Add(1)
		return fmt.Errorf("%w: %s %s is no longer node %s's at epoch %d", actors.ErrFenced, kind, id, f.Node, f.Epoch)
	default:
		return errors.New("unexpected fenced write reply " + res)
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
