//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/persistence/redis/redistest"
)

// ngxMemberTTL is the nodes' cluster.memberTTL (the default).
const ngxMemberTTL = 3 * time.Second

// TestClusterBehindNginx runs the set-up README "Running a cluster" describes: one Redis,
// three nodes, and nginx in front with docs/nginx-cluster.conf. Everything goes through
// nginx: login, a room, a viewer, a WebSocket subscription, a comment, the publish callback
// and the list. Then the node that owns the room is killed with SIGKILL, and requests
// through nginx must keep succeeding, the room answering again within memberTTL + 5 s.
func TestClusterBehindNginx(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary, redis-server and nginx")
	}
	nginxBin := ngxLookPath(t)
	srv := redistest.Start(t)
	bin := binary(t)

	lbPort, opsPort := freePort(t), freePort(t)
	lb := &proc{base: fmt.Sprintf("http://127.0.0.1:%d", lbPort)}
	ops := fmt.Sprintf("http://127.0.0.1:%d", opsPort)
	const token = "ngx-test-admin-token-0123456789abcdef"
	names := []string{"n1", "n2", "n3"}
	nodes := map[string]*proc{}
	var nodePorts []int
	for _, name := range names {
		port := freePort(t)
		env := append(redisEnv(t, srv, "ngx"),
			"APPSERVER_CLUSTER_ENABLED=true", "APPSERVER_CLUSTER_NODE="+name,
			"APPSERVER_CLUSTER_MEMBERTTL="+ngxMemberTTL.String(), "APPSERVER_ADMIN_TOKEN="+token,
			"APPSERVER_HTTP_PUBLICURL="+lb.base, "APPSERVER_HTTP_TRUSTEDPROXIES=127.0.0.1")
		nodes[name] = start(t, bin, port, env...)
		nodePorts = append(nodePorts, port)
	}
	ngx := ngxStart(t, nginxBin, lbPort, opsPort, nodePorts)
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range names {
				t.Logf("--- node %s log (tail):\n%s", name, ngxTail(nodes[name].log.String(), 30))
			}
			t.Logf("--- nginx error log (tail):\n%s", ngxTail(ngx.errorLog(), 30))
		}
	})

	// One service through nginx.
	host := field(t, lb.call(t, "/login", url.Values{"name": {"alice"}}), "id")
	viewer := field(t, lb.call(t, "/login", url.Values{"name": {"carol"}}), "id")
	created := lb.call(t, "/live/create", url.Values{"uid": {host}, "desc": {"behind nginx"}})
	room := field(t, created, "roomId")
	var createdData struct {
		MNS struct {
			TopicLocation string `json:"topicLocation"`
		} `json:"mns"`
	}
	require.NoError(t, json.Unmarshal(created, &createdData))
	assert.Equal(t, "ws"+strings.TrimPrefix(lb.base, "http")+"/ws?topic="+room, createdData.MNS.TopicLocation,
		"http.publicUrl sends clients to nginx, not to a node")
	lb.call(t, "/live/play", url.Values{"uid": {viewer}, "roomId": {room}})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn := ngxDial(t, ctx, lb.base, room, 0)
	lb.call(t, "/live/comment", url.Values{"uid": {viewer}, "roomId": {room}, "comment": {"hello through nginx"}})
	comment := ngxReadType(t, ctx, conn, 6, "hello through nginx")

	pub := lb.do("/ali/stream/notify?action=publish&id="+room, nil)
	require.NoError(t, pub.err)
	require.Equal(t, 200, pub.status)
	require.Equal(t, 200, pub.code, pub.message)
	published := ngxReadType(t, ctx, conn, 9, "")
	require.Greater(t, published.Seq, comment.Seq)
	lastSeq := published.Seq
	// Listed rooms are publishing and mix-ready: the mix stream's availability callback.
	mix := lb.do("/ali/mix/availability/notify?Event=MixAvailable&Stream="+room+"_mix", nil)
	require.NoError(t, mix.err)
	require.Equal(t, 200, mix.code, mix.message)
	conn.CloseNow()

	// Read models follow the feed: any node lists the room within a second; poll through
	// nginx, which spreads the requests over the nodes.
	ngxEventually(t, "the room listed as publishing through nginx", 5*time.Second, func() bool {
		return ngxListed(lb, room) == 1
	})

	// The operators' routes are not public: only the operators' port reaches them.
	for _, path := range []string{"/metrics", "/console", "/console/api/rooms", "/admin/cluster", "/reset"} {
		res, err := client.Get(lb.base + path)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusNotFound, res.StatusCode, "public %s", path)
	}
	res, err := client.Get(ops + "/metrics")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, "/metrics on the operators' port")

	info := ngxCluster(t, ops, token, room)
	require.Len(t, info.Members, 3)
	killedName, owner := info.Owner, nodes[info.Owner]
	require.NotNil(t, owner, "owner %q is not one of the nodes", info.Owner)
	t.Logf("room %s is owned by %s; killing it with SIGKILL", room, killedName)

	// kill -9 the owner: nginx skips it (connection refused → next upstream), and once its
	// membership expires another node takes the room over.
	require.NoError(t, owner.cmd.Process.Signal(syscall.SIGKILL))
	_ = owner.cmd.Wait()
	killed := time.Now()
	deadline := killed.Add(ngxMemberTTL + 5*time.Second)

	type probe struct {
		what     string
		do       func() bool
		failures int
		okAfter  time.Duration
	}
	probes := []*probe{
		{what: "login", do: func() bool {
			a := lb.do("/login", url.Values{"name": {"dave"}})
			return a.err == nil && a.code == 200
		}},
		{what: "list", do: func() bool { return ngxListed(lb, room) == 1 }},
		{what: "comment in the killed node's room", do: func() bool {
			a := lb.do("/live/comment", url.Values{"uid": {viewer}, "roomId": {room}, "comment": {"still here"}})
			return a.err == nil && a.code == 200
		}},
		{what: "the room's audience", do: func() bool {
			a := lb.do("/im/room/users", url.Values{"roomId": {room}})
			return a.err == nil && a.code == 200 && strings.Contains(string(a.data), `"id":"`+viewer+`"`)
		}},
	}
	for attempt := 0; attempt < 1000; attempt++ {
		pending := 0
		for _, p := range probes {
			if p.okAfter > 0 {
				continue
			}
			if p.do() {
				p.okAfter = time.Since(killed)
			} else {
				p.failures++
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range probes {
		t.Logf("after the kill: %s succeeded after %v (%d failed attempts)", p.what,
			p.okAfter.Round(time.Millisecond), p.failures)
		assert.NotZero(t, p.okAfter, "%s through nginx did not succeed within memberTTL + 5 s", p.what)
	}
	require.False(t, t.Failed())

	// The room lives on another node now, and the cluster says so.
	ngxEventually(t, "the killed node out of the members", 5*time.Second, func() bool {
		return len(ngxCluster(t, ops, token, room).Members) == 2
	})
	info = ngxCluster(t, ops, token, room)
	assert.NotEqual(t, killedName, info.Owner, "the room's owner after the kill")
	assert.NotNil(t, nodes[info.Owner], "owner %q is not one of the nodes", info.Owner)

	// A client reconnecting through nginx with since gets what it missed (the comment sent
	// while the room moved) and what comes next, numbered on from before the kill.
	conn = ngxDial(t, ctx, lb.base, room, lastSeq)
	missed := ngxReadType(t, ctx, conn, 6, "still here")
	assert.Greater(t, missed.Seq, lastSeq)
	lb.call(t, "/live/comment", url.Values{"uid": {viewer}, "roomId": {room}, "comment": {"after the move"}})
	next := ngxReadType(t, ctx, conn, 6, "after the move")
	assert.Greater(t, next.Seq, missed.Seq)
}

// ngxLookPath finds Debian's nginx; a missing one fails the test (like a missing
// redis-server): a silently skipped test would look like a passing one.
func ngxLookPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("nginx is not installed: run `make test` (its test-deps step installs it through " +
		"scripts/test-deps.sh) or `sudo apt-get install nginx`")
	return ""
}

// ngxProc is the nginx master this test started.
type ngxProc struct {
	cmd *exec.Cmd
	dir string
}

func (n *ngxProc) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}

// ngxStart runs nginx in the foreground with docs/nginx-cluster.conf, its listen port and
// upstream servers rewritten to port and nodePorts, everything else in a temporary
// directory. It returns once nginx answers /healthz through the nodes.
func ngxStart(t *testing.T, bin string, port, opsPort int, nodePorts []int) *ngxProc {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "nginx-cluster.conf"))
	require.NoError(t, err)
	site := string(doc)
	// The documented file names the nodes of `make cluster` and port 8080: point it at ours.
	replace := map[string]string{"listen 8080;": fmt.Sprintf("listen 127.0.0.1:%d;", port),
		"listen 127.0.0.1:8081;": fmt.Sprintf("listen 127.0.0.1:%d;", opsPort)}
	for i, p := range nodePorts {
		replace[fmt.Sprintf("server 127.0.0.1:%d ", 4101+i)] = fmt.Sprintf("server 127.0.0.1:%d ", p)
	}
	for from, to := range replace {
		require.Contains(t, site, from, "docs/nginx-cluster.conf changed shape")
		site = strings.Replace(site, from, to, 1)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events { worker_connections 512; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/roomengine.conf;
}
`, dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "roomengine.conf"), []byte(site), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644))

	cmd := exec.Command(bin, "-p", dir+"/", "-c", filepath.Join(dir, "nginx.conf"), "-e",
		filepath.Join(dir, "error.log"), "-g", "daemon off;")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// The kernel ends nginx if the test binary dies without running its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n := &ngxProc{cmd: cmd, dir: dir}
	t.Cleanup(func() {
		// SIGTERM to the master we started: it stops its workers and exits.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for attempt := 0; ; attempt++ {
		select {
		case <-exited:
			t.Fatalf("nginx exited at start:\n%s\n%s", out, n.errorLog())
		default:
		}
		res, err := client.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return n
			}
		}
		if attempt > 300 || time.Now().After(deadline) {
			t.Fatalf("nginx not answering /healthz: %v\n%s\n%s", err, out, n.errorLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ngxFrame is one /ws frame.
type ngxFrame struct {
	Seq     uint64 `json:"seq"`
	Message struct {
		Type int            `json:"type"`
		Data map[string]any `json:"data"`
	} `json:"message"`
}

// ngxDial subscribes to topic through nginx (since > 0: replay after since).
func ngxDial(t *testing.T, ctx context.Context, base, topic string, since uint64) *websocket.Conn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/ws?topic=" + topic
	if since > 0 {
		u += fmt.Sprintf("&since=%d", since)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, u, nil)
	require.NoError(t, err, "WebSocket through nginx")
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

// ngxReadType reads frames until one of type typ, with that comment text if comment is not
// empty (50 frames and 15 s at most).
func ngxReadType(t *testing.T, ctx context.Context, conn *websocket.Conn, typ int, comment string) ngxFrame {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var seen []int
	for range 50 {
		_, raw, err := conn.Read(rctx)
		require.NoError(t, err, "waiting for a type %d frame (got types %v)", typ, seen)
		var f ngxFrame
		require.NoError(t, json.Unmarshal(raw, &f), "frame %s", raw)
		if f.Message.Type == typ && (comment == "" || f.Message.Data["comment"] == comment) {
			return f
		}
		seen = append(seen, f.Message.Type)
	}
	t.Fatalf("no type %d frame among %v", typ, seen)
	return ngxFrame{}
}

// ngxListed is the room's status in the default /live/list (-1: not listed or no answer).
func ngxListed(p *proc, room string) int {
	a := p.do("/live/list", url.Values{})
	if a.err != nil || a.code != 200 {
		return -1
	}
	var rooms []struct {
		RoomID string `json:"roomId"`
		Status int    `json:"status"`
	}
	if json.Unmarshal(a.data, &rooms) != nil {
		return -1
	}
	for _, r := range rooms {
		if r.RoomID == room {
			return r.Status
		}
	}
	return -1
}

// ngxClusterInfo is the data of GET /admin/cluster.
type ngxClusterInfo struct {
	Node    string `json:"node"`
	Owner   string `json:"owner"`
	Members []struct {
		Node string `json:"node"`
		Addr string `json:"addr"`
	} `json:"members"`
}

// ngxCluster asks GET /admin/cluster?roomId=room at base.
func ngxCluster(t *testing.T, base, token, room string) ngxClusterInfo {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/admin/cluster?roomId="+url.QueryEscape(room), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var env struct {
		Code    int
		Message string
		Data    ngxClusterInfo
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&env))
	require.Equal(t, 200, env.Code, "/admin/cluster: %s", env.Message)
	return env.Data
}

// ngxEventually polls cond every 20 ms until it holds, for at most within.
func ngxEventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for attempt := 0; !cond(); attempt++ {
		if attempt > 10000 || time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ngxTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
