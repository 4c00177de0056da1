package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
	"roomengine/persistence/redis/redistest"
	"roomengine/persistence/storetest"
)

func openClusterT(t *testing.T, c *redistest.Cluster, opts Options) *Store {
	t.Helper()
	opts.ClusterAddrs = c.Addrs()
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = newPrefix("rcluster")
	}
	return openT(t, opts)
}

// TestContractOnRedisCluster: single-node mode on a Redis Cluster of three masters and
// three replicas (one cluster for every subtest but the failover's, which kills a master):
// the store's contract holds — with and without waiting for a replica — and 60 rooms with
// their users spread over every master.
func TestContractOnRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	t.Run("Contract", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) actors.Store { return openClusterT(t, c, Options{}) })
	})
	t.Run("WaitingForAReplica", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) actors.Store { return openClusterT(t, c, Options{WaitReplicas: 1}) })
	})
	t.Run("WriteNotConfirmedByTheReplicaFails", func(t *testing.T) { testClusterWaitReplicas(t, c) })
	t.Run("KeysSpreadOverMasters", func(t *testing.T) { testKeysSpread(t, c) })
	t.Run("CreateUserRetryReturnsSameID", func(t *testing.T) {
		s := openClusterT(t, c, Options{})
		keys := []string{s.counterKey, s.reqKey("fixednonce")}
		run := func() string {
			id, err := allocUserID.Run(t.Context(), s.rc, keys, reqMarkerTTL).Text()
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		if first, second := run(), run(); first != "1" || second != "1" {
			t.Fatalf("first run id %s, replay id %s; want 1 and 1", first, second)
		}
	})
}

// testKeysSpread creates 60 users, each with a room, an audience and a call, and counts
// the store's keys on each master: each must hold at least 15% of them.
func testKeysSpread(t *testing.T, c *redistest.Cluster) {
	prefix := newPrefix("spread")
	s := openClusterT(t, c, Options{KeyPrefix: prefix})
	ctx := t.Context()
	for i := range 60 {
		u, err := s.CreateUser(ctx, fmt.Sprint("u", i))
		if err != nil {
			t.Fatal(err)
		}
		room := actors.Room{ID: fmt.Sprint(1000 + i), UID: u.ID, Name: "r"}
		if err := s.SaveRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		if err := s.AddAudience(ctx, room.ID, u); err != nil {
			t.Fatal(err)
		}
	}
	rooms, err := s.LoadRooms(ctx)
	if err != nil || len(rooms) != 60 {
		t.Fatalf("LoadRooms = %d rooms, %v", len(rooms), err)
	}
	requireKeysSpread(t, c.Masters(), prefix+":*", "keys per master")
}

// requireKeysSpread requires each of three masters to hold at least 15 % of the keys
// matching pattern.
func requireKeysSpread(t *testing.T, masters []*redistest.Server, pattern, what string) {
	t.Helper()
	counts := map[string]int{}
	total := 0
	for _, m := range masters {
		n := countKeys(t, m.Addr(), pattern)
		counts[m.Addr()] = n
		total += n
	}
	if len(counts) != 3 {
		t.Fatalf("%d masters, want 3", len(counts))
	}
	t.Logf("%s: %v (total %d)", what, counts, total)
	for addr, n := range counts {
		if float64(n) < 0.15*float64(total) {
			t.Errorf("master %s holds %d of %d keys (%.0f%%), want at least 15%%", addr, n, total, 100*float64(n)/float64(total))
		}
	}
}

// countKeys counts the keys matching pattern on one server (SCAN: the server is shared
// with the other subtests' prefixes).
func countKeys(t *testing.T, addr, pattern string) int {
	t.Helper()
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	n := 0
	iter := rc.Scan(context.Background(), 0, globEscape(strings.TrimSuffix(pattern, "*"))+"*", 1000).Iterator()
	for iter.Next(context.Background()) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// testClusterWaitReplicas: with waitReplicas 1, a write to a slot whose master's replica is
// frozen fails with ErrNotReplicated — the wait goes to the master that took the write —
// while a write to another master's slot succeeds.
func testClusterWaitReplicas(t *testing.T, c *redistest.Cluster) {
	s := openClusterT(t, c, Options{WaitReplicas: 1, Timeout: 300 * time.Millisecond})
	ctx := t.Context()
	cc := s.rc.(*goredis.ClusterClient)
	master := func(id string) string {
		m, err := cc.MasterForKey(ctx, s.roomKey(id))
		if err != nil {
			t.Fatal(err)
		}
		return m.Options().Addr
	}
	// Two rooms on different masters.
	a, b := "a", ""
	for i := range 100 {
		if id := fmt.Sprint("b", i); master(id) != master(a) {
			b = id
			break
		}
	}
	var frozen *redistest.Server
	for _, m := range c.Masters() {
		if m.Addr() == master(a) {
			frozen = c.ReplicaOf(m)
		}
	}
	if frozen == nil || b == "" {
		t.Fatalf("no replica of %s, or no room on another master", master(a))
	}
	frozen.Freeze()
	errA := s.SaveRoom(ctx, actors.Room{ID: a, UID: "1"})
	errB := s.SaveRoom(ctx, actors.Room{ID: b, UID: "1"})
	frozen.Thaw()
	if !errors.Is(errA, ErrNotReplicated) {
		t.Errorf("SaveRoom on the master whose replica is frozen = %v, want ErrNotReplicated", errA)
	}
	if errB != nil {
		t.Errorf("SaveRoom on another master = %v", errB)
	}
	waitWithin(t, 10*time.Second, "a confirmed write after the thaw", func() bool {
		return s.SaveRoom(ctx, actors.Room{ID: a, UID: "1"}) == nil
	})
}

// TestRedisClusterFailoverLosesNoAcknowledgedWrite: writers with waitReplicas 1 on a Redis
// Cluster; the master of the id counter is frozen (SIGSTOP, a hung machine) until its
// replica is promoted, then thawed — it comes back as that replica's replica. The store
// follows the promotion without being reopened, and every user and room it acknowledged
// before, during and after is there.
func TestRedisClusterFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	c := redistest.StartCluster(t)
	s := openClusterT(t, c, Options{WaitReplicas: 1, Timeout: 500 * time.Millisecond})
	ctx := t.Context()

	a := startAckWriters(ctx, s, time.Second)
	count := func() int { n, _ := a.acked(); return n }
	waitWithin(t, 10*time.Second, "writes before the freeze", func() bool { return count() >= 50 })

	cc := s.rc.(*goredis.ClusterClient)
	m, err := cc.MasterForKey(ctx, s.counterKey)
	if err != nil {
		t.Fatal(err)
	}
	var old *redistest.Server
	for _, n := range c.Nodes {
		if n.Addr() == m.Options().Addr {
			old = n
		}
	}
	replica := c.ReplicaOf(old)
	if replica == nil {
		t.Fatalf("the counter's master %s has no replica", m.Options().Addr)
	}
	old.Freeze()
	took := c.WaitPromoted(t, replica, 20*time.Second)
	old.Thaw()
	c.WaitHealthy(t, 3, 20*time.Second)
	before := count()
	waitWithin(t, 20*time.Second, "writes after the failover", func() bool { return count() >= before+50 })
	a.halt()
	t.Logf("replica promoted %v after the freeze; %d users and %d rooms acknowledged, %d writes failed",
		took.Round(time.Millisecond), len(a.users), len(a.rooms), a.failed)

	// What is stored, read as a fresh process would, with a timeout for a busy machine (a
	// lost write answers ErrNotFound, not slowly).
	fresh := openClusterT(t, c, Options{KeyPrefix: s.opts.KeyPrefix})
	requireAcknowledged(t, fresh, a.users, a.rooms)
}
