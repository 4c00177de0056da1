package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// A Redis failover (Sentinel promoting a replica) or a restart of Redis in place takes a
// few seconds. If it takes longer than memberTTL since a node's last renewal, every member
// key has expired by the time Redis answers again, and every node would find itself
// expelled at once and exit: one failover would restart the whole cluster. Yet nothing
// happened to the nodes, and nothing they own was touched: only their keys expired.
//
// So a member whose key is missing may rejoin under its own incarnation when all of this
// holds, checked in one script:
//
//   - it was cut off from Redis: a renewal failed since its last successful one, and that
//     one was sent less than FailoverGrace ago (a frozen process that failed no renewal is
//     expelled as before, so is one that was away longer);
//   - no other incarnation holds its name;
//   - none of its entities was taken over: a takeover writes {p}:taken:{node} = the
//     incarnation it took from, and that incarnation can never rejoin.
//
// Its actors' state is then still what the store holds (only an owner writes, fenced), so
// it carries on. To keep the others from taking its entities over while it finds Redis
// again, the first node that recovers from the outage (a renewal or a rejoin after failed
// ones) sets {p}:failover for FailoverGrace; meanwhile claim does not take over an owner
// whose key is merely missing, it sends the caller to that owner, whose peer answers
// "retry" until it has rejoined. A node that really died during the outage is taken over
// once the marker expires: its rooms wait up to FailoverGrace longer.
//
// While its key is missing a member does not act (its lease has lapsed: it could not renew
// during the outage); a script that finds the key missing in that state lapses the lease
// instead of expelling the member, and the next renewal decides.

// rejoin re-creates the member key under the same incarnation, if allowed (above). The
// member key and the taken key share the node's slot, so "not taken over" and "rejoined"
// are one step: once a takeover marked the incarnation (ownership.go, markTaken), it can
// never rejoin, and a rejoin that came first makes the takeover find the member alive.
// KEYS: member key, taken key. ARGV: value (incarnation|addr), ttl ms, incarnation.
// Returns 1 (rejoined) or 0 (expelled).
var rejoinScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// mayRejoin reports whether the member was cut off from Redis (a renewal failed) within
// the grace since its last successful renewal.
func (m *Member) mayRejoin() bool {
	return m.grace > 0 && m.failing.Load() && m.mono()-time.Duration(m.lastOK.Load()) < m.grace
}

// rejoin tries to rejoin after the renewal sent at sent found the key gone. It returns
// false with a nil error when the member may not rejoin (it is expelled), and an error
// when Redis could not be asked (the next renewal tries again).
func (m *Member) rejoin(ctx context.Context, sent time.Duration) (bool, error) {
	if !m.mayRejoin() {
		return false, nil
	}
	ok, err := rejoinScript.Run(ctx, m.s.rc, []string{m.key, m.s.takenKey(m.node)},
		m.inc+"|"+m.addr, m.ttl.Milliseconds(), m.inc).Int()
	if err != nil {
		return false, fmt.Errorf("redis: rejoin %s: %w", m.node, err)
	}
	if ok == 0 {
		return false, nil
	}
	// Listed again, and the marker raised (NX: the first node back sets it), so the
	// others do not take over members still on their way back.
	if err := m.listed(ctx, true); err != nil {
		return false, fmt.Errorf("redis: rejoin %s: %w", m.node, err)
	}
	m.rejoins.Add(1)
	m.s.log.Warn("cluster membership restored after Redis came back: this node's key had expired while Redis was away, nothing it owned was taken over, so it carries on",
		"node", m.node, "away", (m.mono() - time.Duration(m.lastOK.Load())).Round(time.Millisecond))
	m.renewed(sent)
	return true, nil
}

// lapsed is what a script that found this member's key not ours means: expelled, unless
// it may still rejoin after a failover, when only its lease ends (it stops acting until a
// renewal decides). It returns the error to wrap.
func (m *Member) lapsed() error {
	if m.mayRejoin() {
		m.leaseUntil.Store(0)
		return ErrNotMemberYet
	}
	m.expelled.Store(true)
	return ErrExpelled
}

// ErrNotMemberYet is returned while a member that lost its key during a Redis outage has
// not rejoined yet: the caller answers as when the lease lapsed ("retry").
var ErrNotMemberYet = errors.New("not a cluster member until Redis confirms the membership again")

// Rejoins counts the times this member rejoined after a Redis outage.
func (m *Member) Rejoins() int64 { return m.rejoins.Load() }
