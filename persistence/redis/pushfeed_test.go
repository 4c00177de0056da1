package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
	"roomengine/persistence/redis/redistest"
	"roomengine/push"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// feedEntry is one entry a recorder received, as a comparable value.
type feedEntry struct {
	Kind  string // push, topicdel, room, roomdel, gap
	Topic string // or room id
	Seq   uint64
	Tag   string
	Imp   int
	Body  string
}

// recorder is a FeedHandler that keeps everything in order.
type recorder struct {
	mu      sync.Mutex
	entries []feedEntry
}

func (r *recorder) add(e feedEntry) {
	r.mu.Lock()
	r.entries = append(r.entries, e)
	r.mu.Unlock()
}

func (r *recorder) Room(room actors.Room)  { r.add(feedEntry{Kind: "room", Topic: room.ID}) }
func (r *recorder) RoomDeleted(id string)  { r.add(feedEntry{Kind: "roomdel", Topic: id}) }
func (r *recorder) Gap()                   { r.add(feedEntry{Kind: "gap"}) }
func (r *recorder) Reset(key, from string) { r.add(feedEntry{Kind: "reset", Topic: key, Tag: from}) }

// The recorder is also a push.Sink, for a Subscriber.
func (r *recorder) EndTopic(t string) { r.add(feedEntry{Kind: "topicdel", Topic: t}) }
func (r *recorder) Resync()           { r.add(feedEntry{Kind: "resync"}) }
func (r *recorder) Deliver(f push.Frame) {
	r.add(feedEntry{Kind: "push", Topic: f.Topic, Seq: f.Seq, Tag: f.Tag, Imp: f.Importance, Body: string(f.Body)})
}

func (r *recorder) snapshot() []feedEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

// waitFor polls cond, which another goroutine makes true, within a bounded time.
func (r *recorder) waitLen(t *testing.T, n int) []feedEntry {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d feed entries", n), func() bool { return len(r.snapshot()) >= n })
	return r.snapshot()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// feedFixture is one store with its raw client, for tests that arrange membership keys.
type feedFixture struct {
	srv    *redistest.Server // nil on a Redis Cluster
	store  *Store
	rdb    goredis.UniversalClient
	prefix string
}

func newFeedFixture(t *testing.T) *feedFixture {
	if rc := onRedisCluster; rc != nil {
		prefix := newPrefix("feed")
		s := openT(t, Options{ClusterAddrs: rc.Addrs(), KeyPrefix: prefix})
		rdb := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: rc.Addrs()})
		t.Cleanup(func() { rdb.Close() })
		return &feedFixture{store: s, rdb: rdb, prefix: prefix + ":"}
	}
	srv := redistest.Start(t)
	prefix := newPrefix("feed")
	s := openT(t, Options{Addr: srv.Addr(), KeyPrefix: prefix})
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return &feedFixture{srv: srv, store: s, rdb: rdb, prefix: prefix + ":"}
}

func (fx *feedFixture) publisher(t *testing.T, opts PublisherOptions) *Publisher {
	opts.Logger = discardLogger()
	p := fx.store.NewPublisher(opts)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// follow runs a follower from the feed's start until the test ends.
func (fx *feedFixture) follow(t *testing.T, name, from string) (*Follower, *recorder) {
	f := fx.store.NewFollower(FollowerOptions{Name: name, Logger: discardLogger()})
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx, from, rec)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f, rec
}

// subscribe starts a Subscriber recording what it delivers, following topics.
func (fx *feedFixture) subscribe(t *testing.T, opts SubscriberOptions, topics ...string) (*Subscriber, *recorder) {
	opts.Logger = discardLogger()
	sub := fx.store.NewSubscriber(opts)
	rec := &recorder{}
	sub.Attach(rec)
	t.Cleanup(sub.Close)
	for _, topic := range topics {
		if err := sub.Follow(t.Context(), topic); err != nil {
			t.Fatal(err)
		}
	}
	return sub, rec
}

// history is the number of pushes in a topic's shared history.
func (fx *feedFixture) history(t *testing.T, topic string) int64 {
	n, err := fx.rdb.XLen(t.Context(), topicKey(fx.prefix, "topic", topic)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (fx *feedFixture) join(t *testing.T, node, inc string) {
	if err := fx.rdb.Set(t.Context(), fx.prefix+"member:{"+node+"}", inc+"|127.0.0.1:1", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func (fx *feedFixture) own(t *testing.T, kind, id, node, inc string, epoch int64) {
	err := fx.rdb.HSet(t.Context(), fx.prefix+"owner:"+kind+":{"+id+"}", "node", node, "epoch", epoch, "inc", inc).Err()
	if err != nil {
		t.Fatal(err)
	}
}

// send sends one batch as the publisher's writer does (loading the scripts on first use).
func (fx *feedFixture) send(t *testing.T, p *Publisher, batch []pushOp) {
	t.Helper()
	if err := p.sendOnce(t.Context(), batch); err != nil {
		if err = loadScripts(t.Context(), fx.rdb); err != nil {
			t.Fatal(err)
		}
		if err := p.sendOnce(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
}

func flush(t *testing.T, p *Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("close publisher: %v", err)
	}
}

func body(n int) []byte { return fmt.Appendf(nil, `{"data":{"n":%d},"type":6,"time":1}`, n) }

// The ordering guarantee: one publisher's pushes reach a subscriber in Publish order, each
// topic numbered 1 by 1 from a clock-based origin. On a Redis Cluster the order holds per
// topic: topics of different slots go through different masters (and the publisher sends
// their batches concurrently), so pushes of two topics may arrive in either order.
func TestPushesReachTheFeedInPublishOrder(t *testing.T) {
	fx := newFeedFixture(t)
	topics := []string{"ra", "rb", "rc"}
	_, rec := fx.subscribe(t, SubscriberOptions{}, topics...)
	p := fx.publisher(t, PublisherOptions{})
	before := uint64(time.Now().UnixMicro())
	const n = 600
	for i := range n {
		p.Publish(actors.Push{Topic: topics[i%3], Tag: "tag", Importance: 8, Type: 6, Body: body(i)})
	}
	entries := rec.waitLen(t, n)
	if onRedisCluster != nil {
		// Publish order per topic: push i is topic i%3's (i/3)th.
		slices.SortStableFunc(entries, func(a, b feedEntry) int { return slices.Index(topics, a.Topic) - slices.Index(topics, b.Topic) })
		var byTopic []feedEntry
		for k := range n {
			i := (k%3)*(n/3) + k/3
			byTopic = append(byTopic, entries[i])
		}
		entries = byTopic
	}
	last := map[string]uint64{}
	for i, e := range entries {
		want := feedEntry{Kind: "push", Topic: topics[i%3], Tag: "tag", Imp: 8, Body: string(body(i))}
		got := e
		got.Seq = 0
		if got != want {
			t.Fatalf("entry %d = %+v, want %+v", i, got, want)
		}
		if prev, ok := last[e.Topic]; ok && e.Seq != prev+1 {
			t.Fatalf("entry %d: %s seq %d after %d", i, e.Topic, e.Seq, prev)
		}
		if _, ok := last[e.Topic]; !ok && (e.Seq <= before || e.Seq > uint64(time.Now().UnixMicro())+1) {
			t.Fatalf("first seq of %s is %d, want the Redis clock in µs (about %d)", e.Topic, e.Seq, before)
		}
		last[e.Topic] = e.Seq
	}
}

// A push is applied once even when its batch is sent again (the connection broke after
// Redis ran it): the dedup marker skips what was applied.
func TestResentBatchIsAppliedOnce(t *testing.T) {
	fx := newFeedFixture(t)
	p := fx.publisher(t, PublisherOptions{})
	batch := []pushOp{{n: 1, p: actors.Push{Topic: "r", Body: body(1)}}, {n: 2, p: actors.Push{Topic: "r", Body: body(2)}}}
	for range 2 {
		fx.send(t, p, batch)
	}
	if n := fx.history(t, "r"); n != 2 {
		t.Fatalf("history holds %d entries, want 2", n)
	}
}

func TestFencedPushes(t *testing.T) {
	fx := newFeedFixture(t)
	fx.join(t, "n1", "i1")
	fx.own(t, actors.KindRoom, "r1", "n1", "i1", 2)
	p := fx.publisher(t, PublisherOptions{Node: "n1", Incarnation: "i1"})
	fence := func(epoch int64) actors.Fence {
		return actors.Fence{Kind: actors.KindRoom, ID: "r1", Node: "n1", Epoch: epoch}
	}
	p.Publish(actors.Push{Topic: "r1", Body: body(1), Fence: fence(2)}) // current: sent
	p.Publish(actors.Push{Topic: "r1", Body: body(2), Fence: fence(1)}) // stale epoch
	p.Publish(actors.Push{Topic: "r1", Body: body(3)})                  // unfenced, member alive: sent
	otherNode := fence(2)
	otherNode.Node = "n2"
	p.Publish(actors.Push{Topic: "r1", Body: body(4), Fence: otherNode}) // not the owner
	flush(t, p)
	if got := p.Refused(); got != 2 {
		t.Fatalf("refused %d, want 2", got)
	}

	// The owner's membership lapses: its unfenced pushes are refused (the publisher reads
	// the member key), its fenced ones still land while nobody has taken the room over
	// (the owner hash, in the topic's slot, still names it; nobody else acts for r1).
	fx.rdb.Del(t.Context(), fx.prefix+"member:{n1}")
	p2 := fx.publisher(t, PublisherOptions{Node: "n1", Incarnation: "i1"})
	p2.Publish(actors.Push{Topic: "r1", Body: body(5), Fence: fence(2)})
	p2.Publish(actors.Push{Topic: "r1", Body: body(6)})
	p2.DeleteTopic("r1")
	flush(t, p2)
	if got := p2.Refused(); got != 2 {
		t.Fatalf("refused %d, want 2", got)
	}
	// It rejoins as a new incarnation: the owner hash still names the old one, whose fences
	// no longer count.
	fx.join(t, "n1", "i2")
	p3 := fx.publisher(t, PublisherOptions{Node: "n1", Incarnation: "i1"})
	p3.SetIncarnation("i2")
	p3.Publish(actors.Push{Topic: "r1", Body: body(7), Fence: fence(2)})
	flush(t, p3)
	if got := p3.Refused(); got != 1 {
		t.Fatalf("refused %d, want 1", got)
	}

	var bodies []string
	for _, m := range fx.rdb.XRange(t.Context(), topicKey(fx.prefix, "topic", "r1"), "-", "+").Val() {
		bodies = append(bodies, m.Values["b"].(string))
	}
	if want := []string{string(body(1)), string(body(3)), string(body(5))}; !slices.Equal(bodies, want) {
		t.Fatalf("history bodies %q, want %q", bodies, want)
	}
}

func TestReadHistory(t *testing.T) {
	fx := newFeedFixture(t)
	p := fx.publisher(t, PublisherOptions{HistoryCap: 1000})
	for i := range 10 {
		p.Publish(actors.Push{Topic: "r1", Tag: fmt.Sprint("t", i%2), Importance: 5 + i%2, Body: body(i)})
	}
	flush(t, p)
	var seqs []uint64
	var all []feedEntry
	read := func(since uint64) (uint64, bool) {
		t.Helper()
		seqs, all = nil, nil
		applied, deleted, err := fx.store.ReadHistory(t.Context(), "r1", since, func(seq uint64, tag string, imp int, b []byte) {
			seqs = append(seqs, seq)
			all = append(all, feedEntry{Kind: "push", Topic: "r1", Seq: seq, Tag: tag, Imp: imp, Body: string(b)})
		})
		if err != nil {
			t.Fatal(err)
		}
		return applied, deleted
	}
	read(0)
	if len(seqs) != 10 {
		t.Fatalf("history holds %d, want 10", len(seqs))
	}
	first := seqs[0]
	if want := (feedEntry{Kind: "push", Topic: "r1", Seq: first + 3, Tag: "t1", Imp: 6, Body: string(body(3))}); all[3] != want {
		t.Fatalf("entry 3 = %+v, want %+v", all[3], want)
	}
	if applied, deleted := read(first + 6); applied != first+6 || deleted ||
		!slices.Equal(seqs, []uint64{first + 7, first + 8, first + 9}) {
		t.Fatalf("since %d: seqs %v applied %d deleted %v", first+6, seqs, applied, deleted)
	}
	// A since from a previous life (above the current seq): everything held is news.
	if applied, _ := read(first + 100); applied != 0 || len(seqs) != 10 {
		t.Fatalf("since above the topic: applied %d, %d frames; want 0 and all 10", applied, len(seqs))
	}

	p2 := fx.publisher(t, PublisherOptions{})
	p2.DeleteTopic("r1")
	flush(t, p2)
	if _, deleted := read(first + 8); !deleted || !slices.Equal(seqs, []uint64{first + 9}) {
		t.Fatalf("after deletion: deleted %v seqs %v", deleted, seqs)
	}
	for _, k := range []string{"seq", "topic"} {
		if ttl := fx.rdb.PTTL(t.Context(), topicKey(fx.prefix, k, "r1")).Val(); ttl <= 0 || ttl > time.Minute {
			t.Fatalf("%s expires in %v, want within a minute", k, ttl)
		}
	}
	// The topic's next life numbers above the previous one and starts a fresh history.
	p3 := fx.publisher(t, PublisherOptions{})
	p3.Publish(actors.Push{Topic: "r1", Body: body(99)})
	flush(t, p3)
	if _, deleted := read(first + 9); deleted || !slices.Equal(seqs, []uint64{first + 10}) {
		t.Fatalf("next life: deleted %v seqs %v", deleted, seqs)
	}
	if ttl := fx.rdb.PTTL(t.Context(), topicKey(fx.prefix, "seq", "r1")).Val(); ttl != -1 {
		t.Fatalf("next life's seq expires in %v", ttl)
	}
}

// /reset on a node of a cluster is on the feed, naming the key and the node's incarnation,
// so the other nodes forget what the store no longer holds; a single node announces nothing.
func TestResetIsAnnouncedOnTheFeed(t *testing.T) {
	fx := newFeedFixture(t)
	require.NoError(t, fx.store.Reset(t.Context(), "abc"))
	n, err := fx.rdb.XLen(t.Context(), fx.prefix+"feed").Result()
	require.NoError(t, err)
	require.Zero(t, n, "a single node's reset on the feed")

	m, err := fx.store.Join(t.Context(), "n1", "127.0.0.1:1", 5*time.Second)
	require.NoError(t, err)
	_, rec := fx.follow(t, "f", "0-0")
	require.NoError(t, fx.store.Reset(t.Context(), "abc"))
	require.NoError(t, fx.store.Reset(t.Context(), ""))
	got := rec.waitLen(t, 2)
	assert.Equal(t, []feedEntry{{Kind: "reset", Topic: "abc", Tag: m.Incarnation()}, {Kind: "reset", Topic: "", Tag: m.Incarnation()}}, got)
}

// Sync returns once everything queued before it is on the feed (what a node waits for
// before it answers a client), at once when nothing is queued, and not before Redis
// answers: during an outage it waits until its context ends.
func TestSyncWaitsForQueuedPushes(t *testing.T) {
	fx := newFeedFixture(t)
	p := fx.publisher(t, PublisherOptions{HistoryCap: 10000})
	require.NoError(t, p.Sync(t.Context()), "nothing queued")
	const n = 500
	for i := range n {
		p.Publish(actors.Push{Topic: "ra", Tag: "tag", Importance: 8, Type: 6, Body: body(i)})
	}
	require.NoError(t, p.Sync(t.Context()))
	assert.EqualValues(t, n, fx.history(t, "ra"), "history entries right after Sync")

	fx.srv.Stop()
	p.Publish(actors.Push{Topic: "ra", Tag: "tag", Importance: 8, Type: 6, Body: body(n)})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, p.Sync(ctx), context.DeadlineExceeded, "Sync while Redis is away")
	fx.srv.Restart()
	require.NoError(t, p.Sync(t.Context()), "Sync once Redis is back")
}

// The script cache emptied while several publishers send (a Redis restart, or the first
// use): every push still reaches the feed once. With plain pipelines, another publisher's
// SCRIPT LOAD between two EVALSHAs of a batch let its later pushes run before the earlier
// ones, which the dedup marker then took for applied.
func TestEveryPushLandsWhileTheScriptCacheIsFlushed(t *testing.T) {
	fx := newFeedFixture(t)
	opts := PublisherOptions{HistoryCap: 10000}
	pubs := []*Publisher{fx.publisher(t, opts), fx.publisher(t, opts), fx.publisher(t, opts)}
	const perPublisher = 1000
	stop := make(chan struct{})
	flushed := make(chan int)
	go func() {
		n := 0
		defer func() { flushed <- n }()
		for n < 2000 {
			select {
			case <-stop:
				return
			default:
			}
			if fx.rdb.ScriptFlush(context.Background()).Err() == nil {
				n++
			}
		}
	}()
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Go(func() {
			for k := range perPublisher {
				p.Publish(actors.Push{Topic: "ra", Tag: "tag", Importance: 8, Type: 6, Body: body(i*perPublisher + k)})
			}
			require.NoError(t, p.Sync(t.Context()))
		})
	}
	wg.Wait()
	close(stop)
	t.Logf("script cache flushed %d times", <-flushed)
	assert.EqualValues(t, len(pubs)*perPublisher, fx.history(t, "ra"), "pushes in the history")
}

// A push larger than MaxEntryBytes never reaches the feed (and so no node's history); the
// pushes around it do, in order.
func TestOversizedPushIsDropped(t *testing.T) {
	fx := newFeedFixture(t)
	_, rec := fx.subscribe(t, SubscriberOptions{}, "r")
	p := fx.publisher(t, PublisherOptions{MaxEntryBytes: 1024})
	p.Publish(actors.Push{Topic: "r", Tag: "r", Body: body(1)})
	p.Publish(actors.Push{Topic: "r", Tag: "r", Body: []byte(`{"data":"` + strings.Repeat("x", 2000) + `"}`)})
	p.Publish(actors.Push{Topic: "r", Tag: "r", Body: body(3)})
	flush(t, p)
	entries := rec.waitLen(t, 2)
	if len(entries) != 2 || entries[0].Body != string(body(1)) || entries[1].Body != string(body(3)) {
		t.Fatalf("feed %+v, want the two small pushes only", entries)
	}
	if p.Dropped() != 1 {
		t.Fatalf("dropped %d, want 1", p.Dropped())
	}
}

// A push whose fence is in another slot than its topic (a call's push to its room, a room's
// push to its call's host room) is checked by the publisher before the batch.
func TestCrossSlotFencedPushes(t *testing.T) {
	fx := newFeedFixture(t)
	fx.join(t, "n1", "i1")
	fx.own(t, actors.KindCall, "k", "n1", "i1", 2)
	fx.own(t, actors.KindRoom, "r1", "n1", "i1", 5)
	p := fx.publisher(t, PublisherOptions{Node: "n1", Incarnation: "i1"})
	call := func(epoch int64) actors.Fence {
		return actors.Fence{Kind: actors.KindCall, ID: "k", Node: "n1", Epoch: epoch}
	}
	room := actors.Fence{Kind: actors.KindRoom, ID: "r1", Node: "n1", Epoch: 5}
	p.Publish(actors.Push{Topic: "r2", Body: body(1), Fence: call(2)}) // current: sent
	p.Publish(actors.Push{Topic: "r2", Body: body(2), Fence: call(1)}) // stale epoch
	p.Publish(actors.Push{Topic: "r2", Body: body(3), Fence: room})    // a room to a host room: sent
	stale := room
	stale.Node = "n2"
	p.Publish(actors.Push{Topic: "r2", Body: body(4), Fence: stale}) // not the owner
	flush(t, p)
	if got := p.Refused(); got != 2 {
		t.Fatalf("refused %d, want 2", got)
	}
	var bodies []string
	for _, m := range fx.rdb.XRange(t.Context(), topicKey(fx.prefix, "topic", "r2"), "-", "+").Val() {
		bodies = append(bodies, m.Values["b"].(string))
	}
	if want := []string{string(body(1)), string(body(3))}; !slices.Equal(bodies, want) {
		t.Fatalf("history bodies %q, want %q", bodies, want)
	}
}

// A push a node sends for a room it does not own (PublishIfLive: a comment served where it
// arrived) is numbered only while the room's snapshot says it is live; otherwise the caller
// learns why, and nothing reaches the topic.
func TestPublishIfLiveNeedsALiveRoom(t *testing.T) {
	fx := newFeedFixture(t)
	fx.join(t, "n1", "i1")
	p := fx.publisher(t, PublisherOptions{Node: "n1", Incarnation: "i1"})
	ctx := t.Context()
	if err := fx.store.SaveRoom(ctx, actors.Room{ID: "r1", Status: actors.StatusPublishing}); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishIfLive(ctx, actors.Push{Topic: "r1", Body: body(1)}); err != nil {
		t.Fatalf("live room: %v", err)
	}
	if err := p.PublishIfLive(ctx, actors.Push{Topic: "nosuchroom", Body: body(2)}); !errors.Is(err, actors.ErrRoomGone) {
		t.Fatalf("unknown room: %v, want ErrRoomGone", err)
	}
	if err := fx.store.SaveRoom(ctx, actors.Room{ID: "r1", Status: actors.StatusEnded}); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishIfLive(ctx, actors.Push{Topic: "r1", Body: body(3)}); !errors.Is(err, actors.ErrRoomGone) {
		t.Fatalf("ended room: %v, want ErrRoomGone", err)
	}
	if err := fx.store.SaveRoom(ctx, actors.Room{ID: "r2", Status: actors.StatusPublishing}); err != nil {
		t.Fatal(err)
	}
	fx.rdb.Del(ctx, fx.prefix+"member:{n1}")
	if err := p.PublishIfLive(ctx, actors.Push{Topic: "r2", Body: body(4)}); !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("lapsed membership: %v, want ErrFenced", err)
	}
	if n := fx.history(t, "r1"); n != 1 {
		t.Fatalf("r1's history holds %d pushes, want the one sent while it was live", n)
	}
	if n := fx.history(t, "r2") + fx.history(t, "nosuchroom"); n != 0 {
		t.Fatalf("%d pushes numbered for a lapsed member or an unknown room", n)
	}

	// A node's lease, when the publisher has it, decides instead of the member key.
	var leased atomic.Bool
	fx.join(t, "n1", "i1")
	pl := fx.publisher(t, PublisherOptions{Node: "n1", Incarnation: "i1", Lease: leased.Load})
	if err := pl.PublishIfLive(ctx, actors.Push{Topic: "r2", Body: body(5)}); !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("lapsed lease: %v, want ErrFenced", err)
	}
	leased.Store(true)
	fx.rdb.Del(ctx, fx.prefix+"member:{n1}")
	if err := pl.PublishIfLive(ctx, actors.Push{Topic: "r2", Body: body(6)}); err != nil {
		t.Fatalf("valid lease: %v", err)
	}
	if n := fx.history(t, "r2"); n != 1 {
		t.Fatalf("r2's history holds %d pushes, want the one sent under a valid lease", n)
	}
}

// One batch holds runs of pushes that share a topic and fence (one script call each):
// every push gets the answer it would get alone — numbered in order, refused for a stale
// fence, dropped after its topic's deletion when IfLive — and a resent batch, whole or
// overlapping, applies nothing twice.
func TestBatchedRunsAnswerEachPush(t *testing.T) {
	fx := newFeedFixture(t)
	fx.join(t, "n1", "i1")
	fx.own(t, actors.KindRoom, "r", "n1", "i1", 2)
	p := fx.publisher(t, PublisherOptions{Node: "n1", Incarnation: "i1"})
	for _, id := range []string{"r", "s"} {
		if err := fx.store.SaveRoom(t.Context(), actors.Room{ID: id, Status: actors.StatusPublishing}); err != nil {
			t.Fatal(err)
		}
	}
	stale := actors.Fence{Kind: actors.KindRoom, ID: "r", Node: "n1", Epoch: 1}
	push := func(n uint64, topic string, ifLive bool, f actors.Fence) pushOp {
		return pushOp{n: n, p: actors.Push{Topic: topic, Body: body(int(n)), IfLive: ifLive, Fence: f}}
	}
	batch := []pushOp{
		push(1, "r", true, actors.Fence{}), push(2, "r", true, actors.Fence{}), push(3, "r", true, actors.Fence{}),
		push(4, "r", false, stale), push(5, "r", false, stale),
		push(6, "r", false, actors.Fence{}),
		push(7, "s", true, actors.Fence{}), push(8, "s", true, actors.Fence{}),
		push(9, "r", true, actors.Fence{}),
		{n: 10, p: actors.Push{Topic: "r"}, drop: true},
		push(11, "r", true, actors.Fence{}), push(12, "r", true, actors.Fence{}),
	}
	send := func(b []pushOp) { t.Helper(); fx.send(t, p, b) }
	bodies := func(topic string) []string {
		var out []string
		var last uint64
		_, _, err := fx.store.ReadHistory(t.Context(), topic, 0, func(seq uint64, _ string, _ int, b []byte) {
			if last != 0 && seq != last+1 {
				t.Errorf("%s: seq %d after %d", topic, seq, last)
			}
			last = seq
			out = append(out, string(b))
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := map[string][]string{
		"r": {string(body(1)), string(body(2)), string(body(3)), string(body(6)), string(body(9))},
		"s": {string(body(7)), string(body(8))},
	}
	send(batch)
	send(batch)     // the connection broke after Redis ran it: resent whole
	send(batch[8:]) // and resent in part
	for topic, w := range want {
		if got := bodies(topic); !slices.Equal(got, w) {
			t.Fatalf("%s history %q, want %q", topic, got, w)
		}
	}
	if got := p.Refused(); got != 2 {
		t.Fatalf("refused %d, want the 2 stale-fence pushes", got)
	}
	if ttl := fx.rdb.PTTL(t.Context(), topicKey(fx.prefix, "seq", "r")).Val(); ttl <= 0 {
		t.Fatalf("r's seq expires in %v: the deleted topic was revived", ttl)
	}
}
