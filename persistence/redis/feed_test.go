package redis

import (
	"fmt"
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

// roomGone appends a room deletion for room r<i> to the feed, as the fenced room writes
// (another file) do; maxLen > 0 trims the feed like them.
func (fx *feedFixture) roomGone(t *testing.T, i int, maxLen int64) {
	t.Helper()
	args := &goredis.XAddArgs{Stream: fx.prefix + "feed", Values: []any{"k", "roomdel", "id", fmt.Sprint("r", i)}}
	if maxLen > 0 {
		args.MaxLen, args.Approx = maxLen, true
	}
	if err := fx.rdb.XAdd(t.Context(), args).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestFeedHeadAndRoomEntries(t *testing.T) {
	fx := newFeedFixture(t)
	head, err := fx.store.FeedHead(t.Context())
	if err != nil || head != "0-0" {
		t.Fatalf("head of an empty feed: %q, %v", head, err)
	}
	// The fenced room saves (another file) append these; the follower hands them over in
	// stream order. Pushes are not on the feed (subscriber.go).
	feed := fx.prefix + "feed"
	fx.rdb.XAdd(t.Context(), &goredis.XAddArgs{Stream: feed, Values: []any{"k", "room", "id", "r1", "v", `{"id":"r1"}`}})
	head, err = fx.store.FeedHead(t.Context())
	if err != nil || head == "0-0" {
		t.Fatalf("head after an entry: %q, %v", head, err)
	}
	f, rec := fx.follow(t, "f1", "0-0")
	p := fx.publisher(t, PublisherOptions{})
	p.Publish(actors.Push{Topic: "r1", Body: body(1)})
	p.DeleteTopic("r1")
	flush(t, p)
	fx.roomGone(t, 1, 0)
	got := rec.waitLen(t, 2)
	kinds := []string{got[0].Kind, got[1].Kind}
	if want := []string{"room", "roomdel"}; strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	for _, e := range got {
		if e.Topic != "r1" {
			t.Fatalf("entry %+v names the wrong room", e)
		}
	}
	last := fx.rdb.XRevRangeN(t.Context(), feed, "+", "-", 1).Val()[0].ID
	waitFor(t, "the follower to pass the last entry", func() bool { return f.Passed(last) })
	if !f.WaitPast(t.Context(), head) {
		t.Fatal("WaitPast of a passed entry did not return at once")
	}
}

// A follower whose connection is cut reads on from its last id: nothing lost, nothing twice,
// and no false gap.
func TestFollowerSurvivesAKilledConnection(t *testing.T) {
	fx := newFeedFixture(t)
	f, rec := fx.follow(t, "victim", "0-0")
	const n = 300
	for i := range n {
		fx.roomGone(t, i, 0)
		if i == n/3 || i == 2*n/3 {
			waitFor(t, "the follower's connection", func() bool { return fx.killClient(t, "victim") > 0 })
		}
	}
	got := rec.waitLen(t, n)
	for i, e := range got {
		if e.Kind != "roomdel" || e.Topic != fmt.Sprint("r", i) {
			t.Fatalf("entry %d = %+v, want roomdel r%d", i, e, i)
		}
	}
	// Nothing more arrives: a duplicate would show up as an extra entry.
	waitFor(t, "the follower to go idle", func() bool { return f.Lag() == 0 })
	if got := rec.snapshot(); len(got) != n {
		t.Fatalf("%d entries, want %d", len(got), n)
	}
}

// A follower resuming from an id that was trimmed away meanwhile reports a gap once, then
// reads on from the oldest entry left.
func TestFollowerReportsATrimmedPosition(t *testing.T) {
	fx := newFeedFixture(t)
	fx.roomGone(t, 0, 100)
	from, err := fx.store.FeedHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole stream nodes (100 entries each): append well past the cap.
	const n = 1000
	for i := 1; i <= n; i++ {
		fx.roomGone(t, i, 100)
	}
	left := int(fx.rdb.XLen(t.Context(), fx.prefix+"feed").Val())
	if left >= n {
		t.Fatalf("the feed was not trimmed (%d entries)", left)
	}
	_, rec := fx.follow(t, "late", from)
	got := rec.waitLen(t, left+1)
	if got[0].Kind != "gap" {
		t.Fatalf("first entry %+v, want the gap", got[0])
	}
	if last := got[len(got)-1]; last.Topic != fmt.Sprint("r", n) {
		t.Fatalf("last entry %+v, want room %d", last, n)
	}
	for i := 2; i < len(got); i++ {
		if got[i].Kind != "roomdel" || got[i].Topic != fmt.Sprint("r", n-len(got)+1+i) {
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
