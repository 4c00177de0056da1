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

// Who owns room R: the hash {p}:owner:room:{R} = {node, inc, addr, epoch}, in R's own slot
// (keys.go): the fence token that every fenced write and push checks in the same script as
// it writes. The owner is the node named there, but only while that node's member key holds
// that incarnation; when it does not, the entity is free and the next Claim takes it over
// with epoch+1. The epoch never goes back (Release keeps it, a delete keeps the hash a
// day), so a fence taken before a change of owner never matches again.
//
// The member key is in its node's slot, which a script in the entity's slot cannot read.
// So a claim goes in steps (Claim below): read the owner hash (and this node's own member
// key); if another incarnation owns it, read that owner's member key; if it is not alive,
// mark that incarnation taken over in its own slot (markTaken: only while its key is still
// missing, and from then on it can never rejoin, failover.go); then compare-and-set the
// owner hash to this node at epoch+1, unless it changed since it was read. An incarnation
// whose key lapsed never comes back alive: renew only extends a key that exists, join
// always makes a new incarnation, and rejoin refuses an incarnation marked taken. So "the
// owner's key was missing, and the owner hash still names it" at the compare-and-set means
// the owner is dead for good, as the one-script claim knew it.
//
// The old owner stops by itself: it acts only while its lease holds (membership.go), and
// the lease, counted on its monotonic clock from the send of its last successful renewal,
// ends ttl/5 before Redis lets the key expire — provided the two clocks do not drift apart
// by more than that margin over one ttl (20%: any real clock), and a write it sent before
// the lease ended reaches Redis before the key expires or is refused by the epoch.

// ownerKeep is how long a deleted entity's owner hash outlives it: ids are random and never
// reused, so this only has to outlast any late write from a copy that missed the delete.
const ownerKeep = 24 * 60 * 60 * 1000 // ms

// claimRounds bounds the compare-and-set retries of one Claim: each lost round means
// another node changed the owner meanwhile, whose answer the next round reads.
const claimRounds = 8

// markTaken records, in the owner's own slot, that incarnation ARGV[1] is taken over —
// only while its member key does not hold it (it may have rejoined after a Redis outage
// since we read it). KEYS: member key, taken key. ARGV: incarnation, keep ms.
// Returns 1 (marked: it is dead for good) or 0 (alive).
var markTaken = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
`)

// casOwner makes this node the owner at epoch+1 if the owner hash still names the owner
// (node, inc, epoch; "" for none) that the claim read.
// KEYS: owner hash. ARGV: seen node, seen inc, seen epoch, my node, my inc, my addr.
// Returns the new epoch, or -1 when the hash changed.
var casOwner = goredis.NewScript(`
local o = redis.call('HMGET', KEYS[1], 'node', 'inc', 'epoch')
if (o[1] or '') ~= ARGV[1] or (o[2] or '') ~= ARGV[2] or (o[3] or '0') ~= ARGV[3] then return -1 end
local epoch = (tonumber(o[3]) or 0) + 1
redis.call('HSET', KEYS[1], 'node', ARGV[4], 'inc', ARGV[5], 'addr', ARGV[6], 'epoch', epoch)
return epoch
`)

// ownerHash is an owner hash as read: empty node when free.
type ownerHash struct{ node, inc, addr, epoch string }

func readOwner(vals []any) ownerHash {
	str := func(i int) string {
		if i < len(vals) {
			s, _ := vals[i].(string)
			return s
		}
		return ""
	}
	o := ownerHash{node: str(0), inc: str(1), addr: str(2), epoch: str(3)}
	if o.epoch == "" {
		o.epoch = "0"
	}
	return o
}

func (o ownerHash) owner(mine bool) actors.Owner {
	epoch, _ := strconv.ParseInt(o.epoch, 10, 64)
	return actors.Owner{Node: o.node, Addr: o.addr, Epoch: epoch, Mine: mine}
}

// holds reports whether member key value v is incarnation inc's.
func holds(v, inc string) bool { return inc != "" && strings.HasPrefix(v, inc+"|") }

// Claim makes this node the entity's owner if it has none or its owner is dead (epoch+1),
// keeps it if it is already this incarnation's (epoch unchanged), and otherwise returns the
// live owner with Mine false. An expelled member gets ErrExpelled, also when only Redis
// knows it yet.
//
// An owner whose member key is simply missing while the failover marker exists
// (failover.go) is not taken over: every member key may have expired during a Redis
// failover, and its node is probably about to rejoin; the caller is sent to it as if it
// were alive, and reaches it once it has (or finds it gone, and asks again).
func (m *Member) Claim(ctx context.Context, kind, id string) (actors.Owner, error) {
	if err := checkEntity(kind, id); err != nil {
		return actors.Owner{}, fmt.Errorf("redis: claim: %w", err)
	}
	o, err := run(ctx, m, func(ctx context.Context) (actors.Owner, error) { return m.claim(ctx, kind, id) })
	if errors.Is(err, errNotOurs) {
		return actors.Owner{}, fmt.Errorf("redis: claim %s %s: %w", kind, id, m.lapsed())
	}
	if err != nil {
		return actors.Owner{}, fmt.Errorf("redis: claim %s %s: %w", kind, id, err)
	}
	return o, nil
}

// errNotOurs: this node's member key does not hold its incarnation.
var errNotOurs = errors.New("member key not ours")

func (m *Member) claim(ctx context.Context, kind, id string) (actors.Owner, error) {
	ent := kind + ":" + id
	key := m.s.ownerKey(kind, id)
	for range claimRounds {
		var me *goredis.StringCmd
		var hm *goredis.SliceCmd
		_, err := m.s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
			me = p.Get(ctx, m.key)
			hm = p.HMGet(ctx, key, "node", "inc", "addr", "epoch")
			return nil
		})
		if err != nil && !errors.Is(err, goredis.Nil) {
			return actors.Owner{}, err
		}
		if v, _ := me.Result(); !holds(v, m.inc) {
			return actors.Owner{}, errNotOurs
		}
		o := readOwner(hm.Val())
		if o.node == m.node && o.inc == m.inc {
			return o.owner(true), nil
		}
		takeover := false
		if o.node != "" {
			alive, err := m.ownerAlive(ctx, o)
			if err != nil {
				return actors.Owner{}, err
			}
			if alive {
				return o.owner(false), nil
			}
			takeover = true
		} else {
			o.inc = "" // a released hash: only the epoch is left
		}
		// Listed as ours before it is: Leave then releases it even if we crash right
		// after the compare-and-set; an entry for something we did not get is taken
		// back below.
		if err := m.s.rc.SAdd(ctx, m.ownedKey, ent).Err(); err != nil {
			return actors.Owner{}, err
		}
		epoch, err := casOwner.Run(ctx, m.s.rc, []string{key}, o.node, o.inc, o.epoch, m.node, m.inc, m.addr).Int64()
		if err != nil {
			return actors.Owner{}, err
		}
		if epoch < 0 {
			if err := m.s.rc.SRem(ctx, m.ownedKey, ent).Err(); err != nil {
				return actors.Owner{}, err
			}
			continue
		}
		if takeover {
			m.s.stats.takeovers.Add(1)
			// The old owner's owned set is a gauge and Leave's list; its hash names us now,
			// so a late Leave of it would not release it anyway.
			m.s.rc.SRem(ctx, m.s.ownedKey(o.node), ent)
		}
		return actors.Owner{Node: m.node, Addr: m.addr, Epoch: epoch, Mine: true}, nil
	}
	return actors.Owner{}, fmt.Errorf("ownership of %s changed %d times while claiming it", ent, claimRounds)
}

// ownerAlive decides whether owner o (another incarnation) still holds the entity: its
// member key holds its incarnation, or the key is missing while the failover marker says
// the nodes are finding Redis again. Otherwise it marks o's incarnation taken over, which
// makes it dead for good, and reports false.
func (m *Member) ownerAlive(ctx context.Context, o ownerHash) (bool, error) {
	var v *goredis.StringCmd
	var marker *goredis.IntCmd
	_, err := m.s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
		v = p.Get(ctx, m.s.memberKey(o.node))
		marker = p.Exists(ctx, m.s.failoverKey)
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return false, err
	}
	val, verr := v.Result()
	if holds(val, o.inc) {
		return true, nil
	}
	if errors.Is(verr, goredis.Nil) && o.inc != "" && marker.Val() == 1 {
		return true, nil
	}
	if o.inc == "" {
		return false, nil
	}
	marked, err := markTaken.Run(ctx, m.s.rc, []string{m.s.memberKey(o.node), m.s.takenKey(o.node)},
		o.inc, ownerKeep).Int()
	if err != nil {
		return false, err
	}
	return marked == 0, nil
}

// Lookup returns the entity's live owner, if it has one, without claiming it.
func (m *Member) Lookup(ctx context.Context, kind, id string) (actors.Owner, bool, error) {
	if err := checkEntity(kind, id); err != nil {
		return actors.Owner{}, false, fmt.Errorf("redis: lookup: %w", err)
	}
	o, alive, err := run2(ctx, m, func(ctx context.Context) (ownerHash, bool, error) {
		vals, err := m.s.rc.HMGet(ctx, m.s.ownerKey(kind, id), "node", "inc", "addr", "epoch").Result()
		if err != nil {
			return ownerHash{}, false, err
		}
		o := readOwner(vals)
		if o.node == "" || o.inc == "" {
			return o, false, nil
		}
		v, err := m.s.rc.Get(ctx, m.s.memberKey(o.node)).Result()
		if errors.Is(err, goredis.Nil) {
			return o, false, nil
		}
		return o, holds(v, o.inc), err
	})
	if err != nil {
		return actors.Owner{}, false, fmt.Errorf("redis: lookup %s %s: %w", kind, id, err)
	}
	if !alive {
		return actors.Owner{}, false, nil
	}
	return o.owner(o.node == m.node && o.inc == m.inc), true, nil
}

// release clears the owner (keeping the epoch) only if it is still us (at that epoch, if
// one is given). KEYS: owner hash. ARGV: node, incarnation, epoch or "".
var release = goredis.NewScript(`
local o = redis.call('HMGET', KEYS[1], 'node', 'inc', 'epoch')
if o[1] ~= ARGV[1] or o[2] ~= ARGV[2] or (ARGV[3] ~= '' and o[3] ~= ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[1], 'node', 'inc', 'addr')
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
		n, err := release.Run(ctx, m.s.rc, []string{m.s.ownerKey(kind, id)}, m.node, m.inc, epoch).Int64()
		if err != nil {
			return 0, err
		}
		return n, m.s.rc.SRem(ctx, m.ownedKey, ent).Err()
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

// run2 is run for a function with two results.
func run2[T, U any](ctx context.Context, m *Member, fn func(context.Context) (T, U, error)) (T, U, error) {
	type pair struct {
		t T
		u U
	}
	p, err := run(ctx, m, func(ctx context.Context) (pair, error) {
		t, u, err := fn(ctx)
		return pair{t, u}, err
	})
	return p.t, p.u, err
}

// Compile-time check: a Member is the engine's view of the cluster.
var _ actors.Placement = (*Member)(nil)
