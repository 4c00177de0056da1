package main

import (
	"path/filepath"

	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"roomengine/persistence/embedded"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	goredis "github.com/redis/go-redis/v9"

	redisstore "roomengine/persistence/redis"
	"roomengine/persistence/redis/redistest"
)

// Legacy room ids as the old server made them.
const (
	legacyLive     = "a1a1a1a1a1" // status 1, in a mix
	legacyWaiting  = "b2b2b2b2b2" // status 0, no description
	legacyEnded    = "c3c3c3c3c3" // status 2
	legacyCostream = "d4d4d4d4d4" // status 10, type 1
	legacyOrphan   = "e5e5e5e5e5" // host unknown
)

// seedLegacy writes the old Node server's keys (prefix mns) the way it wrote them: numbers
// and strings mixed.
func seedLegacy(t *testing.T, srv *redistest.Server) {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := t.Context()
	room := func(uid any, id string, status, typ int, extra string) string {
		return fmt.Sprintf(`{"uid":%s,"name":"n%v","roomId":"%s","rtmpUrl":"rtmp://old/DemoApp/%s?auth_key=x",`+
			`"playUrl":"http://old/DemoApp/%s_mix.flv","status":%d,"type":%d,"mns":{"topic":"%s"},`+
			`"createTime":"2026-11-25 08:06:12"%s}`, uid, strings.Trim(fmt.Sprint(uid), `"`), id, id, id, status, typ, id, extra)
	}
	for _, err := range []error{
		rdb.HSet(ctx, "mns/user/list",
			"1", `{"id":1,"name":"alice"}`, "2", `{"id":"2","name":"bob"}`,
			"3", `{"id":3,"name":"carol"}`, "7", `{"id":7,"name":"grace"}`).Err(),
		rdb.Set(ctx, "mns_user_ID_Index", 9, 0).Err(), // users 8 and 9 were deleted
		rdb.HSet(ctx, "mns/live/list",
			legacyLive, room(`1`, legacyLive, 1, 2, `,"isMixReady":true,"isMixed":true,"mixedStatus":1,"description":"alice live"`),
			legacyWaiting, room(`"2"`, legacyWaiting, 0, 2, ``),
			legacyEnded, room(`3`, legacyEnded, 2, 2, ``),
			legacyCostream, room(`3`, legacyCostream, 10, 1, ``),
			legacyOrphan, room(`42`, legacyOrphan, 0, 2, ``)).Err(),
		rdb.HSet(ctx, "mns/inviter/list", "1", `{"inviterUid":1,"inviteeUid":3}`).Err(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func importLegacy(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runImportLegacy(args, env, &out, &errb)
	return code, out.String(), errb.String()
}

// TestImportLegacy imports the old server's data from the same Redis and runs the real
// binary on it: users keep their ids, ids continue after the old counter, live rooms are
// there, and a room that was waiting for its stream ends noPublishTimeout after the import.
func TestImportLegacy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	srv := redistest.Start(t)
	seedLegacy(t, srv)
	// The binary is built before the import: the imported waiting room's deadline runs from
	// the import, and a build on a busy machine must not eat it.
	bin := binary(t)
	const timeout = 10 * time.Second
	env := append(redisEnv(t, srv, "new"), "APPSERVER_LIVE_NOPUBLISHTIMEOUT="+timeout.String())
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	code, out, errs := importLegacy(t, env, "-dry-run")
	if code != 0 || !strings.Contains(out, "dry run: nothing written") ||
		!strings.Contains(out, "users: 4 to import, 0 already present; new ids start after 9") ||
		!strings.Contains(out, "rooms: 2 to import (1 publishing, 1 end at") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errs)
	}
	if keys, _ := rdb.Keys(t.Context(), "new:*").Result(); len(keys) != 0 {
		t.Fatalf("the dry run wrote %v", keys)
	}

	importedAt := time.Now()
	code, out, errs = importLegacy(t, env)
	if code != 0 || !strings.Contains(out, "users: 4 imported") || !strings.Contains(out, "rooms: 2 imported") ||
		!strings.Contains(out, "co-streaming records: 1 not imported") {
		t.Fatalf("import: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("import output:\n%s", out)
	for _, skipped := range []string{legacyEnded, legacyCostream, legacyOrphan} {
		if !strings.Contains(errs, skipped) {
			t.Errorf("skipping room %s not logged:\n%s", skipped, errs)
		}
	}
	// Again: nothing new, nothing broken.
	code, out, errs = importLegacy(t, env)
	if code != 0 || !strings.Contains(out, "users: 0 imported, 4 already present") || !strings.Contains(out, "rooms: 0 imported") {
		t.Fatalf("second import: exit %d\n%s\n%s", code, out, errs)
	}

	port := freePort(t)
	app := start(t, bin, port, env...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws?topic=%s", port, legacyWaiting), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()

	var rooms []map[string]any
	if err := json.Unmarshal(app.call(t, "/live/list", url.Values{"roomId": {"-1"}}), &rooms); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, r := range rooms {
		got[fmt.Sprint(r["roomId"])] = r
	}
	live, waiting := got[legacyLive], got[legacyWaiting]
	if len(got) != 2 || live == nil || waiting == nil {
		t.Fatalf("rooms after import: %v", rooms)
	}
	for k, want := range map[string]any{"uid": "1", "name": "n1", "status": 1.0, "type": 2.0, "isMixReady": true,
		"isMixed": false, "mixedStatus": 0.0, "description": "alice live", "createTime": "2026-11-25 08:06:12",
		"rtmpUrl": "rtmp://old/DemoApp/" + legacyLive + "?auth_key=x"} {
		if live[k] != want {
			t.Errorf("live room %s = %v, want %v", k, live[k], want)
		}
	}
	for k, want := range map[string]any{"uid": "2", "status": 0.0, "description": "n2的直播"} {
		if waiting[k] != want {
			t.Errorf("waiting room %s = %v, want %v", k, waiting[k], want)
		}
	}
	if name := field(t, app.call(t, "/live/play", url.Values{"uid": {"7"}, "roomId": {legacyLive}}), "name"); name != "grace" {
		t.Fatalf("user 7: %s", name)
	}
	if id := field(t, app.call(t, "/login", url.Values{"name": {"new"}}), "id"); id != "10" {
		t.Fatalf("first new id %s, want 10 (after the old counter 9)", id)
	}

	_, raw, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("no expiry of the waiting room: %v", err)
	}
	firedAt := time.Now()
	var f struct {
		Message struct{ Type int } `json:"message"`
	}
	_ = json.Unmarshal(raw, &f)
	if f.Message.Type != 8 {
		t.Fatalf("first frame on the waiting room: %s", raw)
	}
	if d := firedAt.Sub(importedAt.Add(timeout)); d < -time.Second || d > 2*time.Second {
		t.Fatalf("waiting room ended %v after import+timeout", d)
	}
	if got := app.roomsByID(t); len(got) != 1 || got[legacyLive] != 1 {
		t.Fatalf("rooms after the expiry: %v", got)
	}
}

// TestImportLegacyRefuses: a store whose ids are taken by other users, and a store that
// cannot import ids, stop the import before anything is written.
func TestImportLegacyRefuses(t *testing.T) {
	srv := redistest.Start(t)
	seedLegacy(t, srv)

	env := redisEnv(t, srv, "taken")
	store, err := redisstore.Open(t.Context(), redisstore.Options{Addr: srv.Addr(), KeyPrefix: "taken", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.CreateUser(t.Context(), "zed"); err != nil { // id 1, not alice
		t.Fatal(err)
	}
	code, out, errs := importLegacy(t, env)
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if code != 1 || !strings.Contains(lines[len(lines)-1], `id 1 is "zed" here and "alice" in the old data`) {
		t.Fatalf("conflict: exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := store.GetUser(t.Context(), "2"); err == nil {
		t.Fatal("user 2 written despite the conflict")
	}
	if rooms, _ := store.LoadRooms(t.Context()); len(rooms) != 0 {
		t.Fatalf("rooms written despite the conflict: %v", rooms)
	}

	// The embedded store imports too (users keep their ids, the counter moves past them).
	dataDir := t.TempDir()
	embeddedEnv := []string{"APPSERVER_DATADIR=" + dataDir, "APPSERVER_REDIS_HOST=127.0.0.1",
		"APPSERVER_REDIS_PORT=" + strings.Split(srv.Addr(), ":")[1]}
	code, out, errs = importLegacy(t, embeddedEnv, "-dry-run")
	if code != 0 || !strings.Contains(out, "users: 4 to import") {
		t.Fatalf("embedded dry run: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = importLegacy(t, embeddedEnv)
	if code != 0 {
		t.Fatalf("embedded import: exit %d\n%s\n%s", code, out, errs)
	}
	emb, err := embedded.Open(filepath.Join(dataDir, "roomengine.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := emb.GetUser(t.Context(), "7"); err != nil || u.Name != "grace" {
		t.Fatalf("imported user 7 in the embedded store: %+v %v", u, err)
	}
	if u, err := emb.CreateUser(t.Context(), "new"); err != nil || u.ID != "10" {
		t.Fatalf("first new id after import = %+v %v, want 10", u, err)
	}
	_ = emb.Close()

	// An explicit source that is not there.
	code, _, errs = importLegacy(t, env, "-from", "127.0.0.1:1")
	if code != 1 || !strings.Contains(errs, "127.0.0.1:1") {
		t.Fatalf("unreachable source: exit %d\n%s", code, errs)
	}
}
