package actors

import (
	"runtime"
	"sync"
)

// workerDispatcher runs mailboxes on long-lived goroutines. protoactor's default dispatcher
// starts a new goroutine every time a mailbox has work; each starts with a small stack that
// a room's handling (state step, JSON, push fan-out) grows again, and that stack copying was
// the largest single cost on the comment path. Here idle workers take the work with the
// stacks they already grew; when every worker is busy (say, waiting on a disk write) the
// work gets a goroutine of its own as before, so nothing ever waits for a worker.
type workerDispatcher struct {
	work       chan func()
	done       chan struct{}
	stop       sync.Once
	throughput int
}

// newWorkerDispatcher starts workers (default 4 per CPU) processing up to throughput
// messages per mailbox turn.
func newWorkerDispatcher(workers, throughput int) *workerDispatcher {
	if workers <= 0 {
		workers = 4 * runtime.GOMAXPROCS(0)
	}
	d := &workerDispatcher{work: make(chan func()), done: make(chan struct{}), throughput: throughput}
	for range workers {
		go d.loop()
	}
	return d
}

func (d *workerDispatcher) loop() {
	for {
		select {
		case fn := <-d.work:
			fn()
		case <-d.done:
			return
		}
	}
}

func (d *workerDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		go fn()
	}
}

func (d *workerDispatcher) Throughput() int { return d.throughput }

// Close lets the workers exit; work scheduled afterwards still runs, on its own goroutine.
func (d *workerDispatcher) Close() { d.stop.Do(func() { close(d.done) }) }
