package http_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maxLogPerBadRequest bounds what one request may add to the log, however large its values.
const maxLogPerBadRequest = 4096

// everyRoute lists each route with the parameters it reads (docs/api.md: routes, callbacks, the /ws gateway).
var everyRoute = []struct {
	method, path string
	params       []string
}{
	{"POST", "/login", []string{"name"}},
	{"POST", "/im/room/users", []string{"roomId"}},
	{"POST", "/live/create", []string{"uid", "desc"}},
	{"POST", "/live/play", []string{"roomId", "uid"}},
	{"POST", "/live/audience/leave", []string{"roomId", "uid"}},
	{"POST", "/live/leave", []string{"roomId"}},
	{"POST", "/live/comment", []string{"uid", "roomId", "comment"}},
	{"POST", "/live/like", []string{"uid", "roomId"}},
	{"POST", "/live/list", []string{"roomId", "offset", "limit"}},
	{"POST", "/videocall/invite", []string{"inviterUid", "inviteeUid", "liveRoomId", "inviterType", "type"}},
	{"POST", "/videocall/feedback", []string{"status", "inviterUid", "inviteeUid", "inviterType", "inviteeType", "type"}},
	{"POST", "/videocall/close", []string{"closeRoomId", "closeRooomId", "notifiedRoomId"}},
	{"POST", "/mns/topic/websocket/info", []string{"topic", "subscriptionName"}},
	{"POST", "/reset", []string{"key"}},
	{"GET", "/ali/stream/notify", []string{"action", "id"}},
	{"GET", "/ali/mix/availability/notify", []string{"Stream", "Event"}},
	{"GET", "/ali/mix/status/notify", []string{"MainMixStream", "MixStream", "Code", "Message", "Event"}},
	{"POST", "/ali/mix/callback", []string{"MixStreamId", "MainMixStream", "Code", "Event", "Message"}},
	{"GET", "/ws", []string{"topic", "tags", "since"}},
	{"GET", "/no/such/route", []string{"uid"}},
	{"DELETE", "/live/comment", []string{"uid"}},
}

// TestLargeValuesDoNotFloodTheLog sends every route huge values (in the query and in a
// JSON body; unknown, and mixed with known ids so the requests get past the first lookup)
// and checks that each request adds a bounded amount to the log.
func TestLargeValuesDoNotFloodTheLog(t *testing.T) {
	logs := &syncBuffer{}
	s := newServer(t, serverOpts{logOut: logs, maxBody: 1 << 20, callbackAuthKey: "", adminToken: "admin"})
	var room roomObject
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	big := strings.Repeat("9", 200_000)

	requests := 0
	send := func(method, path string, query url.Values, body map[string]string, header ...string) {
		t.Helper()
		before := len(logs.String())
		target := path
		if len(query) > 0 {
			target += "?" + query.Encode()
		}
		var raw []byte
		if body != nil {
			raw, _ = json.Marshal(body)
		}
		s.do(t, method, target, "application/json", string(raw), header...)
		requests++
		grown := len(logs.String()) - before
		assert.LessOrEqual(t, grown, maxLogPerBadRequest, "%s %s: the log grew by %d bytes", method, path, grown)
	}
	for _, r := range everyRoute {
		for _, known := range []string{"", "1", room.RoomID} {
			q, b := url.Values{}, map[string]string{}
			for i, p := range r.params {
				v := big
				if known != "" && i%2 == 1 {
					v = known // one real id next to a huge one
				}
				q.Set(p, v[:min(len(v), 50_000)])
				b[p] = v
			}
			send(r.method, r.path, q, nil)
			send(r.method, r.path, nil, b)
			send(r.method, r.path, nil, b, "Authorization", "Bearer "+big[:4000])
		}
	}
	send("GET", "/"+big[:100_000], nil, nil)
	total := len(logs.String())
	require.LessOrEqual(t, total, requests*maxLogPerBadRequest/2, "the log holds %d bytes after %d requests", total, requests)
}
