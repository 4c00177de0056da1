package redis

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
	"roomengine/persistence/redis/redistest"
)

// cluster is one Redis and prefix shared by the nodes of a test, as a deployment's nodes
// share them.
type cluster struct {
	t      *testing.T
	srv    *redistest.Server  // nil on a Redis Cluster
	rc     *redistest.Cluster // the Redis Cluster, when the test runs on one
	prefix string
	raw    goredis.UniversalClient // for looking behind the store's back, and for expiring keys
}

// onRedisCluster, when set, makes newCluster and newFeedFixture use that Redis Cluster
// instead of starting a redis-server (TestClusterModeOnRedisCluster).
var onRedisCluster *redistest.Cluster

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if rc := onRedisCluster; rc != nil {
		raw := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: rc.Addrs()})
		t.Cleanup(func() { raw.Close() })
		return &cluster{t: t, rc: rc, prefix: newPrefix("cluster"), raw: raw}
	}
	srv := redistest.Start(t)
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { raw.Close() })
	return &cluster{t: t, srv: srv, prefix: newPrefix("cluster"), raw: raw}
}

// store opens one node's Store.
func (c *cluster) store() *Store {
	c.t.Helper()
	if c.rc != nil {
		return openT(c.t, Options{ClusterAddrs: c.rc.Addrs(), KeyPrefix: c.prefix})
	}
	return openT(c.t, Options{Addr: c.srv.Addr(), KeyPrefix: c.prefix})
}

// join opens a Store for a node and joins it.
func (c *cluster) join(node string, ttl time.Duration) (*Store, *Member) {
	c.t.Helper()
	s := c.store()
	m, err := s.Join(c.t.Context(), node, "127.0.0.1:7"+node, ttl)
	if err != nil {
		c.t.Fatalf("Join %s: %v", node, err)
	}
	return s, m
}

// kill makes the node's membership lapse now, as its ttl running out would.
func (c *cluster) kill(m *Member) {
	c.t.Helper()
	if err := c.raw.Del(c.t.Context(), m.key).Err(); err != nil {
		c.t.Fatalf("DEL %s: %v", m.key, err)
	}
}

func (c *cluster) key(rest string) string { return c.prefix + ":" + rest }

// dueKey is the store's due set (keys.go: in the feed's slot).
func (c *cluster) dueKey() string { return c.key("due:{" + feedTag(c.key("feed")) + "}") }

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJoinRefusesNameOfLiveMember(t *testing.T) {
	c := newCluster(t)
	_, a := c.join("a", time.Minute)
	_, err := c.store().Join(t.Context(), "a", "elsewhere", time.Minute)
	if !errors.Is(err, ErrNodeNameTaken) || !strings.Contains(err.Error(), "a") {
		t.Fatalf("second Join of a = %v, want ErrNodeNameTaken naming the node", err)
	}
	if err := a.Renew(t.Context()); err != nil {
		t.Fatalf("the refused Join disturbed the live member: Renew = %v", err)
	}
	// Once the first has left, the name is free.
	if err := a.Leave(t.Context()); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	c.join("a", time.Minute)
}

func TestRenewAfterExpiryIsExpelledForever(t *testing.T) {
	c := newCluster(t)
	_, old := c.join("a", 50*time.Millisecond)
	waitFor(t, "the member key to expire", func() bool {
		return c.raw.Exists(t.Context(), old.key).Val() == 0
	})
	if err := old.Renew(t.Context()); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Renew after expiry = %v, want ErrExpelled", err)
	}
	// Another incarnation joins under the name; the old one must not revive or touch it.
	_, fresh := c.join("a", time.Minute)
	if err := old.Renew(t.Context()); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Renew after the name was rejoined = %v, want ErrExpelled", err)
	}
	if _, err := old.Claim(t.Context(), actors.KindRoom, "r"); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Claim by an expelled member = %v, want ErrExpelled", err)
	}
	if err := old.Leave(t.Context()); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Leave by an expelled member = %v, want ErrExpelled", err)
	}
	if old.LeaseValid() {
		t.Fatal("an expelled member's lease is valid")
	}
	v := c.raw.Get(t.Context(), fresh.key).Val()
	if !strings.HasPrefix(v, fresh.Incarnation()+"|") {
		t.Fatalf("member key = %q, want the new incarnation's", v)
	}
	if err := fresh.Renew(t.Context()); err != nil {
		t.Fatalf("new incarnation Renew: %v", err)
	}
}

func TestClaimByMemberWhoseKeyVanishedIsRefused(t *testing.T) {
	c := newCluster(t)
	_, a := c.join("a", time.Minute)
	c.kill(a)
	// Only Redis knows yet: the Claim script itself must refuse.
	if _, err := a.Claim(t.Context(), actors.KindRoom, "r"); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Claim = %v, want ErrExpelled", err)
	}
	if c.raw.Exists(t.Context(), c.key("owner:room:{r}")).Val() != 0 {
		t.Fatal("the refused Claim left an owner hash")
	}
	if err := a.Renew(t.Context()); !errors.Is(err, ErrExpelled) {
		t.Fatalf("Renew after a refused Claim = %v, want ErrExpelled", err)
	}
}

func TestRunRenewsUntilExpelled(t *testing.T) {
	c := newCluster(t)
	_, a := c.join("a", 200*time.Millisecond)
	var expelled atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(t.Context(), func() { expelled.Add(1) })
	}()
	// Three ttls later it is still a member: Run kept renewing.
	time.Sleep(600 * time.Millisecond)
	if n := c.raw.Exists(t.Context(), a.key).Val(); n != 1 || !a.LeaseValid() {
		t.Fatalf("after 3 ttls of Run: key exists %d, lease valid %v", n, a.LeaseValid())
	}
	c.kill(a)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the member key vanished")
	}
	if n := expelled.Load(); n != 1 {
		t.Fatalf("onExpelled called %d times, want 1", n)
	}
}

func TestLeaseValidFalseAtOnceAfterFreeze(t *testing.T) {
	c := newCluster(t)
	const ttl = time.Minute
	_, a := c.join("a", ttl)
	// A clock the test moves: a freeze is the monotonic clock jumping while nothing ran.
	var now atomic.Int64
	a.mono = func() time.Duration { return time.Duration(now.Load()) }
	a.leaseUntil.Store(0)
	if a.LeaseValid() {
		t.Fatal("lease valid before any renew on the test clock")
	}
	if err := a.Renew(t.Context()); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	now.Store(int64(ttl - ttl/5 - time.Millisecond))
	if !a.LeaseValid() {
		t.Fatal("lease invalid just before send time + ttl - margin")
	}
	// SIGSTOP for longer than the ttl, then SIGCONT: false before any Redis call.
	now.Store(int64(ttl + time.Second))
	if a.LeaseValid() {
		t.Fatal("lease valid after a freeze longer than the ttl")
	}
	// A successful renew (the key is still alive here) restores it from its send time.
	if err := a.Renew(t.Context()); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if !a.LeaseValid() {
		t.Fatal("lease invalid after a successful renew")
	}
}

func TestMembersListsLiveOnesSortedAndDropsDead(t *testing.T) {
	c := newCluster(t)
	sb, _ := c.join("b", time.Minute)
	c.join("a", time.Minute)
	_, dead := c.join("c", time.Minute)
	c.kill(dead)
	got, err := sb.Members(t.Context())
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	want := []MemberInfo{{"a", "127.0.0.1:7a"}, {"b", "127.0.0.1:7b"}}
	if !slices.Equal(got, want) {
		t.Fatalf("Members = %v, want %v", got, want)
	}
	if c.raw.SIsMember(t.Context(), c.key("members"), "c").Val() {
		t.Fatal("the dead member is still in the members set")
	}
}

func TestLeaveHandsOwnedEntitiesOver(t *testing.T) {
	c := newCluster(t)
	sa, a := c.join("a", time.Minute)
	sb, b := c.join("b", time.Minute)
	for _, kind := range []string{actors.KindRoom, actors.KindCall} {
		if o, err := a.Claim(t.Context(), kind, "x"); err != nil || !o.Mine || o.Epoch != 1 {
			t.Fatalf("a Claim %s = %+v, %v", kind, o, err)
		}
	}
	if err := a.Leave(t.Context()); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if _, ok, err := b.Lookup(t.Context(), actors.KindRoom, "x"); ok || err != nil {
		t.Fatalf("Lookup after Leave: owned %v, %v; want no owner", ok, err)
	}
	o, err := b.Claim(t.Context(), actors.KindRoom, "x")
	if err != nil || !o.Mine || o.Epoch != 2 {
		t.Fatalf("b Claim after a left = %+v, %v; want Mine at epoch 2", o, err)
	}
	if st := sb.ClusterStats(); st.Takeovers != 0 {
		t.Fatalf("a hand-over counted as %d takeovers", st.Takeovers)
	}
	if ms, _ := sa.Members(t.Context()); len(ms) != 1 || ms[0].Node != "b" {
		t.Fatalf("Members after Leave = %v", ms)
	}
	if _, err := a.Claim(t.Context(), actors.KindRoom, "y"); !errors.Is(err, ErrLeft) {
		t.Fatalf("Claim after Leave = %v, want ErrLeft", err)
	}
	if a.LeaseValid() {
		t.Fatal("lease valid after Leave")
	}
}
