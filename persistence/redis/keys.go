package redis

import (
	"context"
	"hash/fnv"
	"strconv"

	goredis "github.com/redis/go-redis/v9"
)

// The store's key names (the package comment lists them). Each entity's keys carry the
// entity's id as their hash tag ({p}:room:{7} and {p}:audience:{7} share a slot), so a
// transaction or script over one entity is valid on a Redis Cluster, and the entities
// spread over every master. What lists the entities — the room and call indexes — is
// split into indexShards sets, each its own tag, so no single slot holds every id and
// LoadRooms reads a fixed number of sets instead of scanning.
//
// An entity and its index entry are in different slots, so they cannot change in one
// transaction. Writes keep one order instead: the index entry is added before the entity
// is stored, and removed after it is deleted. A crash in between leaves an index entry
// without its entity — which readers skip — and never an entity that LoadRooms cannot
// find.

// indexShards is the number of sets each index is split into: enough to spread them over
// the masters of a small Redis Cluster, few enough to read in one round trip.
const indexShards = 16

func (s *Store) userKey(id string) string   { return s.prefix + "user:{" + id + "}" }
func (s *Store) roomKey(id string) string   { return s.prefix + "room:{" + id + "}" }
func (s *Store) audKey(id string) string    { return s.prefix + "audience:{" + id + "}" }
func (s *Store) callKey(id string) string   { return s.prefix + "call:{" + id + "}" }
func (s *Store) reqKey(nonce string) string { return s.counterKey + ":req:" + nonce }

// roomsIndex and callsIndex name the index set that holds id.
func (s *Store) roomsIndex(id string) string { return s.roomsShards[indexShard(id)] }
func (s *Store) callsIndex(id string) string { return s.callsShards[indexShard(id)] }

func indexShard(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % indexShards)
}

func shardKeys(prefix, name, tag string) []string {
	keys := make([]string, indexShards)
	for i := range keys {
		keys[i] = prefix + name + ":{" + tag + strconv.Itoa(i) + "}"
	}
	return keys
}

// onCluster reports whether the store talks to a Redis Cluster.
func (s *Store) onCluster() bool {
	_, ok := s.rc.(*goredis.ClusterClient)
	return ok
}

// inOrder runs single-key commands so that each takes effect only after the ones before
// it: pipelined on one connection to one server (Redis runs a connection's commands in
// order), one round trip after another on a Redis Cluster, whose pipelines go to several
// masters at once.
func (s *Store) inOrder(ctx context.Context, steps ...func(p goredis.Pipeliner)) error {
	if !s.onCluster() {
		_, err := s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, step := range steps {
				step(p)
			}
			return nil
		})
		return err
	}
	for _, step := range steps {
		if _, err := s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
			step(p)
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// forEachMaster runs fn on every master: the one server, or each master of a Redis
// Cluster (concurrently) with a client of that master alone.
func (s *Store) forEachMaster(ctx context.Context, fn func(ctx context.Context, c goredis.UniversalClient, direct bool) error) error {
	if cc, ok := s.rc.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return fn(ctx, c, true) })
	}
	return fn(ctx, s.rc, false)
}

// The cluster's keys follow the same rule: every script and transaction touches one slot,
// on every Redis (one layout for one server, Sentinel and Cluster).
//
//   - A node's membership keys share the node's name as tag ({p}:member:{n1},
//     {p}:owned:{n1}, {p}:taken:{n1}), so join, renew, rejoin and the takeover mark are
//     one script each in that slot.
//   - An entity's owner hash (the fence token) carries the entity's id as tag
//     ({p}:owner:room:{7}), the slot of the entity's own keys and — a room's topic being
//     its id — of its topic's seq, history and channel: the fenced write checks the owner
//     and writes the entity in one script, and the push script checks the owner and numbers
//     the push in one script.
//   - The due set and the fence epochs of what is written to it and to the room-change
//     feed share the feed's slot (dueTag), so one script keeps the due set and the feed in
//     step with the fenced writes (fenced.go).

func (s *Store) memberKey(node string) string    { return s.memberPrefix + "{" + node + "}" }
func (s *Store) ownedKey(node string) string     { return s.ownedPrefix + "{" + node + "}" }
func (s *Store) takenKey(node string) string     { return s.takenPrefix + "{" + node + "}" }
func (s *Store) ownerKey(kind, id string) string { return s.ownerPrefix + kind + ":{" + id + "}" }

// feedTag is a hash tag whose slot is the feed's ({p}:feed has no braces: it hashes
// whole), so the due set and the epochs hash can be written in one script with the feed.
func feedTag(feedKey string) string { return slotTags()[keySlot(feedKey)] }
