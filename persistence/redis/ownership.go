package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// Who owns room R: the hash {p}:owner:room:R = {node, inc, addr, epoch}. The owner is the
// node named there, but only while that node's member key holds that incarnation; when it
// does not, the entity is free and the next Claim takes it over with epoch+1. The epoch
// never goes back (Release keeps it, a delete keeps the hash a day), so a fence taken
// before a change of owner never matches again.

// ownerKeep is how long a deleted entity's owner hash outlives it: ids are random and never
// reused, so this only has to outlast any late write from a copy that missed the delete.
const ownerKeep = 24 * 60 * 60 * 1000 // ms

// claim is the whole decision of who owns an entity.
// KEYS: owner hash, my member key, my owned set, the failover marker.
// ARGV: my node, my incarnation, my addr, "kind:id", member key prefix, owned key prefix,
// taken key prefix.
// Returns {'expelled'}, {'other', node, addr, epoch} or {'mine', epoch, takeover 0|1}.
//
// An owner whose member key is simply missing while the failover marker exists
// (failover.go) is not taken over: every member key may have expired during a Redis
// failover, and its node is probably about to rejoin; the caller is sent to it as if it
// were alive, and reaches it once it has (or finds it gone, and asks again). A takeover
// records the incarnation it took from under {taken}{node}, so that incarnation can never
// rejoin.
var claim = goredis.NewScript(`
local me = redis.call('GET', KEYS[2])
if not me or string.sub(me, 1, #ARGV[2] + 1) ~= ARGV[2] .. '|' then return {'expelled'} end
local o = redis.call('HMGET', KEYS[1], 'node', 'inc', 'addr', 'epoch')
local epoch = tonumber(o[4]) or 0
if o[1] == ARGV[1] and o[2] == ARGV[2] then return {'mine', tostring(epoch), 0} end
local takeover = 0
if o[1] then
  local v = redis.call('GET', ARGV[5] .. o[1])
  if v and o[2] and string.sub(v, 1, #o[2] + 1) == o[2] .. '|' then
    return {'other', o[1], o[3] or '', tostring(epoch)}
  end
  if not v and o[2] and redis.call('EXISTS', KEYS[4]) == 1 then
    return {'other', o[1], o[3] or '', tostring(epoch)}
  end
  takeover = 1
  redis.call('SREM', ARGV[6] .. o[1], ARGV[4])
  if o[2] then redis.call('SET', ARGV[7] .. o[1], o[2], 'PX', 86400000) end
end
epoch = epoch + 1
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'inc', ARGV[2], 'addr', ARGV[3], 'epoch', epoch)
redis.call('SADD', KEYS[3], ARGV[4])
return {'mine', tostring(epoch), takeover}
`)

// Claim makes this node the entity's owner if it has none or its owner is dead (epoch+1),
// keeps it if it is already this incarnation's (epoch unchanged), and otherwise returns the
// live owner with Mine false. An expelled member gets ErrExpelled, also when only Redis
// knows it yet.
func (m *Member) Claim(ctx context.Context, kind, id string) (actors.Owner, error) {
	if err := checkEntity(kind, id); err != nil {
		return actors.Owner{}, fmt.Errorf("redis: claim: %w", err)
	}
	res, err := run(ctx, m, func(ctx context.Context) ([]any, error) {
		ent := kind + ":" + id
		return claim.Run(ctx, m.s.rc,
			[]string{m.s.ownerPrefix + ent, m.key, m.ownedKey, m.s.failoverKey},
			m.node, m.inc, m.addr, ent, m.s.memberPrefix, m.s.ownedPrefix, m.s.takenPrefix).Slice()
	})
	if err != nil {
		return actors.Owner{}, fmt.Errorf("redis: claim %s %s: %w", kind, id, err)
	}
	switch res[0] {
	case "expelled":
		return actors.Owner{}, fmt.Errorf("redis: claim %s %s: %w", kind, id, m.lapsed())
	case "mine":
		epoch, _ := strconv.ParseInt(res[1].(string), 10, 64)
		if res[2].(int64) == 1 {
			m.s.stats.takeovers.Add(1)
		}
		return actors.Owner{Node: m.node, Addr: m.addr, Epoch: epoch, Mine: true}, nil
	default: // "other"
		epoch, _ := strconv.ParseInt(res[3].(string), 10, 64)
		return actors.Owner{Node: res[1].(string), Addr: res[2].(string), Epoch: epoch}, nil
	}
}

// lookup returns the owner hash's node, inc, addr and epoch while that owner is alive,
// nil otherwise. KEYS: owner hash. ARGV: member key prefix.
var lookup = goredis.NewScript(`
local o = redis.call('HMGET', KEYS[1], 'node', 'inc', 'addr', 'epoch')
if not o[1] or not o[2] then return false end
local v = redis.call('GET', ARGV[1] .. o[1])
if not v or string.sub(v, 1, #o[2] + 1) ~= o[2] .. '|' then return false end
return {o[1], o[2], o[3] or '', o[4] or '0'}
`)

// Lookup returns the entity's live owner, if it has one, without claiming it.
func (m *Member) Lookup(ctx context.Context, kind, id string) (actors.Owner, bool, error) {
	if err := checkEntity(kind, id); err != nil {
		return actors.Owner{}, false, fmt.Errorf("redis: lookup: %w", err)
	}
	res, err := run(ctx, m, func(ctx context.Context) ([]string, error) {
		return lookup.Run(ctx, m.s.rc, []string{m.s.ownerPrefix + kind + ":" + id},
			m.s.memberPrefix).StringSlice()
	})
	if errors.Is(err, goredis.Nil) {
		return actors.Owner{}, false, nil
	}
	if err != nil {
		return actors.Owner{}, false, fmt.Errorf("redis: lookup %s %s: %w", kind, id, err)
	}
	epoch, _ := strconv.ParseInt(res[3], 10, 64)
	return actors.Owner{
		Node: res[0], Addr: res[2], Epoch: epoch,
		Mine: res[0] == m.node && res[1] == m.inc,
	}, true, nil
}

// release clears the owner (keeping the epoch) only if it is still us at that epoch.
// KEYS: owner hash, my owned set. ARGV: node, incarnation, epoch, "kind:id".
var release = goredis.NewScript(`
local o = redis.call('HMGET', KEYS[1], 'node', 'inc', 'epoch')
if o[1] ~= ARGV[1] or o[2] ~= ARGV[2] or o[3] ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], 'node', 'inc', 'addr')
redis.call('SREM', KEYS[2], ARGV[4])
return 1
`)

// Release gives the entity up if this incarnation still owns it at epoch; otherwise it
// does nothing (someone else owns it now, which is what Release wanted anyway).
func (m *Member) Release(ctx context.Context, kind, id string, epoch int64) error {
	if err := checkEntity(kind, id); err != nil {
		return fmt.Errorf("redis: release: %w", err)
	}
	ent := kind + ":" + id
	_, err := run(ctx, m, func(ctx context.Context) (int64, error) {
		return release.Run(ctx, m.s.rc, []string{m.s.ownerPrefix + ent, m.ownedKey},
			m.node, m.inc, epoch, ent).Int64()
	})
	if err != nil {
		return fmt.Errorf("redis: release %s %s: %w", kind, id, err)
	}
	return nil
}

// Owned returns the "kind:id" of every entity this incarnation owns, sorted (for the
// roomengine_owned_entities gauge; see OwnedCounts).
func (m *Member) Owned(ctx context.Context) ([]string, error) {
	out, err := run(ctx, m, func(ctx context.Context) ([]string, error) {
		return m.s.rc.SMembers(ctx, m.ownedKey).Result()
	})
	if err != nil {
		return nil, fmt.Errorf("redis: owned by %s: %w", m.node, err)
	}
	slices.Sort(out)
	return out, nil
}

// OwnedCounts returns how many entities of each kind this incarnation owns.
func (m *Member) OwnedCounts(ctx context.Context) (map[string]int, error) {
	owned, err := m.Owned(ctx)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, e := range owned {
		kind, _, _ := strings.Cut(e, ":")
		counts[kind]++
	}
	return counts, nil
}

// checkEntity refuses what would make an ambiguous key: the kind is "room" or "call".
func checkEntity(kind, id string) error {
	if kind != actors.KindRoom && kind != actors.KindCall {
		return fmt.Errorf("unknown entity kind %q", kind)
	}
	if id == "" {
		return fmt.Errorf("empty %s id", kind)
	}
	return nil
}

// run is one round trip on behalf of m: refused at once once m is gone, bounded by the
// store's timeout.
func run[T any](ctx context.Context, m *Member, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	if err := m.gone(); err != nil {
		return zero, err
	}
	ctx, cancel, err := m.s.begin(ctx)
	if err != nil {
		return zero, err
	}
	defer cancel()
	return fn(ctx)
}

// Compile-time check: a Member is the engine's view of the cluster.
var _ actors.Placement = (*Member)(nil)
