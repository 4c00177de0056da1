package redis

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// A node receives the pushes of the topics it follows and nothing of the others; after
// its last Unfollow, nothing of that topic either.
func TestSubscriberReceivesOnlyFollowedTopics(t *testing.T) {
	fx := newFeedFixture(t)
	sub, rec := fx.subscribe(t, SubscriberOptions{}, "a")
	if err := sub.Follow(t.Context(), "a"); err != nil { // a second local subscriber
		t.Fatal(err)
	}
	p := fx.publisher(t, PublisherOptions{})
	for i := range 10 {
		p.Publish(actors.Push{Topic: "a", Body: body(i)})
		p.Publish(actors.Push{Topic: "b", Body: body(i)})
	}
	got := rec.waitLen(t, 10)
	for i, e := range got {
		if e.Topic != "a" || e.Body != string(body(i)) {
			t.Fatalf("frame %d = %+v, want a's push %d", i, e, i)
		}
	}
	sub.Unfollow("a")
	if sub.Following() != 1 {
		t.Fatal("one subscriber left: the topic must stay followed")
	}
	p.Publish(actors.Push{Topic: "a", Body: body(10)})
	rec.waitLen(t, 11)
	sub.Unfollow("a")
	if sub.Following() != 0 {
		t.Fatalf("following %d topics after the last Unfollow", sub.Following())
	}
	// A marker topic followed after the last push to a: once its push arrives, a's would
	// have too (one connection, one order).
	if err := sub.Follow(t.Context(), "marker"); err != nil {
		t.Fatal(err)
	}
	p.Publish(actors.Push{Topic: "a", Body: body(11)})
	p.Publish(actors.Push{Topic: "marker", Body: body(0)})
	got = rec.waitLen(t, 12)
	if len(got) != 12 || got[11].Topic != "marker" {
		t.Fatalf("after Unfollow: %+v", got[11:])
	}
	if n := sub.Received(); n != 12 {
		t.Fatalf("received %d pushes, want 12 (none of b, none of a unfollowed)", n)
	}
}

// Pub/sub connections cut while pushes flow (CLIENT KILL TYPE pubsub): go-redis
// reconnects and resubscribes on its own; the Subscriber reads what was published
// meanwhile from the history. Every frame arrives once, in seq order.
func TestSubscriberRecoversAcrossAPubSubReconnect(t *testing.T) {
	fx := newFeedFixture(t)
	sub, rec := fx.subscribe(t, SubscriberOptions{}, "r")
	p := fx.publisher(t, PublisherOptions{HistoryCap: 10000})
	const n = 600
	for i := range n {
		p.Publish(actors.Push{Topic: "r", Body: body(i)})
		if i == n/3 || i == 2*n/3 {
			if err := p.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := fx.rdb.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := rec.waitLen(t, n)
	for i, e := range got {
		if e.Kind != "push" || e.Body != string(body(i)) || (i > 0 && e.Seq != got[i-1].Seq+1) {
			t.Fatalf("frame %d = %+v after %+v", i, e, got[max(i-1, 0)])
		}
	}
	// Nothing twice: a marker pushed last is the next frame.
	p.Publish(actors.Push{Topic: "r", Body: body(n)})
	if got := rec.waitLen(t, n+1); len(got) != n+1 || got[n].Body != string(body(n)) {
		t.Fatalf("after the marker: %d frames, last %+v", len(got), got[len(got)-1])
	}
	t.Logf("recovered from the history: %d", sub.Recovered())
}

// A push that follows a room change waits until the node's feed follower has passed that
// change, so the node's read model shows it before its clients get the push.
func TestSubscriberHoldsAPushUntilTheReadModelHasTheChange(t *testing.T) {
	fx := newFeedFixture(t)
	f := fx.store.NewFollower(FollowerOptions{Name: "late", Logger: discardLogger()})
	sub, rec := fx.subscribe(t, SubscriberOptions{Follower: f}, "r1")
	// The room's change is on the feed; the follower has not read it yet.
	fx.rdb.XAdd(t.Context(), &goredis.XAddArgs{Stream: fx.prefix + "feed", Values: []any{"k", "room", "id", "r1", "v", `{"id":"r1"}`}})
	p := fx.publisher(t, PublisherOptions{})
	p.Publish(actors.Push{Topic: "r1", Body: body(1), Changed: true})
	waitFor(t, "the push to be held", func() bool { return sub.Waited() == 1 })
	if len(rec.snapshot()) != 0 {
		t.Fatal("a push delivered before the follower passed its room change")
	}
	feed := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx, "0-0", feed) }()
	t.Cleanup(func() { cancel(); <-done })
	rec.waitLen(t, 1)
	if len(feed.snapshot()) != 1 {
		t.Fatal("the push came before the follower handled the change")
	}
	// A push that follows no change does not wait.
	p.Publish(actors.Push{Topic: "r1", Body: body(2)})
	rec.waitLen(t, 2)
	if sub.Waited() != 1 {
		t.Fatalf("held %d pushes, want 1", sub.Waited())
	}
}

// Subscribers come and go on one topic from many goroutines (SUBSCRIBE and UNSUBSCRIBE
// cross on the connection): every Follow still returns once subscribed, and afterwards the
// topic is followed exactly while someone follows it.
func TestSubscriberFollowUnfollowChurn(t *testing.T) {
	fx := newFeedFixture(t)
	sub, rec := fx.subscribe(t, SubscriberOptions{})
	p := fx.publisher(t, PublisherOptions{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				if err := sub.Follow(t.Context(), "r"); err != nil {
					t.Errorf("follow %d/%d: %v", w, i, err)
					return
				}
				if i%10 == 0 {
					p.Publish(actors.Push{Topic: "r", Body: body(i)})
				}
				sub.Unfollow("r")
			}
		})
	}
	wg.Wait()
	// The churn's pushes are written before the last Follow, so none of them can arrive
	// after it and pass for the push that follows it.
	if err := p.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := sub.Following(); n != 0 {
		t.Fatalf("following %d topics after every Unfollow", n)
	}
	if err := sub.Follow(t.Context(), "r"); err != nil {
		t.Fatal(err)
	}
	before := len(rec.snapshot())
	p.Publish(actors.Push{Topic: "r", Body: body(1000)})
	got := rec.waitLen(t, before+1)
	if last := got[len(got)-1]; last.Body != string(body(1000)) {
		t.Fatalf("last frame %+v, want the push after the churn", last)
	}
}

// A pub/sub message carries a run of pushes, each with its lengths: decodePush reads them
// one by one and refuses a message whose lengths do not fit, whatever it holds.
func TestDecodePushReadsARun(t *testing.T) {
	msg := "P 7 2 - 3 5\ntaghello" + "P 8 1 1700000000000-0 0 0\n" + "P 9 3 - 1 2\nxP\n"
	var got []string
	for rest := msg; rest != ""; {
		f, after, tail, ok := decodePush("room", rest)
		if !ok {
			t.Fatalf("decoding %q failed", rest)
		}
		got = append(got, fmt.Sprintf("%s %d %d %q %q %q", f.Topic, f.Seq, f.Importance, f.Tag, f.Body, after))
		rest = tail
	}
	want := []string{`room 7 2 "tag" "hello" ""`, `room 8 1 "" "" "1700000000000-0"`, `room 9 3 "x" "P\n" ""`}
	if !slices.Equal(got, want) {
		t.Fatalf("decoded\n%q\nwant\n%q", got, want)
	}
	for _, bad := range []string{"", "P 7 2 - 3 5", "P 7 2 - 3 5\ntaghell", "P 7 2 - -1 5\nhello",
		"P 7 2 - 3 -2\ntag", "P 7 2 - 3\ntag", "Q 7 2 - 0 0\n", "P x 2 - 0 0\n", "P 7 2 - 9999999999999999999 0\n",
		"P 7 2 - 4611686018427387904 4611686018427387904\nab"} {
		if _, _, _, ok := decodePush("room", bad); ok {
			t.Errorf("decodePush(%q) accepted", bad)
		}
	}
}
