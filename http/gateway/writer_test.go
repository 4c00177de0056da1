package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Several rooms publishing at once while the writers fan out and write: every subscriber
// gets every frame of its room, in order. The writers' wake-ups are what is tested: a
// topic or a connection marked ready while a writer is busy with a round must still be
// written in a later round, whatever the interleaving.
func TestConcurrentRoomsEveryFrameArrives(t *testing.T) {
	const (
		rooms  = 3
		perRm  = 50
		frames = 300
	)
	g, srv := startGateway(t, Options{PingInterval: time.Hour, MaxConnsPerAddr: -1, QueueSize: 2 * frames})
	type sub struct {
		room int
		c    *websocket.Conn
	}
	var subs []sub
	for r := range rooms {
		for range perRm {
			subs = append(subs, sub{r, dial(t, srv, fmt.Sprintf("topic=room%d", r))})
		}
		waitSubscribers(t, g, fmt.Sprintf("room%d", r), perRm)
	}
	var readers sync.WaitGroup
	failures := make(chan string, len(subs))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, s := range subs {
		readers.Go(func() {
			for want := uint64(1); want <= frames; want++ {
				_, b, err := s.c.Read(ctx)
				if err != nil {
					failures <- fmt.Sprintf("subscriber %d of room %d: frame %d: %v", i, s.room, want, err)
					return
				}
				var f testFrame
				if err := json.Unmarshal(b, &f); err != nil || f.Seq != want {
					failures <- fmt.Sprintf("subscriber %d of room %d: got %s, want seq %d", i, s.room, b, want)
					return
				}
			}
		})
	}
	var publishers sync.WaitGroup
	for r := range rooms {
		publishers.Go(func() {
			for i := range frames {
				pubOf(g).Publish(comment(fmt.Sprintf("room%d", r), i))
				time.Sleep(time.Duration(r+1) * 300 * time.Microsecond)
			}
		})
	}
	publishers.Wait()
	readers.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
}
