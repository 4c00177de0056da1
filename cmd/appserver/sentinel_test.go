package main

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"roomengine/persistence/redis/redistest"
)

// TestRedisSentinelFailover: the app on a primary found through Sentinel, with
// redis.waitReplicas 1, under clients that log in, create rooms and comment. kill -9 of the
// primary: the service answers again within 20 s on the promoted replica, without a
// restart; and a fresh process started afterwards finds every user and room a client was
// told about.
func TestRedisSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := binary(t)
	sen := redistest.StartSentinel(t, 2, 3)
	env := []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_KEYPREFIX=sentinel",
		"APPSERVER_REDIS_SENTINEL_MASTER=" + redistest.SentinelMaster,
		"APPSERVER_REDIS_SENTINEL_ADDRS=" + strings.Join(sen.Addrs(), ","),
		"APPSERVER_REDIS_WAITREPLICAS=1"}
	port := freePort(t)
	app := start(t, bin, port, env...)

	var (
		mu        sync.Mutex
		users     = map[string]string{} // acknowledged: id -> name
		rooms     []string              // acknowledged room ids
		comments  int
		killed    time.Time // zero until the primary is killed
		again     time.Duration
		failures  = map[int]int{} // envelope code (or -1: no answer) -> count
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		deadline  = time.Now().Add(90 * time.Second) // bounds the load whatever happens
		ackedRoom = func() int { mu.Lock(); defer mu.Unlock(); return len(rooms) }
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				step := func(path string, form url.Values) (answer, bool) {
					a := app.do(path, form)
					if a.err != nil || a.code != 200 {
						mu.Lock()
						if a.err != nil {
							failures[-1]++
						} else {
							failures[a.code]++
						}
						mu.Unlock()
						time.Sleep(20 * time.Millisecond)
						return a, false
					}
					return a, true
				}
				a, ok := step("/login", url.Values{"name": {name}})
				if !ok {
					continue
				}
				uid := field(t, a.data, "id")
				mu.Lock()
				users[uid] = name
				mu.Unlock()
				sent := time.Now()
				a, ok = step("/live/create", url.Values{"uid": {uid}})
				if !ok {
					continue
				}
				room := field(t, a.data, "roomId")
				mu.Lock()
				rooms = append(rooms, room)
				// The first room created by a request sent after the kill: the write went
				// to the promoted replica.
				if !killed.IsZero() && sent.After(killed) && again == 0 {
					again = time.Since(killed)
				}
				mu.Unlock()
				if _, ok = step("/live/comment", url.Values{"uid": {uid}, "roomId": {room}, "comment": {"hi"}}); ok {
					mu.Lock()
					comments++
					mu.Unlock()
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	waitWithin(t, 30*time.Second, "20 rooms before the kill", func() bool { return ackedRoom() >= 20 })
	old := sen.Primary()
	if old == nil {
		t.Fatal("the sentinels name no primary")
	}
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	old.Stop() // SIGKILL
	waitWithin(t, 20*time.Second, "room created by a request sent after the kill", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return again > 0
	})
	before := ackedRoom()
	waitWithin(t, 30*time.Second, "20 more rooms on the new primary", func() bool { return ackedRoom() >= before+20 })
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	if p := sen.Primary(); p == nil || p == old {
		t.Fatal("no replica was promoted")
	}

	// A fresh process reads everything from the promoted replica.
	app = app.killAndRestart(t, bin, port, env...)
	listed := app.roomsByID(t)
	mu.Lock()
	defer mu.Unlock()
	for _, id := range rooms {
		if _, ok := listed[id]; !ok {
			t.Errorf("acknowledged room %s is gone after the failover", id)
		}
	}
	for uid, name := range users {
		// Playing a room answers with the user's stored name.
		if got := field(t, app.call(t, "/live/play", url.Values{"uid": {uid}, "roomId": {rooms[0]}}), "name"); got != name {
			t.Errorf("acknowledged user %s is %q after the failover, want %q", uid, got, name)
		}
	}
	t.Logf("answering again %v after kill -9 of the primary; acknowledged %d users, %d rooms, %d comments, all there; failed answers by code: %v",
		again.Round(time.Millisecond), len(users), len(rooms), comments, failures)
}

// waitWithin polls cond until it holds, failing the test after within.
func waitWithin(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
