package redis

import (
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/actors"
)

// killClient cuts the connections whose client name is name, as a network failure would.
func (fx *feedFixture) killClient(t *testing.T, name string) int {
	t.Helper()
	killed := 0
	for line := range strings.Lines(fx.rdb.ClientList(t.Context()).Val()) {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		for f := range strings.FieldsSeq(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				if err := fx.rdb.Do(t.Context(), "CLIENT", "KILL", "ID", id).Err(); err != nil {
					t.Fatal(err)
				}
				killed++
			}
		}
	}
	return killed
}

func TestFeedHeadAndRoomEntries(t *testing.T) {
	fx := newFeedFixture(t)
	head, err := fx.store.FeedHead(t.Context())
	if err != nil || head != "0-0" {
		t.Fatalf("head of an empty feed: %q, %v", head, err)
	}
	// The fenced room saves (another file) append these; the follower hands them over in
	// stream order with the pushes.
	feed := fx.prefix + "feed"
	fx.rdb.XAdd(t.Context(), &goredis.XAddArgs{Stream: feed, Values: []any{"k", "room", "id", "r1", "v", `{"id":"r1"}`}})
	head, err = fx.store.FeedHead(t.Context())
	if err != nil || head == "0-0" {
		t.Fatalf("head after an entry: %q, %v", head, err)
	}
	_, rec := fx.follow(t, "f1", "0-0")
	p := fx.publisher(t, PublisherOptions{})
	p.Publish(actors.Push{Topic: "r1", Body: body(1)})
	p.DeleteTopic("r1")
	flush(t, p)
	fx.rdb.XAdd(t.Context(), &goredis.XAddArgs{Stream: feed, Values: []any{"k", "roomdel", "id", "r1"}})
	got := rec.waitLen(t, 4)
	kinds := []string{got[0].Kind, got[1].Kind, got[2].Kind, got[3].Kind}
	if want := []string{"room", "push", "topicdel", "roomdel"}; strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	for _, e := range []feedEntry{got[0], got[2], got[3]} {
		if e.Topic != "r1" {
			t.Fatalf("entry %+v names the wrong room", e)
		}
	}
}

// A follower whose connection is cut reads on from its last id: nothing lost, nothing twice,
// and no false gap.
func TestFollowerSurvivesAKilledConnection(t *testing.T) {
	fx := newFeedFixture(t)
	f, rec := fx.follow(t, "victim", "0-0")
	p := fx.publisher(t, PublisherOptions{})
	const n = 300
	for i := range n {
		p.Publish(actors.Push{Topic: "r1", Body: body(i)})
		if i == n/3 || i == 2*n/3 {
			waitFor(t, "the follower's connection", func() bool { return fx.killClient(t, "victim") > 0 })
		}
	}
	got := rec.waitLen(t, n)
	for i, e := range got {
		if e.Kind != "push" || e.Body != string(body(i)) {
			t.Fatalf("entry %d = %+v, want push %d", i, e, i)
		}
	}
	// Nothing more arrives: a duplicate would show up as an extra entry.
	flush(t, p)
	waitFor(t, "the follower to go idle", func() bool { return f.Lag() == 0 })
	if got := rec.snapshot(); len(got) != n {
		t.Fatalf("%d entries, want %d", len(got), n)
	}
}

// A follower resuming from an id that was trimmed away meanwhile reports a gap once, then
// reads on from the oldest entry left.
func TestFollowerReportsATrimmedPosition(t *testing.T) {
	fx := newFeedFixture(t)
	p := fx.publisher(t, PublisherOptions{FeedCap: 100})
	p.Publish(actors.Push{Topic: "r1", Body: body(0)})
	flush(t, p)
	from, err := fx.store.FeedHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole stream nodes (100 entries each): publish well past the cap.
	p2 := fx.publisher(t, PublisherOptions{FeedCap: 100})
	const n = 1000
	for i := 1; i <= n; i++ {
		p2.Publish(actors.Push{Topic: "r1", Body: body(i)})
	}
	flush(t, p2)
	left := int(fx.rdb.XLen(t.Context(), fx.prefix+"feed").Val())
	if left >= n {
		t.Fatalf("the feed was not trimmed (%d entries)", left)
	}
	_, rec := fx.follow(t, "late", from)
	got := rec.waitLen(t, left+1)
	if got[0].Kind != "gap" {
		t.Fatalf("first entry %+v, want the gap", got[0])
	}
	if last := got[len(got)-1]; last.Body != string(body(n)) {
		t.Fatalf("last entry %+v, want push %d", last, n)
	}
	for i := 2; i < len(got); i++ {
		if got[i].Kind != "push" || got[i].Seq != got[i-1].Seq+1 {
			t.Fatalf("entry %d = %+v after %+v", i, got[i], got[i-1])
		}
	}

	// Reading on from a position that is still there reports nothing.
	_, rec2 := fx.follow(t, "current", fx.rdb.XRange(t.Context(), fx.prefix+"feed", "-", "+").Val()[0].ID)
	got2 := rec2.waitLen(t, left-1)
	for _, e := range got2 {
		if e.Kind == "gap" {
			t.Fatal("a gap reported from a position that was not trimmed")
		}
	}
}
