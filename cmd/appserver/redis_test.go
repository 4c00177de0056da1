package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"roomengine/http/apitest"
	"roomengine/persistence/redis/redistest"
)

// redisEnv points the app at srv under its own key prefix.
func redisEnv(t *testing.T, srv *redistest.Server, prefix string) []string {
	t.Helper()
	host, port, err := net.SplitHostPort(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return []string{"APPSERVER_STORE=redis", "APPSERVER_REDIS_HOST=" + host, "APPSERVER_REDIS_PORT=" + port,
		"APPSERVER_REDIS_KEYPREFIX=" + prefix}
}

// answer is one API response as a client sees it.
type answer struct {
	status  int // HTTP status
	code    int // envelope code
	message string
	data    json.RawMessage
	took    time.Duration
	err     error
}

// client validates the answers of the watched appservers against docs/openapi.yaml.
var client = apitest.Client(10 * time.Second)

// do sends form as a POST body, or GETs path when form is nil.
func (p *proc) do(path string, form url.Values) answer {
	start := time.Now()
	var res *http.Response
	var err error
	if form == nil {
		res, err = client.Get(p.base + path)
	} else {
		res, err = client.PostForm(p.base+path, form)
	}
	a := answer{took: time.Since(start), err: err}
	if err != nil {
		return a
	}
	defer res.Body.Close()
	a.status = res.StatusCode
	var env struct {
		Code    int
		Message string
		Data    json.RawMessage
	}
	if err := json.NewDecoder(res.Body).Decode(&env); err != nil {
		a.err = fmt.Errorf("decode: %w", err)
	}
	a.code, a.message, a.data = env.Code, env.Message, env.Data
	a.took = time.Since(start)
	return a
}

// get GETs path and fails the test unless the envelope says 200.
func (p *proc) get(t *testing.T, path string) json.RawMessage {
	t.Helper()
	a := p.do(path, nil)
	if a.err != nil || a.code != 200 {
		t.Fatalf("GET %s: code %d %s (%v)", path, a.code, a.message, a.err)
	}
	return a.data
}

// roomsByID is /live/list?roomId=-1 as room id -> status.
func (p *proc) roomsByID(t *testing.T) map[string]int {
	t.Helper()
	var rooms []struct {
		RoomID string `json:"roomId"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(p.call(t, "/live/list", url.Values{"roomId": {"-1"}}), &rooms); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rooms {
		out[r.RoomID] = r.Status
	}
	return out
}

// audience is /im/room/users as sorted ids.
func (p *proc) audience(t *testing.T, roomID string) []string {
	t.Helper()
	var users []struct{ ID string }
	if err := json.Unmarshal(p.call(t, "/im/room/users", url.Values{"roomId": {roomID}}), &users); err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, u := range users {
		ids = append(ids, u.ID)
	}
	sort.Strings(ids)
	return ids
}

func (p *proc) readyStatus(t *testing.T) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	res, err := client.Get(p.base + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	res.Body.Close()
	return res.StatusCode, time.Since(start)
}

func idNum(t *testing.T, id string) int {
	t.Helper()
	n, err := strconv.Atoi(id)
	if err != nil {
		t.Fatalf("user id %q: %v", id, err)
	}
	return n
}

func sortedKeys(m map[string]bool) []string {
	out := []string{}
	for k, v := range m {
		if v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// TestRedisOutage stops redis-server under a mixed load: commands that must persist answer
// 503 within a bounded time and change nothing, comments, likes and reads keep working,
// /readyz turns 503; when Redis is back the app recovers by itself and its state (in memory
// and in Redis) is exactly what was acknowledged.
func TestRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := binary(t)
	srv := redistest.Start(t)
	env := append(redisEnv(t, srv, "outage"), "APPSERVER_LIVE_NOPUBLISHTIMEOUT=10m", "APPSERVER_REDIS_TIMEOUT=500ms")
	port := freePort(t)
	app := start(t, bin, port, env...)

	maxID := 0
	login := func(name string) string {
		id := field(t, app.call(t, "/login", url.Values{"name": {name}}), "id")
		maxID = max(maxID, idNum(t, id))
		return id
	}
	h1, h2, h3 := login("h1"), login("h2"), login("h3")
	v1, v2, v3, v4 := login("v1"), login("v2"), login("v3"), login("v4")
	create := func(uid string) string {
		return field(t, app.call(t, "/live/create", url.Values{"uid": {uid}}), "roomId")
	}
	room1, room2, room3 := create(h1), create(h2), create(h3)
	app.call(t, "/live/play", url.Values{"uid": {v1}, "roomId": {room1}})
	app.call(t, "/live/play", url.Values{"uid": {v2}, "roomId": {room2}})
	app.get(t, "/ali/stream/notify?action=publish&id="+room1)

	srv.Stop()

	if st, took := app.readyStatus(t); st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz during the outage: HTTP %d", st)
	} else {
		t.Logf("/readyz during the outage: 503 in %v", took.Round(time.Millisecond))
	}

	// Each (user, room) pair gets one kind of change only, so the state the acknowledged
	// answers imply does not depend on their order.
	type op struct {
		name     string
		path     string
		form     url.Values // nil: GET
		persists bool
	}
	ops := []op{
		{"login", "/login", url.Values{"name": {"outage"}}, true},
		{"create", "/live/create", url.Values{"uid": {v4}}, true},
		{"play", "/live/play", url.Values{"uid": {v3}, "roomId": {room1}}, true},
		{"audience-leave", "/live/audience/leave", url.Values{"uid": {v1}, "roomId": {room1}}, true},
		{"leave", "/live/leave", url.Values{"roomId": {room3}}, true},
		{"publish", "/ali/stream/notify?action=publish&id=" + room2, nil, true},
		{"feedback", "/videocall/feedback", url.Values{"status": {"1"}, "inviterUid": {h1}, "inviteeUid": {h2},
			"inviterType": {"2"}, "inviteeType": {"2"}}, true},
		{"comment", "/live/comment", url.Values{"uid": {v2}, "roomId": {room2}, "comment": {"still here"}}, false},
		{"like", "/live/like", url.Values{"uid": {v1}, "roomId": {room1}}, false},
		{"list", "/live/list?roomId=-1", nil, false},
		{"users", "/im/room/users", url.Values{"roomId": {room1}}, false},
	}
	const workers, perWorker = 8, 25
	type result struct {
		op op
		answer
	}
	results := make([]result, 0, workers*perWorker)
	var mu sync.Mutex
	var wg sync.WaitGroup
	loadStart := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				o := ops[(w*perWorker+i)%len(ops)]
				a := app.do(o.path, o.form)
				mu.Lock()
				results = append(results, result{o, a})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	loadTook := time.Since(loadStart)

	acked := map[string][]answer{}
	var unavailable []time.Duration
	var maxOK time.Duration
	raced := 0
	for _, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("%s: %v", r.op.name, r.err)
			continue
		case r.status != http.StatusOK:
			t.Errorf("%s: HTTP %d (code %d %s)", r.op.name, r.status, r.code, r.message)
		case r.code == 200:
			if r.op.persists {
				acked[r.op.name] = append(acked[r.op.name], r.answer)
			}
			maxOK = max(maxOK, r.took)
		case r.code == 503 && r.op.persists:
			unavailable = append(unavailable, r.took)
			if strings.Contains(r.message, "127.0.0.1") || strings.Contains(r.message, "dial") {
				t.Errorf("%s: the 503 message shows internals: %q", r.op.name, r.message)
			}
		case r.code == 3020 && r.op.name == "feedback":
			// The call registry reserves both rooms while an admission is in flight, so an
			// accept racing one (which then fails with 503) is told the room is busy.
			raced++
		default:
			t.Errorf("%s: code %d %s", r.op.name, r.code, r.message)
		}
		if r.took > 3*time.Second {
			t.Errorf("%s answered after %v", r.op.name, r.took)
		}
	}
	slices.Sort(unavailable)
	if len(unavailable) == 0 {
		t.Fatal("no 503 during the outage")
	}
	t.Logf("outage load: %d requests from %d clients in %v; %d answered 503 (median %v, max %v); "+
		"%d accepts answered 3020 (raced an admission in flight); the others 200 (max %v); "+
		"persisting commands acknowledged anyway: %d",
		len(results), workers, loadTook.Round(time.Millisecond), len(unavailable),
		unavailable[len(unavailable)/2].Round(time.Microsecond), unavailable[len(unavailable)-1].Round(time.Microsecond),
		raced, maxOK.Round(time.Microsecond), len(acked))
	if st, _ := app.readyStatus(t); st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after the load: HTTP %d", st)
	}
	// The failures opened the store's circuit breaker: calls fail at once instead of each
	// trying Redis (1 open, 0.5 half-open with its probe failing).
	const redisBreaker = `roomengine_breaker_open{api="redis"}`
	if v := app.metric(t, redisBreaker); v == 0 {
		t.Errorf("%s = 0 after %d answers 503 with Redis down", redisBreaker, len(unavailable))
	}

	srv.Restart()
	back := time.Now()
	for {
		if st, _ := app.readyStatus(t); st == http.StatusOK {
			break
		}
		if time.Since(back) > 10*time.Second {
			t.Fatalf("/readyz not 200 10 s after Redis came back\n%s", app.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ready again %v after Redis answered", time.Since(back).Round(time.Millisecond))
	if v := app.metric(t, redisBreaker); v != 0 {
		t.Errorf("%s = %v once ready again, want 0 (closed)", redisBreaker, v)
	}

	// The state is what was acknowledged, nothing more.
	wantRooms := map[string]int{room1: 1, room2: 0, room3: 0}
	if len(acked["publish"]) > 0 {
		wantRooms[room2] = 1
	}
	if len(acked["leave"]) > 0 {
		delete(wantRooms, room3)
	}
	for _, a := range acked["create"] {
		wantRooms[field(t, a.data, "roomId")] = 0
	}
	for _, a := range acked["login"] {
		maxID = max(maxID, idNum(t, field(t, a.data, "id")))
	}
	wantAudience1 := map[string]bool{v1: len(acked["audience-leave"]) == 0, v3: len(acked["play"]) > 0}
	check := func(p *proc, when string) {
		t.Helper()
		if got := p.roomsByID(t); !mapsEqual(got, wantRooms) {
			t.Errorf("%s: rooms %v, want %v", when, got, wantRooms)
		}
		if got := p.audience(t, room1); !slices.Equal(got, sortedKeys(wantAudience1)) {
			t.Errorf("%s: audience of room 1 %v, want %v", when, got, sortedKeys(wantAudience1))
		}
		if got := p.audience(t, room2); !slices.Equal(got, []string{v2}) {
			t.Errorf("%s: audience of room 2 %v, want [%s]", when, got, v2)
		}
	}
	check(app, "after recovery")
	// A call was admitted only if an accept was acknowledged.
	feedback := ops[6]
	wantFeedback := 200
	if len(acked["feedback"]) > 0 {
		wantFeedback = 3020
	}
	if a := app.do(feedback.path, feedback.form); a.code != wantFeedback {
		t.Errorf("accept after recovery: code %d %s, want %d", a.code, a.message, wantFeedback)
	}
	if a := app.do("/videocall/close", url.Values{"closeRoomId": {room1}, "notifiedRoomId": {room2}}); a.code != 200 {
		t.Errorf("close after recovery: %d %s", a.code, a.message)
	}

	// Everything works again, without a restart.
	id := field(t, app.call(t, "/login", url.Values{"name": {"after"}}), "id")
	if idNum(t, id) <= maxID {
		t.Errorf("login after recovery got id %s, not above %d", id, maxID)
	}
	maxID = idNum(t, id)
	app.call(t, "/live/play", url.Values{"uid": {v3}, "roomId": {room1}})
	wantAudience1[v3] = true
	app.get(t, "/ali/stream/notify?action=publish&id="+room2)
	wantRooms[room2] = 1
	wantRooms[create(v4)] = 0
	if _, ok := wantRooms[room3]; ok {
		app.call(t, "/live/leave", url.Values{"roomId": {room3}})
		delete(wantRooms, room3)
	}
	check(app, "after the new commands")

	// What Redis holds agrees: a fresh process shows the same state.
	if err := app.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = app.cmd.Wait()
	again := start(t, bin, port, env...)
	check(again, "after a restart")
	if id := field(t, again.call(t, "/login", url.Values{"name": {"later"}}), "id"); idNum(t, id) <= maxID {
		t.Errorf("login after restart got id %s, not above %d", id, maxID)
	}
	if strings.Contains(app.log.String(), "panic") {
		t.Errorf("panic in the log:\n%s", app.log)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestRedisKillNineAndRestart: with store redis, everything acknowledged before kill -9 is
// there after a restart, ids continue, a pending expiry fires at its original deadline, and
// an accepted co-streaming call still holds its rooms.
func TestRedisKillNineAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := binary(t)
	srv := redistest.Start(t)
	const timeout = 8 * time.Second
	env := append(redisEnv(t, srv, "kill9"), "APPSERVER_LIVE_NOPUBLISHTIMEOUT="+timeout.String(),
		"APPSERVER_LIVE_TOPICDELETEDELAY=1s")
	port := freePort(t)
	first := start(t, bin, port, env...)

	for i, name := range []string{"alice", "bob", "carol", "dave"} {
		if id := field(t, first.call(t, "/login", url.Values{"name": {name}}), "id"); id != strconv.Itoa(i+1) {
			t.Fatalf("%s got id %s", name, id)
		}
	}
	// A (alice) and C (bob) publish, carol watches A; A and C are in an accepted call.
	roomA := field(t, first.call(t, "/live/create", url.Values{"uid": {"1"}, "desc": {"kept"}}), "roomId")
	roomC := field(t, first.call(t, "/live/create", url.Values{"uid": {"2"}}), "roomId")
	first.call(t, "/live/play", url.Values{"uid": {"3"}, "roomId": {roomA}})
	first.get(t, "/ali/stream/notify?action=publish&id="+roomA)
	first.get(t, "/ali/stream/notify?action=publish&id="+roomC)
	accept := url.Values{"status": {"1"}, "inviterUid": {"1"}, "inviteeUid": {"2"}, "inviterType": {"2"}, "inviteeType": {"2"}}
	fb := first.call(t, "/videocall/feedback", accept)
	if field(t, fb, "inviterRoomId") != roomA || field(t, fb, "inviteeRoomId") != roomC {
		t.Fatalf("accept: %s", fb)
	}
	// B (dave) waits for its stream: it expires timeout after creation.
	createdAfter := time.Now()
	roomB := field(t, first.call(t, "/live/create", url.Values{"uid": {"4"}}), "roomId")
	createdBefore := time.Now()

	second := first.killAndRestart(t, bin, port, env...)

	ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
	defer cancel()
	conn := dialTopic(t, ctx, port, roomB)

	if got, want := second.roomsByID(t), map[string]int{roomA: 1, roomB: 0, roomC: 1}; !mapsEqual(got, want) {
		t.Fatalf("rooms after restart: %v, want %v", got, want)
	}
	if got := second.audience(t, roomA); !slices.Equal(got, []string{"3"}) {
		t.Fatalf("audience of A after restart: %v", got)
	}
	if id := field(t, second.call(t, "/login", url.Values{"name": {"erin"}}), "id"); id != "5" {
		t.Fatalf("id after restart = %s, want 5 (no reuse, no gap)", id)
	}
	if name := field(t, second.call(t, "/live/play", url.Values{"uid": {"1"}, "roomId": {roomB}}), "name"); name != "alice" {
		t.Fatalf("user 1 after restart: %s", name)
	}

	// The call survived: A is still busy, until the call is closed.
	if a := second.do("/videocall/feedback", accept); a.code != 3020 {
		t.Fatalf("second accept after restart: code %d %s, want 3020", a.code, a.message)
	}
	second.call(t, "/videocall/close", url.Values{"closeRoomId": {roomA}, "notifiedRoomId": {roomC}})
	second.call(t, "/videocall/invite", url.Values{"inviterUid": {"1"}, "inviteeUid": {"2"}, "liveRoomId": {roomA},
		"inviterType": {"2"}})

	expectExpiry(t, ctx, conn, createdAfter.Add(timeout), createdBefore.Add(timeout), time.Second, time.Second)
	if got := second.roomsByID(t); len(got) != 2 || got[roomA] != 1 || got[roomC] != 1 {
		t.Fatalf("rooms after B's expiry: %v", got)
	}
}

// TestRedisStartup: start-up waits a bounded time for Redis; an unreachable Redis stops it
// with one clear line, a wrong password at once (and never shows the password).
func TestRedisStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := binary(t)
	srv := redistest.Start(t)

	t.Run("late", func(t *testing.T) {
		srv.Stop()
		timer := time.AfterFunc(1500*time.Millisecond, srv.Restart)
		defer timer.Stop()
		p := start(t, bin, freePort(t), redisEnv(t, srv, "late")...)
		p.call(t, "/login", url.Values{"name": {"alice"}})
		if !strings.Contains(p.log.String(), "redis not answering, retrying") {
			t.Errorf("no retry logged:\n%s", p.log)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		port := freePort(t) // nothing listens there
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "APPSERVER_STORE=redis", "APPSERVER_REDIS_HOST=127.0.0.1",
			fmt.Sprint("APPSERVER_REDIS_PORT=", port), fmt.Sprint("APPSERVER_PORT=", freePort(t)))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		if err == nil {
			t.Fatalf("started without Redis:\n%s", out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		last := lines[len(lines)-1]
		want := fmt.Sprintf("appserver: redis 127.0.0.1:%d unreachable", port)
		if !strings.HasPrefix(last, want) || !strings.Contains(last, "connection refused") {
			t.Fatalf("last line %q, want %q...: connection refused", last, want)
		}
		if took < redisStartupWait-time.Second || took > redisStartupWait+10*time.Second {
			t.Errorf("gave up after %v, want about %v", took, redisStartupWait)
		}
		t.Logf("gave up after %v: %s", took.Round(time.Millisecond), last)
	})

	t.Run("wrong password", func(t *testing.T) {
		srv.Restart()
		rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
		defer rdb.Close()
		if err := rdb.ConfigSet(t.Context(), "requirepass", "right-secret").Err(); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), append(redisEnv(t, srv, "pw"), "APPSERVER_REDIS_PASSWORD=wrong-secret",
			fmt.Sprint("APPSERVER_PORT=", freePort(t)))...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("started with a wrong password:\n%s", out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, "appserver: redis "+srv.Addr()+" refused the connection") ||
			time.Since(start) > 5*time.Second {
			t.Fatalf("after %v, last line %q", time.Since(start), last)
		}
		if strings.Contains(string(out), "wrong-secret") {
			t.Fatalf("the password appears in the output:\n%s", out)
		}
		t.Logf("%s", last)
	})
}

// TestRedisOutagePassivatedRoom: a room whose actor was passivated and is brought back
// during an outage must not come up with an empty audience (and keep it once Redis is back).
func TestRedisOutagePassivatedRoom(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := binary(t)
	srv := redistest.Start(t)
	env := append(redisEnv(t, srv, "passivated"), "APPSERVER_ACTORS_IDLETIMEOUT=1s")
	app := start(t, bin, freePort(t), env...)
	h := field(t, app.call(t, "/login", url.Values{"name": {"h"}}), "id")
	v := field(t, app.call(t, "/login", url.Values{"name": {"v"}}), "id")
	room := field(t, app.call(t, "/live/create", url.Values{"uid": {h}}), "roomId")
	app.get(t, "/ali/stream/notify?action=publish&id="+room)
	app.call(t, "/live/play", url.Values{"uid": {v}, "roomId": {room}})
	time.Sleep(3 * time.Second) // idle for longer than actors.idleTimeout: passivated

	srv.Stop()
	if a := app.do("/im/room/users", url.Values{"roomId": {room}}); a.code == 200 && string(a.data) == "[]" {
		t.Errorf("audience during the outage: empty, want 503 or [%s]", v)
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, _ := app.readyStatus(t); st == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := app.audience(t, room); !slices.Equal(got, []string{v}) {
		t.Fatalf("audience after the outage: %v, want [%s]", got, v)
	}
}
