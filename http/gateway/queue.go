package gateway

import (
	"sync"
	"sync/atomic"
)

// criticalImportance is the least important level that must never be lost silently
// (docs/api.md, Push messages): a frame at this level or below that cannot be queued closes the connection,
// so the client reconnects with since and gets it from the history.
const criticalImportance = 5

// pushResult says what happened to a frame offered to a queue, so the caller can count it.
type pushResult int

const (
	pushQueued   pushResult = iota // queued without losing anything
	pushShed                       // queued after evicting a less important queued frame
	pushDropped                    // the incoming frame was dropped (not important, nothing to evict)
	pushOverflow                   // an important frame could not be queued; the queue is now failed
	pushIgnored                    // the queue had already failed; the connection is being closed
)

// queue is one connection's bounded outbox. Publish pushes into it while holding a topic
// lock, so push never blocks on anything but this mutex; the connection's writer
// (writer.go) takes everything at once, which keeps lock hold times tiny and lets the writer send a burst
// without going back to the lock for each frame.
type queue struct {
	mu    sync.Mutex
	items []*frame // oldest first
	limit int

	// failed is set, under mu, when an important frame could not be queued. It is atomic so
	// the writer can poll it between frames without taking mu.
	failed atomic.Bool
	// ended is set when the topic is deleted: the writer sends what is queued, then closes.
	ended atomic.Bool
	// gap is set with failed when the node's cluster feed lost frames (resync).
	gap atomic.Bool

	// owner is told when there is something to take (nil in tests of the queue alone).
	owner interface{ schedule() }
}

func newQueue(limit int) *queue {
	return &queue{limit: limit}
}

// push offers f to the queue and never blocks. When the queue is full it sheds the queued
// frame with the highest importance number strictly above f's (the oldest among equals),
// so likes go before comments and comments before anything critical.
func (q *queue) push(f *frame) pushResult {
	q.mu.Lock()
	if q.failed.Load() {
		q.mu.Unlock()
		return pushIgnored
	}
	res := pushQueued
	if len(q.items) >= q.limit {
		victim, worst := -1, f.importance
		for i, it := range q.items {
			// Strictly greater keeps the first (oldest) frame of the worst level.
			if it.importance > worst {
				victim, worst = i, it.importance
			}
		}
		switch {
		case victim >= 0:
			copy(q.items[victim:], q.items[victim+1:])
			q.items[len(q.items)-1] = nil
			q.items = q.items[:len(q.items)-1]
			res = pushShed
		case f.importance > criticalImportance:
			q.mu.Unlock()
			return pushDropped
		default:
			// Losing this frame silently is not allowed; the client must reconnect with
			// since. What is still queued is dropped with the connection.
			q.failed.Store(true)
			clear(q.items)
			q.items = q.items[:0]
			q.mu.Unlock()
			q.signal()
			return pushOverflow
		}
	}
	q.items = append(q.items, f)
	q.mu.Unlock()
	q.signal()
	return res
}

// resync fails the queue although it has room: the node missed frames (a gap in the
// cluster feed), so the client must reconnect with since (1013).
func (q *queue) resync() {
	q.mu.Lock()
	q.gap.Store(true)
	q.failed.Store(true)
	clear(q.items)
	q.items = q.items[:0]
	q.mu.Unlock()
	q.signal()
}

// end tells the writer that nothing more will come: its topic was deleted.
func (q *queue) end() {
	q.ended.Store(true)
	q.signal()
}

// signal tells the owner's writer; a connection already on its writer's list is not
// added twice, so a burst of frames costs one wake-up.
func (q *queue) signal() {
	if q.owner != nil {
		q.owner.schedule()
	}
}

// take hands every queued frame to the writer and gives the queue spare (emptied) as its
// new backing array, so steady-state draining allocates nothing.
func (q *queue) take(spare []*frame) (batch []*frame, failed bool) {
	q.mu.Lock()
	batch = q.items
	q.items = spare[:0]
	failed = q.failed.Load()
	q.mu.Unlock()
	return batch, failed
}

// len is the number of frames waiting; the writer's batch in flight is not counted.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
