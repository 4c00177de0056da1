package redis

import (
	"context"
	"fmt"
	"sync"
	"time"

	"roomengine/actors"
)

// ackWriters is the load of the failover tests: four writers, each creating a user and a
// room again and again (bounded in count and time), recording what was acknowledged so
// the test can check afterwards that none of it was lost.
type ackWriters struct {
	mu     sync.Mutex
	users  map[string]string // id -> name, acknowledged
	rooms  []string          // acknowledged
	lastOK time.Time
	failed int
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startAckWriters(ctx context.Context, s *Store, callTimeout time.Duration) *ackWriters {
	a := &ackWriters{users: map[string]string{}, stop: make(chan struct{})}
	deadline := time.Now().Add(60 * time.Second)
	for w := range 4 {
		a.wg.Go(func() {
			for i := 0; i < 5000 && time.Now().Before(deadline); i++ {
				select {
				case <-a.stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				u, err := s.CreateUser(cctx, name)
				if err == nil {
					err = s.SaveRoom(cctx, actors.Room{ID: "r-" + name, UID: u.ID, Name: name})
				}
				cancel()
				a.mu.Lock()
				if err == nil {
					a.users[u.ID] = name
					a.rooms = append(a.rooms, "r-"+name)
					a.lastOK = time.Now()
				} else {
					a.failed++
				}
				a.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return a
}

// acked is the number of acknowledged rooms and the time of the last acknowledgement.
func (a *ackWriters) acked() (int, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.rooms), a.lastOK
}

// halt stops the writers and waits for them; the recorded fields are then stable.
func (a *ackWriters) halt() {
	close(a.stop)
	a.wg.Wait()
}
