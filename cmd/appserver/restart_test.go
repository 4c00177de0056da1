package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomengine/http/apitest"
)

// binary builds the real appserver (with the race detector) once per test process; TestMain
// removes it.
func binary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "appserver-test-")
		if build.err != nil {
			return
		}
		bin := filepath.Join(build.dir, "appserver")
		out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("build: %v\n%s", err, out)
			return
		}
		build.bin = bin
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

var build struct {
	once     sync.Once
	dir, bin string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	// Every answer the tests got from an appserver matches docs/openapi.yaml.
	if !apitest.Report(os.Stderr) && code == 0 {
		code = 1
	}
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type proc struct {
	cmd  *exec.Cmd
	base string
	log  *syncBuffer
}

// syncBuffer collects a child's output; exec copies into it from its own goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the binary with env on port and waits until /readyz answers.
func start(t *testing.T, bin string, port int, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append([]string{fmt.Sprint("APPSERVER_PORT=", port), "APPSERVER_IP=127.0.0.1"}, env...)...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), log: logs}
	apiCheck.Watch(p.base)
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(p.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not become ready: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killAndRestart kills the process with SIGKILL and starts the binary again with env on
// the same port.
func (p *proc) killAndRestart(t *testing.T, bin string, port int, env ...string) *proc {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	return start(t, bin, port, env...)
}

// dialTopic subscribes to a room's topic on the gateway; the connection closes with the test.
func dialTopic(t *testing.T, ctx context.Context, port int, topic string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws?topic=%s", port, topic), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

func (p *proc) call(t *testing.T, path string, form url.Values) json.RawMessage {
	t.Helper()
	env := p.post(t, path, form)
	if env.Code != 200 {
		t.Fatalf("%s %v: code %d %s", path, form, env.Code, env.Message)
	}
	return env.Data
}

// apiAnswer is the envelope of an API answer.
type apiAnswer struct {
	Code    int
	Message string
	Data    json.RawMessage
}

// post posts a form and returns the envelope, whatever its code.
func (p *proc) post(t *testing.T, path string, form url.Values) apiAnswer {
	t.Helper()
	res, err := http.PostForm(p.base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var env apiAnswer
	if err := json.NewDecoder(res.Body).Decode(&env); err != nil {
		t.Fatalf("%s %v: %v", path, form, err)
	}
	return env
}

func field(t *testing.T, raw json.RawMessage, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(m[name])
}

// TestKillNineAndRestart: everything acknowledged before kill -9 is there after a restart on
// the same data directory, ids continue without reuse, and a pending no-publish expiry fires
// at its original deadline.
func TestKillNineAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := binary(t)
	dataDir := t.TempDir()
	const timeout = 8 * time.Second
	env := []string{"APPSERVER_DATADIR=" + dataDir, "APPSERVER_LIVE_NOPUBLISHTIMEOUT=" + timeout.String(),
		"APPSERVER_LIVE_TOPICDELETEDELAY=1s"}
	port := freePort(t)
	first := start(t, bin, port, env...)

	host := first.call(t, "/login", url.Values{"name": {"alice"}})
	viewer := first.call(t, "/login", url.Values{"name": {"carol"}})
	if field(t, host, "id") != "1" || field(t, viewer, "id") != "2" {
		t.Fatalf("ids: %s %s", host, viewer)
	}
	// Room A is publishing with an audience; room B has a pending no-publish expiry.
	roomA := field(t, first.call(t, "/live/create", url.Values{"uid": {"1"}, "desc": {"kept"}}), "roomId")
	first.call(t, "/live/play", url.Values{"uid": {"2"}, "roomId": {roomA}})
	if _, err := http.Get(first.base + "/ali/stream/notify?action=publish&id=" + roomA); err != nil {
		t.Fatal(err)
	}
	createdAfter := time.Now()
	roomB := field(t, first.call(t, "/live/create", url.Values{"uid": {"2"}}), "roomId")
	createdBefore := time.Now()

	second := first.killAndRestart(t, bin, port, env...)
	// Subscribe to B before its deadline to see when the type 8 arrives.
	ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
	defer cancel()
	conn := dialTopic(t, ctx, port, roomB)

	var rooms []map[string]any
	if err := json.Unmarshal(second.call(t, "/live/list", url.Values{"roomId": {"-1"}}), &rooms); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, r := range rooms {
		status[fmt.Sprint(r["roomId"])] = fmt.Sprint(r["status"])
	}
	if status[roomA] != "1" || status[roomB] != "0" || len(rooms) != 2 {
		t.Fatalf("rooms after restart: %v", rooms)
	}
	var audience []map[string]string
	_ = json.Unmarshal(second.call(t, "/im/room/users", url.Values{"roomId": {roomA}}), &audience)
	if len(audience) != 1 || audience[0]["id"] != "2" || audience[0]["name"] != "carol" {
		t.Fatalf("audience after restart: %v", audience)
	}
	if id := field(t, second.call(t, "/login", url.Values{"name": {"dave"}}), "id"); id != "3" {
		t.Fatalf("id after restart = %s, want 3 (no reuse, no gap)", id)
	}
	if name := field(t, second.call(t, "/live/play", url.Values{"uid": {"1"}, "roomId": {roomB}}), "name"); name != "alice" {
		t.Fatalf("user 1 after restart: %s", name)
	}

	// The deadline lies in [createdAfter, createdBefore] + timeout.
	expectExpiry(t, ctx, conn, createdAfter.Add(timeout), createdBefore.Add(timeout), 50*time.Millisecond, time.Second)
}

// expectExpiry reads the next frame of conn, which must be the type 8 of a room expiring at
// a deadline in [from, to], and checks it arrived no more than early before from and late
// after to.
func expectExpiry(t *testing.T, ctx context.Context, conn *websocket.Conn, from, to time.Time, early, late time.Duration) {
	t.Helper()
	_, raw, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("no expiry message: %v", err)
	}
	firedAt := time.Now()
	var f struct {
		Message struct{ Type int } `json:"message"`
	}
	_ = json.Unmarshal(raw, &f)
	if f.Message.Type != 8 {
		t.Fatalf("first frame is %s, want type 8", raw)
	}
	earliest, latest := from.Add(-early), to.Add(late)
	if firedAt.Before(earliest) || firedAt.After(latest) {
		t.Fatalf("expiry fired at %v, want within [%v, %v]", firedAt.Format(time.StampMilli),
			earliest.Format(time.StampMilli), latest.Format(time.StampMilli))
	}
	t.Logf("expiry fired %v after its deadline", firedAt.Sub(to).Round(time.Millisecond))
}

// TestSIGTERMDrains: SIGTERM stops the server cleanly with exit status 0.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := binary(t)
	p := start(t, bin, freePort(t), "APPSERVER_DATADIR="+t.TempDir())
	p.call(t, "/login", url.Values{"name": {"alice"}})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit 20 s after SIGTERM\n%s", p.log)
	}
	if !strings.Contains(p.log.String(), "stopped") {
		t.Fatalf("no clean stop in the log:\n%s", p.log)
	}
}

// TestBadConfigStopsStartup: a wrong value stops start-up with one clear line.
func TestBadConfigStopsStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := binary(t)
	for _, c := range []struct{ env, want string }{
		{"APPSERVER_STORE=mysql", "store"},
		{"APPSERVER_LIVE_NOPUBLISHTIMEOUT=3 minutes", "noPublishTimeout"},
		{"APPSERVER_PORT=70000", "PORT"},
	} {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), c.env)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("%s: started", c.env)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(strings.ToLower(lines[0]), strings.ToLower(c.want)) {
			t.Fatalf("%s: want one line naming %s, got:\n%s", c.env, c.want, out)
		}
	}

	// A port already in use is found before anything starts (no store is opened, no actor
	// system started): one line naming the keys, exit 2.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "APPSERVER_IP=127.0.0.1", fmt.Sprintf("APPSERVER_PORT=%d", port),
		"APPSERVER_DATADIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("port in use: %v, want exit 2; output:\n%s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 ||
		!strings.Contains(lines[0], "ip/port") || !strings.Contains(lines[0], "address already in use") {
		t.Fatalf("port in use: want one line naming ip/port, got:\n%s", out)
	}
}
