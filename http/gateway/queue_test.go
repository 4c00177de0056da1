package gateway

import (
	"slices"
	"testing"
)

func fr(seq uint64, importance int) *frame {
	return &frame{seq: seq, importance: importance}
}

func seqs(fs []*frame) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = f.seq
	}
	return out
}

func mustPush(t *testing.T, q *queue, f *frame, want pushResult) {
	t.Helper()
	if got := q.push(f); got != want {
		t.Fatalf("push seq %d importance %d: got result %d, want %d", f.seq, f.importance, got, want)
	}
}

// Likes (9) go before comments (8), comments before critical frames (≤ 5), and a critical
// frame that finds no room fails the queue instead of being lost.
func TestQueueShedsLikesThenCommentsThenFails(t *testing.T) {
	q := newQueue(4)
	for s := uint64(1); s <= 4; s++ {
		mustPush(t, q, fr(s, 9), pushQueued)
	}
	mustPush(t, q, fr(5, 8), pushShed) // evicts like 1
	mustPush(t, q, fr(6, 8), pushShed) // evicts like 2
	mustPush(t, q, fr(7, 8), pushShed) // evicts like 3
	mustPush(t, q, fr(8, 9), pushDropped)
	mustPush(t, q, fr(9, 8), pushShed)     // evicts like 4, the last one
	mustPush(t, q, fr(10, 8), pushDropped) // a comment never evicts a comment
	if got, want := seqs(q.items), []uint64{5, 6, 7, 9}; !slices.Equal(got, want) {
		t.Fatalf("after comments: queued %v, want %v", got, want)
	}
	for s := uint64(11); s <= 14; s++ {
		mustPush(t, q, fr(s, 5), pushShed)
	}
	if got, want := seqs(q.items), []uint64{11, 12, 13, 14}; !slices.Equal(got, want) {
		t.Fatalf("after critical frames: queued %v, want %v", got, want)
	}
	mustPush(t, q, fr(15, 5), pushOverflow)
	mustPush(t, q, fr(16, 1), pushIgnored)
	batch, failed := q.take(nil)
	if !failed || len(batch) != 0 {
		t.Fatalf("take after overflow: batch %v failed %v, want empty and failed", seqs(batch), failed)
	}
}

// The victim is the highest importance number above the incoming one, the oldest of them,
// and removing it keeps the order of the rest.
func TestQueueEvictsWorstOldestAndKeepsOrder(t *testing.T) {
	q := newQueue(5)
	for i, imp := range []int{7, 9, 8, 9, 6} {
		mustPush(t, q, fr(uint64(i+1), imp), pushQueued)
	}
	mustPush(t, q, fr(6, 8), pushShed) // evicts seq 2, the older of the two 9s
	if got, want := seqs(q.items), []uint64{1, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("queued %v, want %v", got, want)
	}
	mustPush(t, q, fr(7, 6), pushShed) // evicts seq 4 (9)
	mustPush(t, q, fr(8, 6), pushShed) // evicts seq 3 (8, older than 6's 8)
	if got, want := seqs(q.items), []uint64{1, 5, 6, 7, 8}; !slices.Equal(got, want) {
		t.Fatalf("queued %v, want %v", got, want)
	}
	mustPush(t, q, fr(9, 7), pushShed)     // evicts seq 6 (8)
	mustPush(t, q, fr(10, 7), pushDropped) // seq 1 is 7 too: equal is not evictable
	if got, want := seqs(q.items), []uint64{1, 5, 7, 8, 9}; !slices.Equal(got, want) {
		t.Fatalf("queued %v, want %v", got, want)
	}
}

// An unset importance (0) is the most important level, so it is never shed or dropped.
func TestQueueZeroImportanceIsCritical(t *testing.T) {
	q := newQueue(1)
	mustPush(t, q, fr(1, 0), pushQueued)
	mustPush(t, q, fr(2, 0), pushOverflow)
}

// countingOwner counts the times a queue asked for its writer.
type countingOwner struct{ n int }

func (o *countingOwner) schedule() { o.n++ }

func TestQueueTakeReusesSpare(t *testing.T) {
	q := newQueue(8)
	owner := &countingOwner{}
	q.owner = owner
	mustPush(t, q, fr(1, 8), pushQueued)
	mustPush(t, q, fr(2, 8), pushQueued)
	batch, failed := q.take(nil)
	if failed || !slices.Equal(seqs(batch), []uint64{1, 2}) {
		t.Fatalf("take: %v failed %v", seqs(batch), failed)
	}
	// Every push asks for the writer (the connection itself keeps it to one wake-up).
	if owner.n != 2 {
		t.Fatalf("the writer was asked for %d times, want 2", owner.n)
	}
	clear(batch)
	mustPush(t, q, fr(3, 8), pushQueued)
	next, _ := q.take(batch[:0])
	if !slices.Equal(seqs(next), []uint64{3}) || q.len() != 0 {
		t.Fatalf("second take: %v, %d left", seqs(next), q.len())
	}
}
