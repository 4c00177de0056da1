package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Membership is the cluster's only failure detector: a node is alive exactly while its key
// {p}:member:{node} exists and holds its incarnation. Ownership (ownership.go) and every
// fenced write (fenced.go) check that same key inside the same Lua script, so a node the
// others consider dead can neither claim nor write: there is no second opinion to disagree
// with the fence.

// ErrNodeNameTaken is returned by Join when a live member already has the name.
var ErrNodeNameTaken = errors.New("node name taken by a live member")

// ErrExpelled is returned by every call on a Member whose key expired or was taken over
// (the cluster declared it dead). It never recovers: its entities may have moved, so the
// node must stop acting and join again as a new member.
var ErrExpelled = errors.New("expelled from the cluster: membership lapsed")

// ErrLeft is returned by every call on a Member after Leave.
var ErrLeft = errors.New("left the cluster")

// monoOrigin anchors the default monotonic clock: time.Since reads the monotonic reading
// of both times, which keeps running while the process is stopped (SIGSTOP), unlike what
// the process itself could count.
var monoOrigin = time.Now()

func monoNow() time.Duration { return time.Since(monoOrigin) }

// Member is this node's membership, and its view of ownership (it implements
// actors.Placement, see ownership.go). Join makes it the Store's identity for fenced
// writes. Methods are safe for concurrent use.
type Member struct {
	s        *Store
	node     string
	inc      string
	addr     string
	ttl      time.Duration
	key      string // {p}:member:{node}
	ownedKey string // {p}:owned:{node}

	expelled atomic.Bool
	left     atomic.Bool

	// mono reads the monotonic clock; a field so a test can simulate a freeze.
	mono func() time.Duration
	// leaseUntil is the mono reading until which LeaseValid holds.
	leaseUntil atomic.Int64

	// What failover.go needs to tell a Redis failover from an expulsion: the send time
	// of the last successful renewal (or of Join), and whether a renewal has failed
	// since (Redis unreachable).
	grace   time.Duration
	lastOK  atomic.Int64
	failing atomic.Bool
	rejoins atomic.Int64
}

// MemberInfo is one live member as Members lists it.
type MemberInfo struct {
	Node string `json:"node"`
	Addr string `json:"addr"`
}

// join creates the member key only if no live member has the name. The new incarnation's
// owned set starts empty: what an earlier incarnation of the name owned is not this one's
// (its owner hashes name the dead incarnation, and any node may take them over). Both keys
// are in the node's slot; the name joins {p}:members in a second step (a renewal adds it
// again, so a crash in between only delays it).
// KEYS: member key, owned key. ARGV: value, ttl ms.
var join = goredis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('GET', KEYS[1]) or ''
end
redis.call('DEL', KEYS[2])
return false
`)

// Join makes this node a member named node, listening for the other nodes at addr, alive
// while it renews within ttl (Run). A name held by a live member is refused with an error
// wrapping ErrNodeNameTaken. The returned Member becomes the Store's identity for fenced
// writes, replacing any earlier one (a node that was expelled joins again).
func (s *Store) Join(ctx context.Context, node, addr string, ttl time.Duration) (*Member, error) {
	if node == "" {
		return nil, errors.New("redis: join: empty node name")
	}
	if ttl < 4*time.Millisecond {
		return nil, fmt.Errorf("redis: join %s: ttl %v too short", node, ttl)
	}
	inc, err := newNonce()
	if err != nil {
		return nil, fmt.Errorf("redis: join %s: %w", node, err)
	}
	m := &Member{
		s: s, node: node, inc: inc, addr: addr, ttl: ttl,
		key:      s.memberKey(node),
		ownedKey: s.ownedKey(node),
		mono:     monoNow,
		grace:    s.opts.FailoverGrace,
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: join %s: %w", node, err)
	}
	defer cancel()
	sent := m.mono()
	held, err := join.Run(ctx, s.rc, []string{m.key, m.ownedKey}, inc+"|"+addr, ttl.Milliseconds()).Text()
	switch {
	case errors.Is(err, goredis.Nil):
	case err != nil:
		return nil, fmt.Errorf("redis: join %s: %w", node, err)
	default:
		_, holder, _ := strings.Cut(held, "|")
		return nil, fmt.Errorf("redis: join %s: %w (held by the member at %s)", node, ErrNodeNameTaken, holder)
	}
	m.extendLease(sent)
	m.lastOK.Store(int64(sent))
	s.member.Store(m)
	if err := s.rc.SAdd(ctx, s.membersKey, node).Err(); err != nil {
		s.log.Warn("cluster membership: not listed in the members set yet; the next renewal lists it", "node", node, "err", err)
	}
	return m, nil
}

// Node is this node's name.
func (m *Member) Node() string { return m.node }

// Incarnation identifies this membership: a node that joins again under the same name is
// another incarnation, and nothing owned by the old one is the new one's.
func (m *Member) Incarnation() string { return m.inc }

// Addr is where this node listens for the other nodes.
func (m *Member) Addr() string { return m.addr }

// TTL is the membership's time to live.
func (m *Member) TTL() time.Duration { return m.ttl }

// leaseMargin is what LeaseValid takes off the ttl. Redis starts the key's ttl when it runs
// the renew, after we sent it, so our lease (counted from the send) already ends before the
// key does; the margin also covers the two clocks ticking at slightly different rates and
// the time between checking LeaseValid and the action it guards.
func (m *Member) leaseMargin() time.Duration { return m.ttl / 5 }

// LeaseValid reports, by this process's monotonic clock and without asking Redis, whether
// the membership still holds: now < (send time of the last successful renew, or of Join)
// + ttl − ttl/5. A node resumed after a freeze longer than that (SIGSTOP/SIGCONT) sees
// false at once, before any Redis call tells it that it was expelled; it must not act
// until a renew succeeds (and if the key expired meanwhile, none ever will).
func (m *Member) LeaseValid() bool {
	if m.gone() != nil {
		return false
	}
	return m.mono() < time.Duration(m.leaseUntil.Load())
}

// extendLease moves the lease to sent + ttl − margin unless it already reaches further
// (renews may finish out of order).
func (m *Member) extendLease(sent time.Duration) {
	until := int64(sent + m.ttl - m.leaseMargin())
	for {
		cur := m.leaseUntil.Load()
		if until <= cur || m.leaseUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// gone returns ErrLeft or ErrExpelled once either happened.
func (m *Member) gone() error {
	if m.left.Load() {
		return ErrLeft
	}
	if m.expelled.Load() {
		return ErrExpelled
	}
	return nil
}

// renew extends the key only while it still holds our incarnation: once it expired,
// another node may have joined under the name, and this one must not revive it (but see
// rejoin in failover.go). KEYS: member key. ARGV: incarnation, ttl ms.
//
// After a renewal the node lists its name in {p}:members again (Members drops dead names,
// and may drop a live one it raced with), and a member that found Redis again after
// renewals failed raises the failover marker, so that no member is taken over while the
// others find Redis again: both are keys of other slots, written in a second step.
var renew = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// Renew extends the membership by ttl. If the key expired (or holds another incarnation)
// the member is expelled — unless it may rejoin after a Redis failover (failover.go): this
// and every later call then returns an error wrapping ErrExpelled.
func (m *Member) Renew(ctx context.Context) error {
	if err := m.gone(); err != nil {
		return fmt.Errorf("redis: renew %s: %w", m.node, err)
	}
	if err := m.s.check(ctx); err != nil {
		return fmt.Errorf("redis: renew %s: %w", m.node, err)
	}
	// A renewal may take longer than a store call (redis.timeout) before it is given up:
	// the lease counts from when it was sent, so a slow answer still extends it, and on a
	// loaded machine a renewal cut short is what would get a healthy node declared dead.
	// A renewal is the failure detector: it must reach Redis the moment Redis is back,
	// not a breaker's second later (that second can exceed redis.failoverGrace).
	ctx, cancel := context.WithTimeout(pastBreaker(ctx), max(m.s.timeout, m.ttl/4))
	defer cancel()
	sent := m.mono()
	recovering := "0"
	if m.failing.Load() {
		recovering = "1"
	}
	ok, err := renew.Run(ctx, m.s.rc, []string{m.key}, m.inc, m.ttl.Milliseconds()).Int()
	if err != nil {
		m.failing.Store(true)
		return fmt.Errorf("redis: renew %s: %w", m.node, err)
	}
	if ok == 0 {
		if rejoined, err := m.rejoin(ctx, sent); rejoined || err != nil {
			return err
		}
		m.expelled.Store(true)
		return fmt.Errorf("redis: renew %s: %w", m.node, ErrExpelled)
	}
	m.renewed(sent)
	if err := m.listed(ctx, recovering == "1"); err != nil {
		// The renewal counts (the key was extended); the marker after an outage is raised
		// by the next renewal instead.
		if recovering == "1" {
			m.failing.Store(true)
		}
		return fmt.Errorf("redis: renew %s: list the member: %w", m.node, err)
	}
	return nil
}

// listed puts the node's name in {p}:members and, after an outage (recovering), raises
// the failover marker for the grace unless another node did (failover.go).
func (m *Member) listed(ctx context.Context, recovering bool) error {
	_, err := m.s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.SAdd(ctx, m.s.membersKey, m.node)
		if recovering && m.grace > 0 {
			p.SetNX(ctx, m.s.failoverKey, "1", m.grace)
		}
		return nil
	})
	return err
}

// renewed records a successful renewal (or rejoin) sent at sent.
func (m *Member) renewed(sent time.Duration) {
	m.failing.Store(false)
	m.lastOK.Store(int64(sent))
	m.extendLease(sent)
}

// Run renews the membership every ttl/4 until ctx ends or the member is expelled, when it
// calls onExpelled (if not nil) once and returns. Other errors (Redis briefly away) are
// logged and retried on the next tick: three more chances before the key expires.
func (m *Member) Run(ctx context.Context, onExpelled func()) {
	every := m.ttl / 4
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := m.Renew(ctx)
		// After a failed renewal the next one goes out soon rather than a full period later.
		next := every
		if err != nil {
			next = every / 4
		}
		t.Reset(next)
		switch {
		case err == nil:
		case errors.Is(err, ErrExpelled):
			m.s.log.Error("cluster membership lapsed: this node was declared dead", "node", m.node)
			if onExpelled != nil {
				onExpelled()
			}
			return
		case errors.Is(err, ErrLeft) || ctx.Err() != nil:
			return
		default:
			m.s.log.Warn("cluster membership renew failed; retrying", "node", m.node, "err", err)
		}
	}
}

// Leave releases every entity this incarnation owns (keeping their epochs), then removes
// the member key, so no other node sees the member gone while it still owns something.
// The owner hashes are in their entities' slots, so it goes in steps: check that the key
// is still ours (expelled: the owned set may be a new incarnation's, touch nothing), read
// the owned set, release each owner hash that still names this incarnation (release
// below), then delete the owned set and the member key in one script that checks the key
// again, and drop the name from {p}:members. A crash in between leaves entities released
// early, which the next message claims anyway, or a member key that expires.

// leave deletes the owned set and the member key if the key is still ours.
// KEYS: member key, owned key. ARGV: incarnation. Returns 1, or -1 when not ours.
var leave = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return -1 end
redis.call('DEL', KEYS[2], KEYS[1])
return 1
`)

// Leave hands every owned entity back (the next message for each activates it on another
// node at once) and ends the membership. Later calls return ErrLeft.
func (m *Member) Leave(ctx context.Context) error {
	if err := m.gone(); err != nil {
		return fmt.Errorf("redis: leave %s: %w", m.node, err)
	}
	ctx, cancel, err := m.s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: leave %s: %w", m.node, err)
	}
	defer cancel()
	v, err := m.s.rc.Get(ctx, m.key).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return fmt.Errorf("redis: leave %s: %w", m.node, err)
	}
	if !strings.HasPrefix(v, m.inc+"|") {
		m.expelled.Store(true)
		return fmt.Errorf("redis: leave %s: %w", m.node, ErrExpelled)
	}
	owned, err := m.s.rc.SMembers(ctx, m.ownedKey).Result()
	if err != nil {
		return fmt.Errorf("redis: leave %s: %w", m.node, err)
	}
	_, err = m.s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, e := range owned {
			kind, id, _ := strings.Cut(e, ":")
			release.Eval(ctx, p, []string{m.s.ownerKey(kind, id)}, m.node, m.inc, "")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis: leave %s: release: %w", m.node, err)
	}
	n, err := leave.Run(ctx, m.s.rc, []string{m.key, m.ownedKey}, m.inc).Int()
	if err != nil {
		return fmt.Errorf("redis: leave %s: %w", m.node, err)
	}
	if n < 0 {
		m.expelled.Store(true)
		return fmt.Errorf("redis: leave %s: %w", m.node, ErrExpelled)
	}
	m.left.Store(true)
	m.s.member.CompareAndSwap(m, nil)
	if err := m.s.rc.SRem(ctx, m.s.membersKey, m.node).Err(); err != nil {
		m.s.log.Warn("cluster leave: name left in the members set (dropped when next listed)", "node", m.node, "err", err)
	}
	return nil
}

// Members returns the live members ordered by node name: the names in {p}:members whose
// member key exists. It drops the dead names from the set; a node that joined in between
// may be dropped with them, and its next renewal lists it again.
func (s *Store) Members(ctx context.Context) ([]MemberInfo, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: members: %w", err)
	}
	defer cancel()
	names, err := s.rc.SMembers(ctx, s.membersKey).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: members: %w", err)
	}
	gets := make([]*goredis.StringCmd, len(names))
	_, err = s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, n := range names {
			gets[i] = p.Get(ctx, s.memberKey(n))
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: members: %w", err)
	}
	out := make([]MemberInfo, 0, len(names))
	var dead []any
	for i, n := range names {
		v, err := gets[i].Result()
		if errors.Is(err, goredis.Nil) {
			dead = append(dead, n)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("redis: members: %w", err)
		}
		_, addr, _ := strings.Cut(v, "|")
		out = append(out, MemberInfo{Node: n, Addr: addr})
	}
	if len(dead) > 0 {
		s.rc.SRem(ctx, s.membersKey, dead...)
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}
