package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roomengine/actors"
)

// heldEngine answers every request with its own id, but only once release is closed.
type heldEngine struct {
	release chan struct{}
	arrived atomic.Int64
	served  atomic.Int64
}

func (e *heldEngine) ServePeer(ctx context.Context, req actors.PeerRequest) actors.PeerReply {
	e.arrived.Add(1)
	select {
	case <-e.release:
	case <-ctx.Done():
		return actors.PeerReply{Status: actors.PeerRetry}
	}
	e.served.Add(1)
	return actors.PeerReply{Status: actors.PeerOK, Room: &actors.Room{ID: req.ID}, Result: "room"}
}

// countPosts counts the POSTs that reach h.
func countPosts(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// Requests that arrive while MaxInFlight posts to a node are under way go together in the
// next posts; every caller gets its own answer, signed batches included.
func TestRequestsArrivingMeanwhileShareAPost(t *testing.T) {
	for _, secret := range []string{"", "0123456789abcdef0123456789abcdef"} {
		t.Run(fmt.Sprintf("signed=%v", secret != ""), func(t *testing.T) {
			var signer *Signer
			if secret != "" {
				signer = NewSigner(secret, "")
			}
			eng := &heldEngine{release: make(chan struct{})}
			var posts atomic.Int64
			srv := httptest.NewServer(countPosts(Handler(eng, signer, slog.New(slog.DiscardHandler)), &posts))
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")
			c := NewClient(time.Second, signer)
			defer c.Close()

			const n = MaxInFlight + 2*MaxBatch
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					id := fmt.Sprintf("r%03d", i)
					rep, err := c.Send(ctx, addr, actors.PeerRequest{Kind: actors.PeerRoom, ID: id, Event: "comment",
						Data: []byte(`{"user":{"id":"7","name":"n"},"text":"x"}`)})
					switch {
					case err != nil:
						errs <- err
					case rep.Status != actors.PeerOK || rep.Room == nil || rep.Room.ID != id:
						errs <- fmt.Errorf("request %s answered %+v", id, rep)
					}
				})
			}
			b := c.batcherFor(addr)
			// MaxInFlight posts are held by the engine; everything else is queued.
			waitFor(t, 10*time.Second, "the queue to fill", func() bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				return int(eng.arrived.Load())+len(b.queue) == n
			})
			close(eng.release)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := eng.served.Load(); got != n {
				t.Fatalf("served %d requests, want %d", got, n)
			}
			// MaxInFlight posts held, then what was queued (at most 2·MaxBatch) in at most
			// MaxInFlight more.
			if p := posts.Load(); p > 2*MaxInFlight {
				t.Fatalf("%d requests took %d posts: not batched", n, p)
			}
		})
	}
}

// A caller that gives up while its request is still queued gets its context's error and the
// request is never sent.
func TestQueuedRequestOfACallerThatGaveUpIsNotSent(t *testing.T) {
	eng := &heldEngine{release: make(chan struct{})}
	srv := httptest.NewServer(Handler(eng, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := NewClient(time.Second, nil)
	defer c.Close()
	var wg sync.WaitGroup
	b := c.batcherFor(addr)
	for i := range MaxInFlight { // one at a time: MaxInFlight posts of one request each
		wg.Go(func() {
			_, _ = c.Send(context.Background(), addr, actors.PeerRequest{Kind: actors.PeerRoom, ID: fmt.Sprint("h", i), Event: "comment",
				Data: []byte(`{"user":{"id":"7","name":"n"},"text":"x"}`)})
		})
		waitFor(t, 10*time.Second, "the request to reach the engine", func() bool { return eng.arrived.Load() == int64(i+1) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, addr, actors.PeerRequest{Kind: actors.PeerRoom, ID: "late", Event: "comment",
			Data: []byte(`{"user":{"id":"7","name":"n"},"text":"x"}`)})
		done <- err
	}()
	waitFor(t, 10*time.Second, "the request to be queued", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.queue) == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("gave up: %v, want context.Canceled", err)
	}
	b.mu.Lock()
	queued := len(b.queue)
	b.mu.Unlock()
	if queued != 0 {
		t.Fatalf("%d requests still queued", queued)
	}
	close(eng.release)
	wg.Wait()
	if got := eng.served.Load(); got != MaxInFlight {
		t.Fatalf("served %d, want %d (the abandoned one must not be sent)", got, MaxInFlight)
	}
}

// A batch is refused whole when it is empty, too long or holds one bad request.
func TestHandlerRefusesBadBatches(t *testing.T) {
	eng := echoEngine{got: make(chan actors.PeerRequest, 2*MaxBatch)}
	srv := httptest.NewServer(Handler(eng, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	good := actors.PeerRequest{Kind: actors.PeerRoom, ID: "abc", Event: "comment", Data: []byte(`{"user":{"id":"7","name":"n"},"text":"x"}`)}
	long := make([]actors.PeerRequest, MaxBatch+1)
	for i := range long {
		long[i] = good
	}
	for name, batch := range map[string][]actors.PeerRequest{
		"empty":    {},
		"too long": long,
		"bad item": {good, {Kind: "nope", ID: "abc"}},
	} {
		body, _ := json.Marshal(batch)
		resp, err := http.Post(srv.URL+Path, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || len(eng.got) != 0 {
			t.Fatalf("%s: HTTP %d, delivered %d", name, resp.StatusCode, len(eng.got))
		}
	}
	// A good batch is answered in order.
	body, _ := json.Marshal([]actors.PeerRequest{good, {Kind: actors.PeerRoom, ID: "def", Event: "comment", Data: good.Data}})
	resp, err := http.Post(srv.URL+Path, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reps []actors.PeerReply
	if err := json.NewDecoder(resp.Body).Decode(&reps); err != nil || len(reps) != 2 || reps[0].Room.ID != "abc" || reps[1].Room.ID != "def" {
		t.Fatalf("answers %+v (%v)", reps, err)
	}
}
