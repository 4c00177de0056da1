package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"roomengine/actors"
)

// Group commit of peer requests. Under load most forwarded requests of a node go to the same
// few owners, and one HTTP/1.1 round trip on loopback costs more CPU than the request it
// carries (a write and a read syscall on each side, header parsing, a signature). So the
// requests for one node that arrive while MaxInFlight posts to it are already under way wait
// for the next post and go in it together: a batch is a JSON array of requests in one
// POST /peer/v1 (signed as one body), answered by a JSON array of replies in the same order.
// A lone request is sent as before, a single object, so an idle cluster pays nothing and
// a node of the previous version still understands what it gets while traffic is light.
//
// The owner serves the requests of a batch concurrently, each as if it had come alone, and
// answers once all of them are done: a request waits at most for the slowest of its batch.
// That is why several posts to one node may be in flight at once.

// Bounds of batching.
const (
	// MaxInFlight is how many posts to one node may be under way at the same time; a
	// request that finds them all busy waits for the next one that finishes. One would
	// batch most but did not measure cheaper than two on the shared benchmark machine, and
	// it would let one slow request hold up every request for that node; four saved less
	// (docs/benchmarks.md, "Cost per request").
	MaxInFlight = 2
	// MaxBatch bounds the requests of one post (the owner refuses a longer batch).
	MaxBatch = 32
)

// call is one request waiting for its batch's answer.
type call struct {
	ctx  context.Context
	req  actors.PeerRequest
	done chan callResult // buffered: the sender never blocks on a caller that gave up
}

type callResult struct {
	rep actors.PeerReply
	err error
}

// batcher queues the requests for one node.
type batcher struct {
	addr     string
	mu       sync.Mutex
	queue    []*call
	inFlight int
}

func (c *Client) batcherFor(addr string) *batcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.batchers[addr]
	if b == nil {
		if c.batchers == nil {
			c.batchers = map[string]*batcher{}
		}
		b = &batcher{addr: addr}
		c.batchers[addr] = b
	}
	return b
}

// Send delivers req to the node at addr and returns its answer (batched with other requests
// for that node when posts to it are already under way).
func (c *Client) Send(ctx context.Context, addr string, req actors.PeerRequest) (actors.PeerReply, error) {
	if err := ctx.Err(); err != nil {
		return actors.PeerReply{}, err
	}
	b := c.batcherFor(addr)
	cl := &call{ctx: ctx, req: req, done: make(chan callResult, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, cl)
	start := b.inFlight < MaxInFlight
	if start {
		b.inFlight++
	}
	b.mu.Unlock()
	if start {
		go c.drain(b)
	}
	select {
	case r := <-cl.done:
		return r.rep, r.err
	case <-ctx.Done():
		// Still queued: never sent, take it out. Already sent: the outcome is unknown, as
		// for any request whose answer did not come in time.
		b.mu.Lock()
		for i, q := range b.queue {
			if q == cl {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
		return actors.PeerReply{}, ctx.Err()
	}
}

// drain posts what is queued for b's node until the queue is empty.
func (c *Client) drain(b *batcher) {
	for {
		b.mu.Lock()
		n := min(len(b.queue), MaxBatch)
		if n == 0 {
			b.inFlight--
			b.mu.Unlock()
			return
		}
		batch := make([]*call, n)
		copy(batch, b.queue)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		b.mu.Unlock()
		c.post(b.addr, batch)
	}
}

// post sends one batch and hands every call its answer.
func (c *Client) post(addr string, batch []*call) {
	// The post lives as long as the most patient of its callers; a caller that gives up
	// earlier stops waiting on its own.
	ctx, cancel := batchContext(batch)
	defer cancel()
	if len(batch) == 1 {
		rep, err := c.send(ctx, addr, batch[0].req)
		batch[0].done <- callResult{rep, err}
		return
	}
	reqs := make([]actors.PeerRequest, len(batch))
	for i, cl := range batch {
		reqs[i] = cl.req
	}
	reps, err := c.sendBatch(ctx, addr, reqs)
	for i, cl := range batch {
		if err != nil {
			cl.done <- callResult{err: err}
			continue
		}
		cl.done <- callResult{rep: reps[i]}
	}
}

// batchContext ends at the latest deadline of the batch's callers, or when all of them have
// given up.
func batchContext(batch []*call) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, cl := range batch {
		d, ok := cl.ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if !latest.IsZero() {
		ctx, cancel = context.WithDeadline(context.Background(), latest)
	}
	stop := make(chan struct{})
	go func() {
		for _, cl := range batch {
			select {
			case <-cl.ctx.Done():
			case <-stop:
				return
			}
		}
		cancel() // every caller gave up
	}()
	return ctx, func() { close(stop); cancel() }
}

// sendBatch posts several requests as one JSON array and returns their answers in order.
func (c *Client) sendBatch(ctx context.Context, addr string, reqs []actors.PeerRequest) ([]actors.PeerReply, error) {
	body, err := json.Marshal(reqs)
	if err != nil {
		return nil, err
	}
	// Each answer may be as long as a lone request's (a room's audience, say).
	out, err := c.roundTrip(ctx, addr, body, int64(len(reqs))*maxBody)
	if err != nil {
		return nil, err
	}
	var reps []actors.PeerReply
	if err := json.Unmarshal(out, &reps); err != nil {
		return nil, fmt.Errorf("peer %s: %w", addr, err)
	}
	if len(reps) != len(reqs) {
		return nil, fmt.Errorf("peer %s: %d answers to %d requests", addr, len(reps), len(reqs))
	}
	for _, rep := range reps {
		if rep.Status == "" {
			return nil, errors.New("peer " + addr + ": answer without a status")
		}
	}
	return reps, nil
}
