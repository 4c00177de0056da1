// Package redis is the actors.Store for production and the cluster: every node of a
// deployment talks to one Redis, so user ids are unique across nodes and any node can load
// any room.
//
// Keys, all under Options.KeyPrefix + ":" ({p} below). Braces are literal: they are the
// hash tags that decide a key's slot on a Redis Cluster, so an entity's keys share one
// slot and the entities spread over the masters (keys.go):
//
//	{p}:user:{nextid}      INCR counter of user ids; survives Reset
//	{p}:user:{nextid}:req:NONCE  short-lived marker that makes a retried CreateUser
//	                       return the id its first attempt allocated (the counter's slot)
//	{p}:user:{ID}          hash {name}
//	{p}:room:{ID}          JSON of actors.Room
//	{p}:audience:{ID}      hash uid -> JSON of actors.User, of room ID
//	{p}:rooms:{rN}         N = 0..15: set of the ids of stored rooms whose FNV-1a hash is
//	                       N mod 16 (an index shard), so LoadRooms needs no SCAN
//	{p}:call:{ID}          JSON of actors.Call
//	{p}:calls:{cN}         N = 0..15: the calls' index shards, as the rooms'
//	{p}:layout             "2": the keys above are in this layout; before it, the same
//	                       data had no braces and one set per index (migrate.go)
//	{p}:once:KEY           FirstSeen's markers (once.go)
//	{p}:replicated[:{T}]   redis.waitReplicas's marker write (replicawait.go)
//
// and, when nodes form a cluster (membership.go, ownership.go, fenced.go, due.go,
// reservations.go say why each exists; every script touches one slot, keys.go):
//
//	{p}:member:{NODE}      "INCARNATION|ADDR" with a TTL: the node is alive while it exists
//	{p}:owned:{NODE}       set of "KIND:ID" the node's current incarnation owns
//	{p}:taken:{NODE}       the incarnation of NODE last taken over: it may never rejoin
//	{p}:members            set of node names that joined (dead ones are dropped lazily)
//	{p}:owner:KIND:{ID}    hash {node, inc, addr, epoch}: who acts for a room or call (the
//	                       fence token, in the entity's slot)
//	{p}:feed               stream of room changes {k: room|roomdel, id, v: JSON}
//	{p}:due:{T}            zset "KIND:ID" -> unix ms of its next deadline; T is a tag whose
//	                       slot is {p}:feed's (keys.go)
//	{p}:fences:{T}         hash "KIND:ID" -> the fence epoch that last wrote its deadline
//	                       and feed entry (fenced.go); {p}:fencesgone:{T} zset of the deleted
//	                       ones by deletion time, forgotten after a day
//	{p}:busy:room:ID       id of the call the room is reserved for (each busy key hashes
//	{p}:busy:user:UID      whole: its own slot)
//	{p}:failover           present for redis.failoverGrace after nodes found Redis again
//	                       after an outage: no member is taken over meanwhile (failover.go)
//
// A nil error means Redis acknowledged the write; it is durable only as far as the server is
// configured to make it so (appendonly yes, appendfsync always, as the tests run it).
//
// Two prefixes must not nest ("mns" and "mns:a"): the keys of the second are under the
// first's namespace, and the first's Reset("") would wipe them.
package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// Defaults applied by Open to zero Options fields.
const (
	DefaultAddr      = "localhost:6379"
	DefaultKeyPrefix = "mns"
	DefaultTimeout   = 500 * time.Millisecond
)

// batchSize bounds the keys of one MGET, one SCAN step and one DEL, so no single command
// blocks Redis (single-threaded) for long, however many rooms there are.
const batchSize = 500

// reqMarkerTTL is how long a CreateUser's marker lives: far longer than any retry of the
// call, short enough not to pile up.
const reqMarkerTTL = 60

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("redis: store is closed")

// Options configures Open. Only Addr is usually needed.
type Options struct {
	Addr     string // host:port, default DefaultAddr
	Username string // ACL user (Redis 6+), empty for the default user
	Password string // AUTH password, empty for none; never appears in errors
	// TLS makes the connections TLS (nil: plain TCP).
	TLS *tls.Config
	DB  int // database number (SELECT)
	// KeyPrefix namespaces every key (default DefaultKeyPrefix, the old server's prefix).
	KeyPrefix string
	// Timeout bounds each call (each round trip for LoadRooms and Reset(""), which may
	// need several) unless the caller's context ends sooner. Default DefaultTimeout.
	Timeout time.Duration
	// Logger receives what a background loop (Member.Run) cannot return: transient
	// errors it retries. Nil discards them.
	Logger *slog.Logger

	// SentinelMaster, when set, finds the primary through the sentinels at SentinelAddrs
	// (Addr is then unused) and follows it across failovers.
	SentinelMaster   string
	SentinelAddrs    []string
	SentinelPassword string // never appears in errors
	// FailoverGrace: a member whose key vanished while Redis was unreachable for less
	// than this rejoins instead of being expelled (failover.go). 0 turns it off.
	FailoverGrace time.Duration
	// WaitReplicas > 0 acknowledges a write only once that many replicas have it
	// (replicawait.go); a write they do not confirm within Timeout fails with
	// ErrNotReplicated.
	WaitReplicas int
	// BreakerFailures consecutive outages (no connection, no answer within Timeout, a
	// server loading or demoted) open the store's circuit breaker: every call then fails
	// at once with ErrUnavailable for BreakerOpen, after which one probe call is let
	// through (breaker.go). Defaults DefaultBreakerFailures and DefaultBreakerOpen.
	BreakerFailures int
	BreakerOpen     time.Duration
	// OnBreakerChange, if set, is called with the breaker's old and new state ("closed",
	// "half-open", "open"), e.g. to export a gauge. It must be quick.
	OnBreakerChange func(from, to string)
	// ClusterAddrs, when set, are seed nodes of a Redis Cluster (Addr, DB and the
	// sentinel fields are then unused). Cluster mode (Join) is refused there.
	ClusterAddrs []string
}

// Store is the Redis-backed actors.Store. Methods are safe for concurrent use.
//
// If a call's context ends or Redis stops answering while a write is in flight, the method
// returns an error but Redis may still have applied the write: the caller must treat the
// outcome as unknown. A call whose context has already ended sends nothing.
type Store struct {
	// rc is the store's client: a ClusterClient on a Redis Cluster.
	rc      goredis.UniversalClient
	timeout time.Duration
	closed  atomic.Bool

	prefix      string // KeyPrefix + ":"; the cluster's keys (push feed) are built from it
	counterKey  string
	layoutKey   string
	roomsShards []string // the index shards of rooms (keys.go)
	callsShards []string
	scanPattern string // every key under prefix, glob-escaped

	// Cluster keys (see the package comment).
	memberPrefix   string // + node
	membersKey     string
	ownerPrefix    string // + kind:id
	ownedPrefix    string // + node
	dueKey         string // {p}:due:{T}, T a tag of the feed's slot (keys.go)
	fencesKey      string // {p}:fences:{T}: the fence epochs behind the due set and the feed
	goneKey        string // {p}:fencesgone:{T}: when each deleted entity's epoch goes
	feedKey        string
	busyRoomPrefix string // + room id
	busyUserPrefix string // + uid
	failoverKey    string // failover.go
	takenPrefix    string // + node

	breakers *breakerSet
	log      *slog.Logger
	opts     Options // as Open completed them: what a connection of the store's own is made from
	// member is this node's current membership: the identity fenced writes are checked
	// against (set by Join).
	member atomic.Pointer[Member]
	stats  clusterCounters
}

// Open connects to Redis and checks that it answers within Options.Timeout.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.BreakerFailures <= 0 {
		opts.BreakerFailures = DefaultBreakerFailures
	}
	if opts.BreakerOpen <= 0 {
		opts.BreakerOpen = DefaultBreakerOpen
	}
	if len(opts.ClusterAddrs) > 0 && strings.ContainsAny(opts.KeyPrefix, "{}") {
		return nil, fmt.Errorf("redis: key prefix %q: { and } would override the store's hash tags on a Redis Cluster", opts.KeyPrefix)
	}
	// The breakers go first (outermost), so they see what the replica wait made of a write.
	breakers := newBreakerSet(opts.BreakerFailures, opts.BreakerOpen, opts.Timeout*9/10, opts.OnBreakerChange)
	rc := newUniversalClient(opts, connSettings{breakers: breakers})
	if opts.WaitReplicas > 0 {
		rc.AddHook(&replicaWait{rdb: rc, replicas: opts.WaitReplicas, timeout: opts.Timeout,
			markKey: opts.KeyPrefix + ":replicated"})
	}
	p := opts.KeyPrefix + ":"
	s := &Store{
		rc:          rc,
		breakers:    breakers,
		timeout:     opts.Timeout,
		prefix:      p,
		counterKey:  p + "user:{nextid}",
		layoutKey:   p + "layout",
		roomsShards: shardKeys(p, "rooms", "r"),
		callsShards: shardKeys(p, "calls", "c"),
		scanPattern: globEscape(p) + "*",

		memberPrefix:   p + "member:",
		membersKey:     p + "members",
		ownerPrefix:    p + "owner:",
		ownedPrefix:    p + "owned:",
		dueKey:         p + "due:{" + feedTag(p+"feed") + "}",
		fencesKey:      p + "fences:{" + feedTag(p+"feed") + "}",
		goneKey:        p + "fencesgone:{" + feedTag(p+"feed") + "}",
		feedKey:        p + "feed",
		busyRoomPrefix: p + "busy:room:",
		busyUserPrefix: p + "busy:user:",
		failoverKey:    p + "failover",
		takenPrefix:    p + "taken:",

		log:  opts.Logger,
		opts: opts,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.ping(ctx); err != nil {
		rc.Close()
		return nil, fmt.Errorf("redis: open %s: %w", opts.Where(), err)
	}
	if err := s.migrateLayout(ctx); err != nil {
		rc.Close()
		return nil, fmt.Errorf("redis: open %s: %w", opts.Where(), err)
	}
	if err := s.migrateDue(ctx); err != nil {
		rc.Close()
		return nil, fmt.Errorf("redis: open %s: %w", opts.Where(), err)
	}
	return s, nil
}

// Close closes the connections. Later calls return ErrClosed; Close itself may be called
// again and returns nil.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.rc.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// Ping sends PING.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.ping(ctx); err != nil {
		return fmt.Errorf("redis: ping: %w", err)
	}
	return nil
}

func (s *Store) ping(ctx context.Context) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return s.rc.Ping(ctx).Err()
}

// createUser allocates the id and stores the user in one step, so a crash can never leave
// an allocated id without its user or the reverse. KEYS[1] is the counter, KEYS[2] the
// call's marker; ARGV are the user key up to the id ("{p}:user:{"), the name and the
// marker's TTL. The user key is derived from the new id inside the script, which only one
// server allows (on a Redis Cluster it is in another slot): CreateUser uses allocUserID
// there.
//
// go-redis retries a command whose connection broke, and the first attempt may have run:
// the marker makes the retry return that attempt's id instead of allocating another.
var createUser = goredis.NewScript(`
local id = redis.call('GET', KEYS[2])
if id then return id end
id = redis.call('INCR', KEYS[1])
redis.call('HSET', ARGV[1] .. id .. '}', 'name', ARGV[2])
redis.call('SET', KEYS[2], id, 'EX', ARGV[3])
return tostring(id)
`)

// allocUserID is createUser's first half, for a Redis Cluster: it allocates the id (with
// the marker, in the counter's slot) and CreateUser stores the user in its own slot next.
// KEYS[1] is the counter, KEYS[2] the call's marker; ARGV[1] is the marker's TTL.
var allocUserID = goredis.NewScript(`
local id = redis.call('GET', KEYS[2])
if id then return id end
id = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], id, 'EX', ARGV[1])
return tostring(id)
`)

// CreateUser allocates the next id from the shared counter, so ids are unique across every
// node using the same Redis and prefix, and stores the user under it: in one script on one
// server. On a Redis Cluster the user is in its own slot, not the counter's, so the two are
// separate steps there: a failure between them leaves an id that no user has (never one
// handed out twice), and the call fails.
func (s *Store) CreateUser(ctx context.Context, name string) (actors.User, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return actors.User{}, fmt.Errorf("redis: create user: %w", err)
	}
	defer cancel()
	nonce, err := newNonce()
	if err != nil {
		return actors.User{}, fmt.Errorf("redis: create user: %w", err)
	}
	keys := []string{s.counterKey, s.reqKey(nonce)}
	if !s.onCluster() {
		id, err := createUser.Run(ctx, s.rc, keys, s.prefix+"user:{", name, reqMarkerTTL).Text()
		if err != nil {
			return actors.User{}, fmt.Errorf("redis: create user: %w", err)
		}
		return actors.User{ID: id, Name: name}, nil
	}
	id, err := allocUserID.Run(ctx, s.rc, keys, reqMarkerTTL).Text()
	if err != nil {
		return actors.User{}, fmt.Errorf("redis: create user: %w", err)
	}
	if err := s.rc.HSet(ctx, s.userKey(id), "name", name).Err(); err != nil {
		return actors.User{}, fmt.Errorf("redis: create user %s: %w", id, err)
	}
	return actors.User{ID: id, Name: name}, nil
}

// GetUser returns an error wrapping actors.ErrNotFound for an unknown id. Ids are canonical
// decimals; anything else is unknown without asking Redis (and cannot name the counter).
func (s *Store) GetUser(ctx context.Context, id string) (actors.User, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return actors.User{}, fmt.Errorf("redis: get user %s: %w", id, err)
	}
	defer cancel()
	if !actors.IsDecimalID(id) {
		return actors.User{}, fmt.Errorf("user %q: %w", id, actors.ErrNotFound)
	}
	name, err := s.rc.HGet(ctx, s.userKey(id), "name").Result()
	if errors.Is(err, goredis.Nil) {
		return actors.User{}, fmt.Errorf("user %s: %w", id, actors.ErrNotFound)
	}
	if err != nil {
		return actors.User{}, fmt.Errorf("redis: get user %s: %w", id, err)
	}
	return actors.User{ID: id, Name: name}, nil
}

// SaveRoom stores the snapshot as JSON with its times in UTC, after adding its id to its
// index shard (keys.go says why in that order).
func (s *Store) SaveRoom(ctx context.Context, room actors.Room) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: save room %s: %w", room.ID, err)
	}
	defer cancel()
	if room.ID == "" {
		return errors.New("redis: save room: empty room id")
	}
	room.CreateTime = room.CreateTime.UTC()
	room.NoPublishDeadline = room.NoPublishDeadline.UTC()
	room.TopicDeleteDeadline = room.TopicDeleteDeadline.UTC()
	val, err := json.Marshal(room)
	if err != nil {
		return fmt.Errorf("redis: save room %s: %w", room.ID, err)
	}
	if f, ok := actors.FenceOf(ctx); ok {
		if err := s.fencedSaveRoom(ctx, f, room, val); err != nil {
			return fmt.Errorf("redis: save room %s: %w", room.ID, err)
		}
		return nil
	}
	err = s.inOrder(ctx,
		func(p goredis.Pipeliner) { p.SAdd(ctx, s.roomsIndex(room.ID), room.ID) },
		func(p goredis.Pipeliner) { p.Set(ctx, s.roomKey(room.ID), val, 0) })
	if err != nil {
		return fmt.Errorf("redis: save room %s: %w", room.ID, err)
	}
	return nil
}

// DeleteRoom removes the room and its audience in one command, then its index entry. An
// unknown room is not an error.
func (s *Store) DeleteRoom(ctx context.Context, roomID string) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: delete room %s: %w", roomID, err)
	}
	defer cancel()
	if roomID == "" {
		return errors.New("redis: delete room: empty room id")
	}
	if f, ok := actors.FenceOf(ctx); ok {
		if err := s.fencedDeleteRoom(ctx, f, roomID); err != nil {
			return fmt.Errorf("redis: delete room %s: %w", roomID, err)
		}
		return nil
	}
	if err := s.deleteRoom(ctx, roomID); err != nil {
		return fmt.Errorf("redis: delete room %s: %w", roomID, err)
	}
	return nil
}

func (s *Store) deleteRoom(ctx context.Context, roomID string) error {
	return s.inOrder(ctx,
		func(p goredis.Pipeliner) { p.Del(ctx, s.roomKey(roomID), s.audKey(roomID)) },
		func(p goredis.Pipeliner) { p.SRem(ctx, s.roomsIndex(roomID), roomID) })
}

// LoadRooms returns every room in the room set, ordered by id.
func (s *Store) LoadRooms(ctx context.Context) ([]actors.Room, error) {
	rooms, err := loadSet[actors.Room](ctx, s, s.roomsShards, s.roomKey)
	if err != nil {
		return nil, fmt.Errorf("redis: load rooms: %w", err)
	}
	return rooms, nil
}

// SaveCall stores the call snapshot as JSON after adding its id to its index shard.
func (s *Store) SaveCall(ctx context.Context, call actors.Call) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: save call %s: %w", call.ID, err)
	}
	defer cancel()
	if call.ID == "" {
		return errors.New("redis: save call: empty call id")
	}
	call.CreateTime = call.CreateTime.UTC()
	val, err := json.Marshal(call)
	if err != nil {
		return fmt.Errorf("redis: save call %s: %w", call.ID, err)
	}
	if f, ok := actors.FenceOf(ctx); ok {
		if err := s.fencedSaveCall(ctx, f, call, val); err != nil {
			return fmt.Errorf("redis: save call %s: %w", call.ID, err)
		}
		return nil
	}
	err = s.inOrder(ctx,
		func(p goredis.Pipeliner) { p.SAdd(ctx, s.callsIndex(call.ID), call.ID) },
		func(p goredis.Pipeliner) { p.Set(ctx, s.callKey(call.ID), val, 0) })
	if err != nil {
		return fmt.Errorf("redis: save call %s: %w", call.ID, err)
	}
	return nil
}

// DeleteCall removes the call, then its index entry. An unknown call is not an error.
func (s *Store) DeleteCall(ctx context.Context, callID string) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: delete call %s: %w", callID, err)
	}
	defer cancel()
	if callID == "" {
		return errors.New("redis: delete call: empty call id")
	}
	if f, ok := actors.FenceOf(ctx); ok {
		if err := s.fencedDeleteCall(ctx, f, callID); err != nil {
			return fmt.Errorf("redis: delete call %s: %w", callID, err)
		}
		return nil
	}
	err = s.inOrder(ctx,
		func(p goredis.Pipeliner) { p.Del(ctx, s.callKey(callID)) },
		func(p goredis.Pipeliner) { p.SRem(ctx, s.callsIndex(callID), callID) })
	if err != nil {
		return fmt.Errorf("redis: delete call %s: %w", callID, err)
	}
	return nil
}

// LoadCalls returns every call in the call set, ordered by id.
func (s *Store) LoadCalls(ctx context.Context) ([]actors.Call, error) {
	calls, err := loadSet[actors.Call](ctx, s, s.callsShards, s.callKey)
	if err != nil {
		return nil, fmt.Errorf("redis: load calls: %w", err)
	}
	return calls, nil
}

// loadSet reads the ids in the index shards, then their JSON values under key(id) with
// pipelined GETs (batchSize per pipeline; a Redis Cluster splits each pipeline by master),
// ordered by id. An id whose key is missing (a concurrent delete, or an index entry whose
// entity was never stored) is skipped.
func loadSet[T any](ctx context.Context, s *Store, shards []string, key func(string) string) ([]T, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	ids, err := withTimeout(ctx, s.timeout, func(ctx context.Context) ([]string, error) {
		var cmds []*goredis.StringSliceCmd
		_, err := s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, k := range shards {
				cmds = append(cmds, p.SMembers(ctx, k))
			}
			return nil
		})
		var ids []string
		for _, c := range cmds {
			ids = append(ids, c.Val()...)
		}
		return ids, err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	var out []T
	for chunk := range slices.Chunk(ids, batchSize) {
		cmds, err := withTimeout(ctx, s.timeout, func(ctx context.Context) ([]*goredis.StringCmd, error) {
			var cmds []*goredis.StringCmd
			_, err := s.rc.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for _, id := range chunk {
					cmds = append(cmds, p.Get(ctx, key(id)))
				}
				return nil
			})
			if errors.Is(err, goredis.Nil) {
				err = nil // a pipeline reports its first failed command's error: a missing key
			}
			return cmds, err
		})
		if err != nil {
			return nil, err
		}
		for i, cmd := range cmds {
			str, err := cmd.Result()
			if errors.Is(err, goredis.Nil) {
				continue // deleted since SMEMBERS
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", chunk[i], err)
			}
			var x T
			if err := json.Unmarshal([]byte(str), &x); err != nil {
				return nil, fmt.Errorf("%s: %w", chunk[i], err)
			}
			out = append(out, x)
		}
	}
	return out, nil
}

// AddAudience does not require the room to be saved first: the room actor owns both
// records and decides their order.
func (s *Store) AddAudience(ctx context.Context, roomID string, member actors.User) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: add audience %s to room %s: %w", member.ID, roomID, err)
	}
	defer cancel()
	if roomID == "" || member.ID == "" {
		return fmt.Errorf("redis: add audience %q to room %q: empty id", member.ID, roomID)
	}
	val, err := json.Marshal(member)
	if err != nil {
		return fmt.Errorf("redis: add audience %s to room %s: %w", member.ID, roomID, err)
	}
	if f, ok := actors.FenceOf(ctx); ok {
		if err := s.fencedAddAudience(ctx, f, roomID, member.ID, val); err != nil {
			return fmt.Errorf("redis: add audience %s to room %s: %w", member.ID, roomID, err)
		}
		return nil
	}
	if err := s.rc.HSet(ctx, s.audKey(roomID), member.ID, val).Err(); err != nil {
		return fmt.Errorf("redis: add audience %s to room %s: %w", member.ID, roomID, err)
	}
	return nil
}

// RemoveAudience is idempotent, including for an unknown room. Redis drops a hash when
// its last field goes, so emptied audiences leave nothing behind.
func (s *Store) RemoveAudience(ctx context.Context, roomID, uid string) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: remove audience %s from room %s: %w", uid, roomID, err)
	}
	defer cancel()
	if roomID == "" || uid == "" {
		return fmt.Errorf("redis: remove audience %q from room %q: empty id", uid, roomID)
	}
	if f, ok := actors.FenceOf(ctx); ok {
		if err := s.fencedRemoveAudience(ctx, f, roomID, uid); err != nil {
			return fmt.Errorf("redis: remove audience %s from room %s: %w", uid, roomID, err)
		}
		return nil
	}
	if err := s.rc.HDel(ctx, s.audKey(roomID), uid).Err(); err != nil {
		return fmt.Errorf("redis: remove audience %s from room %s: %w", uid, roomID, err)
	}
	return nil
}

// LoadAudience returns the members ordered by numeric id; an unknown room has none.
func (s *Store) LoadAudience(ctx context.Context, roomID string) ([]actors.User, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: load audience of room %s: %w", roomID, err)
	}
	defer cancel()
	if roomID == "" {
		return nil, nil
	}
	m, err := s.rc.HGetAll(ctx, s.audKey(roomID)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: load audience of room %s: %w", roomID, err)
	}
	users := make([]actors.User, 0, len(m))
	for uid, v := range m {
		var u actors.User
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			return nil, fmt.Errorf("redis: load audience of room %s: member %s: %w", roomID, uid, err)
		}
		users = append(users, u)
	}
	slices.SortFunc(users, func(a, b actors.User) int { return actors.CompareIDs(a.ID, b.ID) })
	return users, nil
}

// Reset with a key deletes the user and the room (with its audience, index entry and
// deadline) that key names, one slot after another; unknown keys are not an error.
// Reset("") deletes every key under the prefix except those keepOnReset names, scanning
// each master (never KEYS) and deleting in batches; it is not atomic, so writes racing it
// may survive it.
func (s *Store) Reset(ctx context.Context, key string) error {
	if key == "" {
		if err := s.resetAll(ctx); err != nil {
			return fmt.Errorf("redis: reset all: %w", err)
		}
		return s.announceReset(ctx, key)
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: reset %s: %w", key, err)
	}
	defer cancel()
	steps := []func(goredis.Pipeliner){
		func(p goredis.Pipeliner) { p.Del(ctx, s.roomKey(key), s.audKey(key)) },
		func(p goredis.Pipeliner) { p.SRem(ctx, s.roomsIndex(key), key) },
		func(p goredis.Pipeliner) { p.ZRem(ctx, s.dueKey, actors.KindRoom+":"+key) },
	}
	// Only canonical decimal ids name users: "nextid" must not name the counter.
	if actors.IsDecimalID(key) {
		steps = append(steps, func(p goredis.Pipeliner) { p.Del(ctx, s.userKey(key)) })
	}
	err = s.inOrder(ctx, steps...)
	if err != nil {
		return fmt.Errorf("redis: reset %s: %w", key, err)
	}
	return s.announceReset(ctx, key)
}

// announceReset tells the other nodes of a cluster, on the feed, that the store was reset:
// their registries and read models still hold what was wiped. Without a membership (a
// single node) there is no one to tell.
func (s *Store) announceReset(ctx context.Context, key string) error {
	m := s.member.Load()
	if m == nil {
		return nil
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("redis: reset %s: %w", key, err)
	}
	defer cancel()
	err = s.rc.XAdd(ctx, &goredis.XAddArgs{Stream: s.prefix + "feed", MaxLen: feedMaxLen, Approx: true,
		Values: []string{"k", "reset", "key", key, "inc", m.inc}}).Err()
	if err != nil {
		return fmt.Errorf("redis: reset %s: announce: %w", key, err)
	}
	return nil
}

func (s *Store) resetAll(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.forEachMaster(ctx, func(ctx context.Context, c goredis.UniversalClient, direct bool) error {
		var cursor uint64
		for {
			next, err := withTimeout(ctx, s.timeout, func(ctx context.Context) (uint64, error) {
				keys, next, err := c.Scan(ctx, cursor, s.scanPattern, batchSize).Result()
				if err != nil {
					return 0, err
				}
				keys = slices.DeleteFunc(keys, s.keepOnReset)
				if len(keys) == 0 {
					return next, nil
				}
				return next, s.unlinkAll(ctx, c, direct, keys)
			})
			if err != nil {
				return err
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	})
}

// unlinkAll deletes keys through c with one UNLINK each: keys of different slots cannot
// share a command on a Redis Cluster, even on one master. UNLINK frees the memory off the
// main thread: audiences may be big. A master's own client (direct) has no replicaWait
// hook, so the wait for replicas goes on the connection that carried the deletions.
func (s *Store) unlinkAll(ctx context.Context, c goredis.UniversalClient, direct bool, keys []string) error {
	var wait *goredis.Cmd
	_, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range keys {
			p.Unlink(ctx, k)
		}
		if direct && s.opts.WaitReplicas > 0 {
			wait = p.Do(ctx, "WAIT", s.opts.WaitReplicas, s.timeout.Milliseconds())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if wait != nil {
		if n, err := wait.Int64(); err != nil || n < int64(s.opts.WaitReplicas) {
			return fmt.Errorf("%w (%d of %d)", ErrNotReplicated, n, s.opts.WaitReplicas)
		}
	}
	return nil
}

// keepOnReset names the keys Reset("") leaves alone:
//   - the user id counter, so ids are never reused;
//   - the layout marker, so the next start does not look for old keys again;
//   - the membership keys: the nodes are still running after a reset, and wiping their
//     member keys would expel every one of them;
//   - the cluster feed: readers hold positions in it, and a room wiped by the reset is
//     no different to them from one that still exists until they reload.
//
// Ownership, deadlines and reservations go: the entities they are about are gone too (a
// wiped owner hash refuses its old owner's next write, so that copy stops).
func (s *Store) keepOnReset(key string) bool {
	return key == s.counterKey || key == s.layoutKey || key == s.membersKey || key == s.feedKey || key == s.failoverKey ||
		strings.HasPrefix(key, s.memberPrefix) || strings.HasPrefix(key, s.takenPrefix)
}

// begin checks that the call may proceed and bounds it by the store's timeout.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return ctx, cancel, nil
}

// check refuses a call whose context has ended, so it writes nothing, and calls after Close.
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// withTimeout runs one round trip of a multi-step call under its own timeout, still
// within the caller's context.
func withTimeout[T any](ctx context.Context, d time.Duration, fn func(context.Context) (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return fn(ctx)
}

func newNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// globEscape quotes the characters SCAN MATCH treats specially, so a prefix such as
// "a*" matches only itself.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Compile-time check.
var _ actors.Store = (*Store)(nil)
