package http_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roomengine/aliyun"
	apihttp "roomengine/http"
)

// mediaRoom logs a host in and creates a room; it returns the room id and the push URL's
// auth_key.
func mediaRoom(t *testing.T, s *server) (string, string) {
	t.Helper()
	var u struct{ ID string }
	mustOK(t, s.post(t, "/login", "name", "host"), &u)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", u.ID), &room)
	push, err := url.Parse(room.RtmpURL)
	require.NoError(t, err)
	return room.RoomID, push.Query().Get("auth_key")
}

// nginxHook posts an nginx-rtmp notification as nginx does (a form body; the stream URL's
// arguments are fields of it) to the hook URL with query.
func nginxHook(t *testing.T, s *server, query string, form url.Values) reply {
	t.Helper()
	return s.do(t, "POST", "/media/nginx-rtmp"+query, "application/x-www-form-urlencoded", form.Encode())
}

func nginxForm(call, name, authKey string) url.Values {
	f := url.Values{"call": {call}, "app": {"DemoApp"}, "name": {name}, "addr": {"127.0.0.1"}, "clientid": {"7"},
		"tcurl": {"rtmp://127.0.0.1:1935/DemoApp"}, "flashver": {"FMLE/3.0"}, "type": {"live"}}
	if authKey != "" {
		f.Set("auth_key", authKey)
	}
	return f
}

// nginx-rtmp's on_publish and on_publish_done map to the room events of
// /ali/stream/notify: push 9 once, push 10 once, whatever the repeats.
func TestNginxRTMPHookPublishAndDone(t *testing.T) {
	s := newServer(t, serverOpts{templateName: "_mix", media: apihttp.MediaHooks{AppName: "DemoApp", AuthKey: "secretkey"}})
	room, key := mediaRoom(t, s)
	sub := s.subscribe(t, "topic="+room)

	for range 2 { // idempotent: the repeat is accepted and pushes nothing
		r := nginxHook(t, s, "", nginxForm("publish", room, key))
		assert.Equal(t, [2]int{200, 200}, [2]int{r.Status, r.Code}, r.Message)
	}
	sub.expect(9, room, 5, map[string]any{"roomId": room})
	var rooms []roomObject
	mustOK(t, s.post(t, "/live/list", "roomId", "-1"), &rooms)
	require.Len(t, rooms, 1)
	assert.Equal(t, 1, rooms[0].Status, "publishing")

	for range 2 {
		r := nginxHook(t, s, "", nginxForm("publish_done", room, ""))
		assert.Equal(t, [2]int{200, 200}, [2]int{r.Status, r.Code}, r.Message)
	}
	sub.expect(10, room, 5, map[string]any{"roomId": room})
	mustOK(t, s.post(t, "/live/list", "roomId", "-1"), &rooms)
	assert.Equal(t, 0, rooms[0].Status, "not publishing any more")

	// Other notifications (on_play, on_done) are accepted and change nothing.
	r := nginxHook(t, s, "", nginxForm("play", room, ""))
	assert.Equal(t, 200, r.Status)
}

// Only the room's own push URL goes live: a publish without, with a wrong or with an
// expired auth_key, to an unknown or ended room, or to another app is refused with a 4xx
// (nginx then drops the encoder), and changes nothing.
func TestNginxRTMPHookRefusals(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s := newServer(t, serverOpts{now: clock, templateName: "_mix",
		media: apihttp.MediaHooks{AppName: "DemoApp", AuthKey: "secretkey"}})
	room, key := mediaRoom(t, s)
	other, otherKey := mediaRoom(t, s)
	mustOK(t, s.post(t, "/live/leave", "roomId", other), nil)
	expired := aliyun.AuthKeyA("/DemoApp/"+room, now.Add(-time.Second).Unix(), "secretkey")
	for name, tc := range map[string]struct {
		form         url.Values
		status, code int
	}{
		"no auth_key":        {nginxForm("publish", room, ""), 403, 403},
		"wrong auth_key":     {nginxForm("publish", room, strings.Replace(key, "-0-0-", "-0-1-", 1)), 403, 403},
		"another room's key": {nginxForm("publish", room, otherKey), 403, 403},
		"expired auth_key":   {nginxForm("publish", room, expired), 403, 403},
		"unknown room":       {nginxForm("publish", "00000000ff", aliyun.AuthKeyA("/DemoApp/00000000ff", now.Add(time.Hour).Unix(), "secretkey")), 404, 2003},
		"ended room":         {nginxForm("publish", other, otherKey), 404, 2003},
		"another app": {func() url.Values {
			f := nginxForm("publish", room, aliyun.AuthKeyA("/other/"+room, now.Add(time.Hour).Unix(), "secretkey"))
			f.Set("app", "other")
			return f
		}(), 404, 2003},
		"no name": {url.Values{"call": {"publish"}, "app": {"DemoApp"}}, 400, 20001},
	} {
		t.Run(name, func(t *testing.T) {
			r := nginxHook(t, s, "", tc.form)
			assert.Equal(t, [2]int{tc.status, tc.code}, [2]int{r.Status, r.Code}, r.Message)
		})
	}
	var rooms []roomObject
	mustOK(t, s.post(t, "/live/list", "roomId", room), &rooms)
	assert.Empty(t, rooms, "the room is not live: nothing was accepted")
}

// The mixer's own output (room + template) is accepted and recognised: its publish tells
// the mixer the mix flows.
func TestNginxRTMPHookRecognisesTheMixOutput(t *testing.T) {
	outputs := &fakeOutputs{}
	s := newServer(t, serverOpts{templateName: "_mix",
		media: apihttp.MediaHooks{AppName: "DemoApp", AuthKey: "secretkey", Outputs: outputs}})
	room, _ := mediaRoom(t, s)
	mixKey := aliyun.AuthKeyA("/DemoApp/"+room+"_mix", time.Now().Add(time.Hour).Unix(), "secretkey")
	r := nginxHook(t, s, "", nginxForm("publish", room+"_mix", mixKey))
	assert.Equal(t, [2]int{200, 200}, [2]int{r.Status, r.Code}, r.Message)
	r = nginxHook(t, s, "", nginxForm("publish_done", room+"_mix", ""))
	assert.Equal(t, 200, r.Status)
	assert.Equal(t, []string{"published " + room + "_mix", "done " + room + "_mix"}, outputs.seen)
	// Unsigned, it is refused like any publish.
	r = nginxHook(t, s, "", nginxForm("publish", room+"_mix", ""))
	assert.Equal(t, 403, r.Status)
}

type fakeOutputs struct{ seen []string }

func (f *fakeOutputs) OutputPublished(s string) bool {
	f.seen = append(f.seen, "published "+s)
	return true
}

func (f *fakeOutputs) OutputDone(s string) bool {
	f.seen = append(f.seen, "done "+s)
	return true
}

// media.hookSecret and media.hookAllow authenticate the hooks; each applies when set.
func TestMediaHookAuthentication(t *testing.T) {
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	_, elsewhere, _ := net.ParseCIDR("10.0.0.0/8")
	for name, tc := range map[string]struct {
		hooks  apihttp.MediaHooks
		query  string
		status int
	}{
		"secret right":        {apihttp.MediaHooks{Secret: "s3cret"}, "?secret=s3cret", 200},
		"secret wrong":        {apihttp.MediaHooks{Secret: "s3cret"}, "?secret=s3cres", 403},
		"secret missing":      {apihttp.MediaHooks{Secret: "s3cret"}, "", 403},
		"address allowed":     {apihttp.MediaHooks{Allow: []*net.IPNet{loopback}}, "", 200},
		"address not allowed": {apihttp.MediaHooks{Allow: []*net.IPNet{elsewhere}}, "", 403},
		"both, address wrong": {apihttp.MediaHooks{Secret: "s3cret", Allow: []*net.IPNet{elsewhere}}, "?secret=s3cret", 403},
		"both right":          {apihttp.MediaHooks{Secret: "s3cret", Allow: []*net.IPNet{elsewhere, loopback}}, "?secret=s3cret", 200},
	} {
		t.Run(name, func(t *testing.T) {
			s := newServer(t, serverOpts{media: tc.hooks})
			room, _ := mediaRoom(t, s)
			r := nginxHook(t, s, tc.query, nginxForm("publish", room, ""))
			assert.Equal(t, tc.status, r.Status, r.Message)
			res := srsPost(t, s, "/media/srs"+tc.query, fmt.Sprintf(srsV5Publish, room, ""))
			assert.Equal(t, tc.status, res.status, res.body)
		})
	}
}

// SRS's callback bodies as its documentation shows them: before SRS 5 (client_id a
// number, param with a query) and since (client_id a string, server_id, stream_url…).
const (
	srsV4Publish = `{"action": "on_publish", "client_id": 1985, "ip": "192.168.1.10", "vhost": "video.test.com", ` +
		`"app": "DemoApp", "tcUrl": "rtmp://video.test.com/DemoApp?auth_key=%[2]s", "stream": "%[1]s", "param": "?auth_key=%[2]s"}`
	srsV4Unpublish = `{"action": "on_unpublish", "client_id": 1985, "ip": "192.168.1.10", "vhost": "video.test.com", ` +
		`"app": "DemoApp", "stream": "%[1]s", "param": "?auth_key=%[2]s"}`
	srsV5Publish = `{"server_id": "vid-0xk989d", "service_id": "4p9t8n5y", "action": "on_publish", "client_id": "341w361a", ` +
		`"ip": "127.0.0.1", "vhost": "__defaultVhost__", "app": "DemoApp", "tcUrl": "rtmp://127.0.0.1:1935/DemoApp", ` +
		`"stream": "%[1]s", "param": "%[2]s", "stream_url": "/DemoApp/%[1]s", "stream_id": "vid-124q9y3"}`
	srsConnect = `{"action": "on_connect", "client_id": 1985, "ip": "192.168.1.10", "vhost": "video.test.com", ` +
		`"app": "DemoApp", "tcUrl": "rtmp://video.test.com/DemoApp", "pageUrl": ""}`
)

type rawAnswer struct {
	status int
	body   string
}

func srsPost(t *testing.T, s *server, path, body string) rawAnswer {
	t.Helper()
	res, err := http.Post(s.URL+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return rawAnswer{res.StatusCode, string(b)}
}

// SRS's on_publish / on_unpublish: HTTP 200 with the body 0 accepts; a refusal is anything
// else (a 4xx with the envelope). They map to pushes 9 and 10 like nginx-rtmp's.
func TestSRSHook(t *testing.T) {
	s := newServer(t, serverOpts{templateName: "_mix", media: apihttp.MediaHooks{AppName: "DemoApp", AuthKey: "secretkey"}})
	room, key := mediaRoom(t, s)
	sub := s.subscribe(t, "topic="+room)

	assert.Equal(t, rawAnswer{200, "0"}, srsPost(t, s, "/media/srs", srsConnect), "other actions are accepted")
	refused := srsPost(t, s, "/media/srs", fmt.Sprintf(srsV5Publish, room, ""))
	assert.Equal(t, 403, refused.status, "no auth_key: %s", refused.body)
	assert.NotEqual(t, "0", refused.body)
	assert.Equal(t, rawAnswer{200, "0"}, srsPost(t, s, "/media/srs", fmt.Sprintf(srsV4Publish, room, key)))
	assert.Equal(t, rawAnswer{200, "0"}, srsPost(t, s, "/media/srs", fmt.Sprintf(srsV5Publish, room, "?auth_key="+key)),
		"a repeat (SRS 5's body) is accepted")
	sub.expect(9, room, 5, map[string]any{"roomId": room})
	assert.Equal(t, rawAnswer{200, "0"}, srsPost(t, s, "/media/srs", fmt.Sprintf(srsV4Unpublish, room, key)))
	sub.expect(10, room, 5, map[string]any{"roomId": room})

	for name, body := range map[string]string{
		"not JSON":     `action=on_publish`,
		"no action":    `{"stream": "` + room + `"}`,
		"unknown room": fmt.Sprintf(srsV4Publish, "00000000ff", aliyun.AuthKeyA("/DemoApp/00000000ff", time.Now().Add(time.Hour).Unix(), "secretkey")),
	} {
		res := srsPost(t, s, "/media/srs", body)
		assert.True(t, res.status >= 400 && res.status < 500, "%s: %d %s", name, res.status, res.body)
		assert.NotEqual(t, "0", res.body, name)
	}
}

// The hooks are exempt from the per-IP rate limit: a media server sends every stream's
// notifications from one address.
func TestMediaHooksAreRateLimitExempt(t *testing.T) {
	s := newServer(t, serverOpts{rateLimit: 1, rateBurst: 1})
	for i := range 20 {
		r := nginxHook(t, s, "", nginxForm("publish_done", "00000000ff", ""))
		require.Equal(t, 200, r.Code, "hook %d: %s", i, r.Message)
		require.Equal(t, rawAnswer{200, "0"}, srsPost(t, s, "/media/srs", srsConnect), "hook %d", i)
	}
}
