package http_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/actors"
	"roomengine/aliyun"
	apihttp "roomengine/http"
	"roomengine/http/apitest"
	"roomengine/http/gateway"
	"roomengine/internal/logcap"
	"roomengine/persistence/embedded"
	"roomengine/push"
)

type server struct {
	handler http.Handler
	URL     string
	Addr    string
	engine  *actors.Engine
	sim     *aliyun.Simulator
}

type serverOpts struct {
	adminToken      string
	maxBody         int64
	bodyReadTimeout time.Duration
	// Callback authentication and the MNS info route (callbackauth_test.go, mnsinfo_test.go).
	callbackAuthKey string
	callbackMaxSkew time.Duration
	now             func() time.Time
	mnsInfo         apihttp.MNSInfo
	logOut          io.Writer // nil: logs are discarded
	reg             *prometheus.Registry
	// Security switches of docs/api.md (auth_test.go).
	authRequired bool
	tokenTTL     time.Duration
	rateLimit    float64
	rateBurst    int
	corsOrigins  []string
	// The edge (edge_test.go).
	trustedProxies    []netip.Prefix
	maxWSConnsPerUser int
	// The publish hooks of a self-hosted media server (media_test.go).
	media        apihttp.MediaHooks
	templateName string
}

// newServer starts the real stack (embedded store in a temp dir, actors, gateway, router)
// behind a real HTTP server.
func newServer(t *testing.T, o serverOpts) *server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if o.logOut != nil {
		// As cmd/appserver does: every component logs through logcap.
		log = logcap.Wrap(slog.New(slog.NewTextHandler(o.logOut, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	store, err := embedded.Open(filepath.Join(t.TempDir(), "test.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := o.reg
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	feed := push.NewMemory(push.MemoryOptions{})
	gw := gateway.New(gateway.Options{Feed: feed, Logger: log, Registerer: reg})
	urls := &aliyun.URLBuilder{AppName: "DemoApp", RtmpHost: "push.example", PlayHost: "play.example",
		TemplateName: "_mix", AuthKey: "secretkey", TopicBase: "http://127.0.0.1:8090"}
	sim := &aliyun.Simulator{Domain: "play.example", App: "DemoApp"}
	eng, err := actors.NewEngine(actors.EngineConfig{
		Room:  actors.RoomConfig{NoPublishTimeout: time.Hour, TopicDeleteDelay: time.Minute},
		Store: store, Publisher: feed, URLs: urls, Logger: log, AskTimeout: 5 * time.Second, Mixer: sim,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := apihttp.NewHandler(apihttp.Options{
		Engine: eng, Gateway: gw, Ready: store.Ping, URLs: urls,
		Tokens:       apihttp.NewTokenSigner([]byte("test-secret"), cmp.Or(o.tokenTTL, time.Hour)),
		AuthRequired: o.authRequired, RateLimit: o.rateLimit, RateBurst: o.rateBurst, CORSOrigins: o.corsOrigins,
		MaxBodyBytes: o.maxBody, BodyReadTimeout: o.bodyReadTimeout, AdminToken: o.adminToken, Logger: log,
		Registerer: reg, Gatherer: reg,
		MNSInfo: o.mnsInfo, CallbackAuthKey: o.callbackAuthKey, CallbackRtmpHost: "push.example",
		CallbackMaxSkew: o.callbackMaxSkew, Now: o.now,
		TrustedProxies: o.trustedProxies, MaxWSConnsPerUser: o.maxWSConnsPerUser, TicketSecret: []byte("test-secret"),
		Media: o.media, TemplateName: o.templateName,
	})
	// The simulated CDN's MixResult callback arrives like Aliyun's: as a raw HTTP request
	// line with unencoded spaces, on the server's own (space-tolerant) listener.
	ts := httptest.NewUnstartedServer(h)
	ts.Listener = apihttp.SpaceTolerant(ts.Listener)
	ts.Start()
	addr := ts.Listener.Addr().String()
	apiCheck.Watch(addr)
	sim.Notify = func(query string) { rawGet(addr, "/ali/mix/status/notify?"+query) }
	if o.callbackAuthKey != "" {
		clock := o.now
		if clock == nil {
			clock = time.Now
		}
		sim.Notify = func(query string) {
			rawGetHeaders(addr, "/ali/mix/status/notify?"+query, signedHeaders("push.example", o.callbackAuthKey, clock()))
		}
	}
	t.Cleanup(func() {
		ts.Close()
		sim.Wait()
		_ = gw.Shutdown(context.Background())
		eng.Shutdown()
		_ = store.Close()
	})
	return &server{handler: h, URL: ts.URL, Addr: addr, engine: eng, sim: sim}
}

type reply struct {
	Status  int
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func (s *server) do(t *testing.T, method, path, contentType, body string, header ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var r reply
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s %s: answer is not an envelope: %q", method, path, raw)
	}
	r.Status = res.StatusCode
	return r
}

// post sends a JSON body built from key/value pairs.
func (s *server) post(t *testing.T, path string, kv ...any) reply {
	t.Helper()
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return s.do(t, "POST", path, "application/json", string(b))
}

func (s *server) get(t *testing.T, path string) reply { return s.do(t, "GET", path, "", "") }

func mustOK(t *testing.T, r reply, v any) {
	t.Helper()
	require.Equal(t, [2]int{200, 200}, [2]int{r.Status, r.Code}, "HTTP status and code of %+v", r)
	if v != nil {
		require.NoError(t, json.Unmarshal(r.Data, v), "data %s", r.Data)
	}
}

type frame struct {
	Topic      string `json:"topic"`
	Seq        int64  `json:"seq"`
	Tag        string `json:"tag"`
	Importance int    `json:"importance"`
	Message    struct {
		Type int             `json:"type"`
		Time int64           `json:"time"`
		Data json.RawMessage `json:"data"`
	} `json:"message"`
}

type subscriber struct {
	conn *websocket.Conn
	t    *testing.T
}

func (s *server) subscribe(t *testing.T, query string) *subscriber {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/ws?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &subscriber{conn: conn, t: t}
}

func (sub *subscriber) next() frame {
	sub.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, raw, err := sub.conn.Read(ctx)
	if err != nil {
		sub.t.Fatalf("read frame: %v", err)
	}
	require.NoError(sub.t, apiCheck.Validator.CheckFrame(raw))
	var f frame
	if err := json.Unmarshal(raw, &f); err != nil {
		sub.t.Fatalf("frame %q: %v", raw, err)
	}
	return f
}

// expect reads the next frame and checks its type, tag, importance and data fields.
func (sub *subscriber) expect(typ int, tag string, importance int, data map[string]any) frame {
	sub.t.Helper()
	f := sub.next()
	checkFrame(sub.t, f, typ, tag, importance, data)
	return f
}

type roomObject struct {
	UID, Name, RoomID, RtmpURL, PlayURL, M3U8PlayURL, RtmpPlayURL string
	Status, Type                                                  int
	IsMixReady, IsMixed                                           bool
	MNS                                                           map[string]string
	Description, CreateTime                                       string
}

// The newcomer flow of the README, through HTTP and a WebSocket subscriber.
func TestNewcomerFlow(t *testing.T) {
	s := newServer(t, serverOpts{})
	var alice, carol struct{ ID, Name, Token string }
	mustOK(t, s.post(t, "/login", "name", "alice"), &alice)
	mustOK(t, s.do(t, "POST", "/login", "application/x-www-form-urlencoded", "name=carol"), &carol)
	assert.Equal(t, "1", alice.ID)
	assert.Equal(t, "2", carol.ID)
	assert.NotEmpty(t, alice.Token)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", 1, "desc", "alice live"), &room) // uid as a number
	R := room.RoomID
	require.Len(t, R, 10)
	assert.Equal(t, "1", room.UID)
	assert.Equal(t, "alice", room.Name)
	assert.Equal(t, [2]int{0, 2}, [2]int{room.Status, room.Type}, "status, type")
	assert.Equal(t, "alice live", room.Description)
	assert.Equal(t, R, room.MNS["topic"])
	assert.Equal(t, "1", room.MNS["userRoomTag"])
	assert.Equal(t, "http://play.example/DemoApp/"+R+"_mix.flv", room.PlayURL)
	assert.True(t, strings.HasPrefix(room.RtmpURL, "rtmp://push.example/DemoApp/"+R+"?auth_key="), room.RtmpURL)
	_, err := time.ParseInLocation(actors.CreateTimeLayout, room.CreateTime, time.Local)
	assert.NoError(t, err, "createTime %q", room.CreateTime)
	viewer := s.subscribe(t, "topic="+R+"&tags="+R+","+carol.ID)

	var play struct {
		UID, RoomID, PlayURL string
		MNS                  map[string]string
	}
	mustOK(t, s.post(t, "/live/play", "roomId", R, "uid", "2"), &play) // uid as a string
	assert.Equal(t, "2", play.UID)
	assert.Equal(t, R, play.RoomID)
	assert.Equal(t, map[string]string{"topic": R, "roomTag": R, "userRoomTag": "2", "topicLocation": "http://127.0.0.1:8090/topics/" + R}, play.MNS)
	var users []actors.User
	mustOK(t, s.get(t, "/im/room/users?roomId="+R), &users)
	assert.Equal(t, []actors.User{{ID: "2", Name: "carol"}}, users)

	mustOK(t, s.post(t, "/live/comment", "uid", 2, "roomId", R, "comment", "hello 你好"), nil)
	viewer.expect(6, R, 8, map[string]any{"uid": "2", "name": "carol", "comment": "hello 你好"})
	mustOK(t, s.post(t, "/live/like", "uid", "2", "roomId", R), nil)
	viewer.expect(7, R, 9, map[string]any{"uid": "2", "name": "carol"})

	mustOK(t, s.get(t, "/ali/stream/notify?action=publish&id="+R+"&app=DemoApp"), nil)
	viewer.expect(9, R, 5, map[string]any{"uid": "1", "name": "alice", "roomId": R})
	var listed []roomObject
	mustOK(t, s.get(t, "/live/list"), &listed)
	assert.Empty(t, listed, "listed before mix-ready")
	mustOK(t, s.get(t, "/ali/mix/availability/notify?Stream="+R+"_mix&Event=MixAvailable"), nil)
	mustOK(t, s.get(t, "/live/list"), &listed)
	require.Len(t, listed, 1, "list after publish and mix-ready")
	assert.Equal(t, R, listed[0].RoomID)
	assert.Equal(t, 1, listed[0].Status)
	assert.True(t, listed[0].IsMixReady)

	mustOK(t, s.post(t, "/live/audience/leave", "roomId", R, "uid", 2), nil)
	mustOK(t, s.do(t, "POST", "/im/room/users", "application/json", `{"roomId":"`+R+`"}`), &users)
	assert.Empty(t, users, "room users after audience leave")

	mustOK(t, s.post(t, "/live/leave", "roomId", R), nil)
	viewer.expect(8, R, 5, map[string]any{"roomId": R})
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &listed)
	assert.Empty(t, listed, "room still listed after leave")
	assert.Equal(t, 2003, s.post(t, "/live/play", "roomId", R, "uid", 2).Code, "play after leave")
}

func TestTagFilteringOverTheGateway(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "host"), nil)
	mustOK(t, s.post(t, "/login", "name", "fan"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	// A subscriber that only wants messages tagged with some other uid sees none of the
	// room-tagged messages; one without tags sees all.
	other := s.subscribe(t, "topic="+R+"&tags=someone-else")
	all := s.subscribe(t, "topic="+R)
	mustOK(t, s.post(t, "/live/comment", "uid", "2", "roomId", R, "comment", "one"), nil)
	all.expect(6, R, 8, map[string]any{"comment": "one"})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, raw, err := other.conn.Read(ctx); err == nil {
		t.Fatalf("a subscriber filtering on another tag received %s", raw)
	}
}

func TestSinceReplayOverTheGateway(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "host"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	first := s.subscribe(t, "topic="+R)
	for i := range 5 {
		mustOK(t, s.post(t, "/live/comment", "uid", "1", "roomId", R, "comment", fmt.Sprint("c", i)), nil)
	}
	var seqs []int64
	for range 5 {
		seqs = append(seqs, first.next().Seq)
	}
	// A client that saw up to the second message reconnects with since and gets exactly the
	// three it missed, in order, then live ones.
	again := s.subscribe(t, fmt.Sprintf("topic=%s&since=%d", R, seqs[1]))
	for i := 2; i < 5; i++ {
		f := again.expect(6, R, 8, map[string]any{"comment": fmt.Sprint("c", i)})
		if f.Seq != seqs[i] {
			t.Fatalf("replayed seq %d, want %d", f.Seq, seqs[i])
		}
	}
	mustOK(t, s.post(t, "/live/comment", "uid", "1", "roomId", R, "comment", "live"), nil)
	if f := again.expect(6, R, 8, map[string]any{"comment": "live"}); f.Seq != seqs[4]+1 {
		t.Fatalf("live seq %d after replay, want %d", f.Seq, seqs[4]+1)
	}
}

// Bad input gets a clear envelope, never a crash or a 5xx, and changes nothing.
func TestBadInput(t *testing.T) {
	s := newServer(t, serverOpts{maxBody: 1024})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	R := room.RoomID
	cases := []struct {
		name, method, path, ctype, body string
		status, code                    int
		msg                             string
	}{
		{"login without name", "POST", "/login", "application/json", `{}`, 200, 20001, "name不能为空"},
		{"login empty name", "POST", "/login", "application/json", `{"name":""}`, 200, 20001, "name"},
		{"login null name", "POST", "/login", "application/json", `{"name":null}`, 200, 20001, "name"},
		{"login object name", "POST", "/login", "application/json", `{"name":{"x":1}}`, 200, 400, "name类型错误: 不能是对象或数组"},
		{"login array name", "POST", "/login", "application/json", `{"name":["alice"]}`, 200, 400, "name类型错误"},
		{"create array uid", "POST", "/live/create", "application/json", `{"uid":[1],"device":{"os":"ios"}}`, 200, 400, "uid类型错误"},
		{"login array body", "POST", "/login", "application/json", `["alice"]`, 200, 400, "JSON"},
		{"login string body", "POST", "/login", "application/json", `"alice"`, 200, 400, "JSON"},
		{"login broken json", "POST", "/login", "application/json", `{not json`, 200, 400, "JSON"},
		{"login trailing garbage", "POST", "/login", "application/json", `{"name":"a"} x`, 200, 400, "JSON"},
		{"login text/plain ignored", "POST", "/login", "text/plain", `{"name":"x"}`, 200, 20001, "name"},
		{"login too large", "POST", "/login", "application/json", `{"name":"` + strings.Repeat("x", 2000) + `"}`, 413, 413, "过大"},
		{"login long name", "POST", "/login", "application/json", `{"name":"` + strings.Repeat("x", 200) + `"}`, 200, 400, "name过长"},
		{"create without uid", "POST", "/live/create", "application/json", `{"desc":"x"}`, 200, 20001, "uid不能为空"},
		{"create unknown uid", "POST", "/live/create", "application/json", `{"uid":999999}`, 200, 2002, "999999"},
		{"create uid zero", "POST", "/live/create", "application/json", `{"uid":0}`, 200, 2002, ""},
		{"create huge number uid", "POST", "/live/create", "application/json", `{"uid":1e400}`, 200, 2002, ""},
		{"play without roomId", "POST", "/live/play", "application/json", `{"uid":1}`, 200, 20001, "roomId不能为空"},
		{"play without uid", "POST", "/live/play", "application/json", `{"roomId":"` + R + `"}`, 200, 20001, "uid不能为空"},
		{"play unknown room", "POST", "/live/play", "application/json", `{"roomId":"nosuchroom","uid":1}`, 200, 2003, "nosuchroom"},
		{"play unknown user", "POST", "/live/play", "application/json", `{"roomId":"` + R + `","uid":999}`, 200, 2002, "999"},
		{"comment without comment", "POST", "/live/comment", "application/json", `{"uid":1,"roomId":"` + R + `"}`, 200, 20001, "comment不能为空"},
		{"comment unknown room", "POST", "/live/comment", "application/json", `{"uid":1,"roomId":"nosuchroom","comment":"x"}`, 200, 2003, ""},
		{"comment unknown user", "POST", "/live/comment", "application/json", `{"uid":999,"roomId":"` + R + `","comment":"x"}`, 200, 2002, ""},
		{"like without roomId", "POST", "/live/like", "application/json", `{"uid":1}`, 200, 20001, "roomId"},
		{"leave without roomId", "POST", "/live/leave", "application/json", `{}`, 200, 20001, "roomId"},
		{"leave unknown room", "POST", "/live/leave", "application/json", `{"roomId":"nosuchroom"}`, 200, 2003, ""},
		{"audience leave without uid", "POST", "/live/audience/leave", "application/json", `{"roomId":"` + R + `"}`, 200, 20001, "uid"},
		{"room users without roomId", "POST", "/im/room/users", "application/json", `{}`, 200, 20001, "roomId"},
		{"list bad limit", "GET", "/live/list?limit=-3", "", ``, 200, 400, "limit"},
		{"list huge negative limit", "GET", "/live/list?limit=-99999999999999999999999", "", ``, 200, 400, "limit"},
		{"list fractional limit", "GET", "/live/list?limit=1.5", "", ``, 200, 400, "limit"},
		{"room users GET broken json body", "GET", "/im/room/users", "application/json", `{"roomId":`, 200, 400, "JSON"},
		{"stream notify without id", "GET", "/ali/stream/notify?action=publish", "", ``, 200, 20001, "id不能为空"},
		{"stream notify unknown id", "GET", "/ali/stream/notify?action=publish&id=nosuchroom", "", ``, 200, 200, ""},
		{"stream notify unknown action", "GET", "/ali/stream/notify?action=foo&id=" + R, "", ``, 200, 200, ""},
		{"mix available without Stream", "GET", "/ali/mix/availability/notify?Event=MixAvailable", "", ``, 200, 20001, "Stream"},
		{"mix status without params", "GET", "/ali/mix/status/notify", "", ``, 200, 20001, "MainMixStream"},
		{"stream notify POST without id", "POST", "/ali/stream/notify", "application/x-www-form-urlencoded", "action=publish", 200, 20001, "id不能为空"},
		{"mix status POST without params", "POST", "/ali/mix/status/notify", "", ``, 200, 20001, "MainMixStream"},
		{"unknown route", "GET", "/nope", "", ``, 404, 404, "Not Found"},
		{"wrong method", "GET", "/login", "", ``, 405, 405, "Method Not Allowed"},
		{"reset disabled", "POST", "/reset", "application/json", `{}`, 403, 403, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(t, c.method, c.path, c.ctype, c.body)
			assert.Equal(t, [2]int{c.status, c.code}, [2]int{r.Status, r.Code}, "HTTP status and code (%q)", r.Message)
			assert.Contains(t, r.Message, c.msg)
		})
	}
	// None of it changed anything: still one user's room, not publishing, nobody watching.
	var all []roomObject
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &all)
	require.Len(t, all, 1, "rooms after bad input")
	assert.Equal(t, R, all[0].RoomID)
	assert.Equal(t, 0, all[0].Status)
	var users []actors.User
	mustOK(t, s.get(t, "/im/room/users?roomId="+R), &users)
	assert.Empty(t, users, "audience after bad input")
	var next struct{ ID string }
	mustOK(t, s.post(t, "/login", "name", "bob"), &next)
	assert.Equal(t, "2", next.ID, "a rejected login allocated an id")
}

func TestParametersFromQueryFormAndJSON(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.do(t, "POST", "/login?name=query", "", ""), nil)
	var u struct{ ID, Name string }
	// The body wins over the query string.
	mustOK(t, s.do(t, "POST", "/login?name=query", "application/x-www-form-urlencoded", "name=form"), &u)
	if u.Name != "form" {
		t.Fatalf("body should win over query, got %q", u.Name)
	}
	var room roomObject
	mustOK(t, s.do(t, "POST", "/live/create", "application/x-www-form-urlencoded", "uid=1&desc="+url.QueryEscape("直播 1")), &room)
	if room.Description != "直播 1" {
		t.Fatalf("form desc: %q", room.Description)
	}
	mustOK(t, s.do(t, "POST", "/live/list", "application/json", `{"roomId":-1}`), nil)
	var list []roomObject
	mustOK(t, s.do(t, "POST", "/live/list", "application/json", `{"roomId":"-1","limit":"1","offset":"0"}`), &list)
	if len(list) != 1 {
		t.Fatalf("limit 1 returned %d rooms", len(list))
	}
}

func TestResetNeedsTheAdminToken(t *testing.T) {
	s := newServer(t, serverOpts{adminToken: "let-me-in"})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	mustOK(t, s.post(t, "/live/create", "uid", "1"), nil)
	r := s.do(t, "POST", "/reset", "application/json", `{}`)
	assert.Equal(t, [2]int{401, 401}, [2]int{r.Status, r.Code}, "reset without token: %+v", r)
	r = s.do(t, "POST", "/reset", "application/json", `{}`, "Authorization", "Bearer wrong")
	assert.Equal(t, [2]int{403, 403}, [2]int{r.Status, r.Code}, "reset with a wrong token: %+v", r)
	var all []roomObject
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &all)
	require.Len(t, all, 1, "a refused reset wiped rooms")
	mustOK(t, s.do(t, "POST", "/reset", "application/json", `{}`, "Authorization", "Bearer let-me-in"), nil)
	mustOK(t, s.get(t, "/live/list?roomId=-1"), &all)
	assert.Empty(t, all, "rooms after reset")
	var u struct{ ID string }
	mustOK(t, s.post(t, "/login", "name", "eve"), &u)
	assert.Equal(t, "2", u.ID, "ids are not reused after reset")
}

func TestThousandConcurrentLogins(t *testing.T) {
	s := newServer(t, serverOpts{})
	const n = 1000
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // bounded client concurrency, like a connection pool
	check := &apitest.Transport{Base: &http.Transport{MaxIdleConnsPerHost: 64}, Validator: apitest.Shared()}
	check.Watch(s.URL)
	client := &http.Client{Transport: check}
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := client.Post(s.URL+"/login", "application/json", bytes.NewBufferString(fmt.Sprintf(`{"name":"u%d"}`, i)))
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			var r struct {
				Code int
				Data struct{ ID string }
			}
			_ = json.NewDecoder(res.Body).Decode(&r)
			ids[i] = r.Data.ID
		})
	}
	wg.Wait()
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	if len(set) != n || set[""] {
		t.Fatalf("%d distinct ids for %d logins", len(set), n)
	}
	for i := 1; i <= n; i++ {
		if !set[fmt.Sprint(i)] {
			t.Fatalf("id %d missing: ids are not 1..%d", i, n)
		}
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	if r := s.get(t, "/healthz"); r.Status != 200 {
		t.Fatalf("healthz: %+v", r)
	}
	if r := s.get(t, "/readyz"); r.Status != 200 {
		t.Fatalf("readyz: %+v", r)
	}
	res, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`roomengine_http_requests_total{code="200",route="/login"} 1`,
		`roomengine_http_request_duration_seconds_bucket{route="/login"`,
		"roomengine_ws_connections",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
