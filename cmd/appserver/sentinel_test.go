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

// sentinelEnv points the app at the primary the sentinels of sen name, waiting for one
// replica on every write.
func sentinelEnv(sen *redistest.Sentinel, prefix string) []string {
	return []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_KEYPREFIX=" + prefix,
		"APPSERVER_REDIS_SENTINEL_MASTER=" + redistest.SentinelMaster,
		"APPSERVER_REDIS_SENTINEL_ADDRS=" + strings.Join(sen.Addrs(), ","),
		"APPSERVER_REDIS_WAITREPLICAS=1"}
}

// failoverLoad is clients logging in, creating rooms and commenting through procs (one
// after the other) while the primary is killed, and what they were told.
type failoverLoad struct {
	t        *testing.T
	mu       sync.Mutex
	users    map[string]string // acknowledged: id -> name
	rooms    []string          // acknowledged room ids
	comments int
	failures map[int]int   // envelope code (or -1: no answer) -> count
	killed   time.Time     // zero until the primary is killed
	again    time.Duration // kill -9 → first room created by a request sent after it
	// againLogin: kill -9 → first login (a new user id) by a request sent after it
	againLogin time.Duration
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startFailoverLoad(t *testing.T, procs []*proc) *failoverLoad {
	l := &failoverLoad{t: t, users: map[string]string{}, failures: map[int]int{}, stop: make(chan struct{})}
	deadline := time.Now().Add(90 * time.Second) // bounds the load whatever happens
	for w := range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				p := procs[(w+i)%len(procs)]
				l.round(p, fmt.Sprintf("w%d-%d", w, i))
			}
		}()
	}
	t.Cleanup(l.end)
	return l
}

// round is one client's login, room and comment, each step through p.
func (l *failoverLoad) round(p *proc, name string) {
	step := func(path string, form url.Values) (answer, bool) {
		a := p.do(path, form)
		if a.err == nil && a.code == 200 {
			return a, true
		}
		l.mu.Lock()
		if a.err != nil {
			l.failures[-1]++
		} else {
			l.failures[a.code]++
		}
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		return a, false
	}
	loginSent := time.Now()
	a, ok := step("/login", url.Values{"name": {name}})
	if !ok {
		return
	}
	uid := field(l.t, a.data, "id")
	l.mu.Lock()
	l.users[uid] = name
	if !l.killed.IsZero() && loginSent.After(l.killed) && l.againLogin == 0 {
		l.againLogin = time.Since(l.killed)
	}
	l.mu.Unlock()
	sent := time.Now()
	if a, ok = step("/live/create", url.Values{"uid": {uid}}); !ok {
		return
	}
	room := field(l.t, a.data, "roomId")
	l.mu.Lock()
	l.rooms = append(l.rooms, room)
	// The first room created by a request sent after the kill: the write went to the
	// promoted replica.
	if !l.killed.IsZero() && sent.After(l.killed) && l.again == 0 {
		l.again = time.Since(l.killed)
	}
	l.mu.Unlock()
	if _, ok = step("/live/comment", url.Values{"uid": {uid}, "roomId": {room}, "comment": {"hi"}}); ok {
		l.mu.Lock()
		l.comments++
		l.mu.Unlock()
	}
}

func (l *failoverLoad) roomCount() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.rooms) }

// killPrimary kills the primary the sentinels name (SIGKILL) once n rooms were created,
// waits until rooms are created again by requests sent after the kill and n more after
// that, then stops the clients. The target is 20 s (it takes about 3 s: one second until
// the sentinels agree the primary is down, the promotion, the nodes' next renewal); the
// wait allows 30 s so that a machine busy with other tests does not fail it, and the time
// is logged.
func (l *failoverLoad) killPrimary(sen *redistest.Sentinel, n int) {
	t := l.t
	t.Helper()
	var old *redistest.Server
	l.kill(n, func() {
		if old = sen.Primary(); old == nil {
			t.Fatal("the sentinels name no primary")
		}
		old.Stop() // SIGKILL
	})
	if p := sen.Primary(); p == nil || p == old {
		t.Fatal("no replica was promoted")
	}
}

// kill runs fault once n rooms were created, waits until rooms are created again by
// requests sent after it and n more after that, then stops the clients.
func (l *failoverLoad) kill(n int, fault func()) {
	t := l.t
	t.Helper()
	waitWithin(t, 30*time.Second, fmt.Sprintf("%d rooms before the kill", n), func() bool { return l.roomCount() >= n })
	l.mu.Lock()
	l.killed = time.Now()
	l.mu.Unlock()
	fault()
	waitWithin(t, 30*time.Second, "room created by a request sent after the kill", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.again > 0
	})
	before := l.roomCount()
	waitWithin(t, 30*time.Second, fmt.Sprintf("%d more rooms on the new primary", n), func() bool { return l.roomCount() >= before+n })
	l.end()
}

func (l *failoverLoad) end() {
	l.mu.Lock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// checkAll asks p for every acknowledged room and user.
func (l *failoverLoad) checkAll(p *proc) {
	t := l.t
	t.Helper()
	listed := p.roomsByID(t)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range l.rooms {
		if _, ok := listed[id]; !ok {
			t.Errorf("acknowledged room %s is gone after the failover", id)
		}
	}
	for uid, name := range l.users {
		// Playing a room answers with the user's stored name. It is a write, waiting for a
		// replica like any other: a replica still resyncing from the new primary, on a busy
		// machine, answers 503 for a moment.
		var got string
		waitWithin(t, 20*time.Second, "a play by user "+uid+" answered", func() bool {
			a := p.do("/live/play", url.Values{"uid": {uid}, "roomId": {l.rooms[0]}})
			if a.err != nil || a.code != 200 {
				return false
			}
			got = field(t, a.data, "name")
			return true
		})
		if got != name {
			t.Errorf("acknowledged user %s is %q after the failover, want %q", uid, got, name)
		}
	}
	t.Logf("answering again %v after kill -9 of the primary; acknowledged %d users, %d rooms, %d comments, all there; failed answers by code: %v",
		l.again.Round(time.Millisecond), len(l.users), len(l.rooms), l.comments, l.failures)
}

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
	env := sentinelEnv(sen, "sentinel")
	port := freePort(t)
	app := start(t, bin, port, env...)

	load := startFailoverLoad(t, []*proc{app})
	load.killPrimary(sen, 20)
	// A fresh process reads everything from the promoted replica.
	load.checkAll(app.killAndRestart(t, bin, port, env...))
}

// TestClusterSentinelFailover: three cluster nodes on Sentinel (waitReplicas 1) under
// clients going through every node. kill -9 of the primary: the failover takes longer than
// memberTTL, so every member key is gone on the promoted replica, yet no node exits — each
// rejoins (redis.failoverGrace) — and the service answers again within 20 s; a node that
// joins afterwards finds every acknowledged user and room.
func TestClusterSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs redis-servers, sentinels and several real appserver processes")
	}
	bin := binary(t)
	sen := redistest.StartSentinel(t, 2, 3)
	node := func(name string) *proc {
		p := start(t, bin, freePort(t), append(sentinelEnv(sen, "sentinelcl"), "APPSERVER_CLUSTER_ENABLED=true",
			"APPSERVER_CLUSTER_NODE="+name, "APPSERVER_CLUSTER_MEMBERTTL=2s")...)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("log of %s:\n%s", name, importantLines(p.log.String()))
			}
		})
		return p
	}
	nodes := []*proc{node("n1"), node("n2"), node("n3")}

	load := startFailoverLoad(t, nodes)
	load.killPrimary(sen, 20)
	// Every node serves again, as the same process: none was expelled. A node whose member
	// key outlived the failover (its last renewal came just before the kill) needed no
	// rejoin; the others rejoined, and at least one must have.
	rejoined := 0
	for i, n := range nodes {
		waitWithin(t, 20*time.Second, fmt.Sprintf("n%d serving after the failover", i+1), func() bool {
			a := n.do("/live/list", url.Values{"roomId": {"-1"}})
			return a.err == nil && a.code == 200
		})
		log := n.log.String()
		if strings.Contains(log, "declared dead") {
			t.Errorf("n%d was expelled by the failover", i+1)
		}
		if strings.Contains(log, "cluster membership restored after Redis came back") {
			rejoined++
		}
	}
	if rejoined == 0 {
		t.Error("no node rejoined: the failover did not outlast any member key, so the test did not exercise redis.failoverGrace")
	}
	load.checkAll(node("n4"))
}

// waitWithin polls cond until it holds, failing the test after within.
func waitWithin(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%v)", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
