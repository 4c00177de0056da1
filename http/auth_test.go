package http_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	apihttp "roomengine/http"
)

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

func TestAuthRequired(t *testing.T) {
	s := newServer(t, serverOpts{authRequired: true})
	var alice, bob struct{ ID, Token string }
	mustOK(t, s.post(t, "/login", "name", "alice"), &alice) // /login needs no token
	mustOK(t, s.post(t, "/login", "name", "bob"), &bob)

	if r := s.do(t, "POST", "/live/create", "application/json", `{"uid":"1"}`); r.Status != 401 || r.Code != 401 {
		t.Fatalf("create without a token: %+v", r)
	}
	if r := s.do(t, "POST", "/live/create", "application/json", `{"uid":"1"}`, bearer("garbage")...); r.Status != 401 {
		t.Fatalf("create with a bad token: %+v", r)
	}
	if r := s.do(t, "POST", "/live/create", "application/json", `{"uid":"1"}`, bearer(bob.Token)...); r.Status != 403 || r.Code != 403 {
		t.Fatalf("bob creating a room as alice: %+v", r)
	}
	var room roomObject
	mustOK(t, s.do(t, "POST", "/live/create", "application/json", `{"uid":"1"}`, bearer(alice.Token)...), &room)
	// The token may also come as a parameter.
	mustOK(t, s.do(t, "POST", "/live/play", "application/json", `{"uid":"2","roomId":"`+room.RoomID+`","token":"`+bob.Token+`"}`), nil)
	if r := s.do(t, "POST", "/live/comment", "application/json", `{"uid":"1","roomId":"`+room.RoomID+`","comment":"x"}`, bearer(bob.Token)...); r.Status != 403 {
		t.Fatalf("bob commenting as alice: %+v", r)
	}
	// Only the host ends a room.
	if r := s.do(t, "POST", "/live/leave", "application/json", `{"roomId":"`+room.RoomID+`"}`, bearer(bob.Token)...); r.Status != 403 {
		t.Fatalf("bob ending alice's room: %+v", r)
	}
	mustOK(t, s.do(t, "GET", "/live/list?roomId=-1", "", "", bearer(bob.Token)...), nil)
	// The scheme is case-insensitive (RFC 7235); some client libraries send "bearer".
	mustOK(t, s.do(t, "GET", "/live/list?roomId=-1", "", "", "Authorization", "bearer "+bob.Token), nil)
	if r := s.do(t, "GET", "/live/list", "", "", "Authorization", "Basic "+bob.Token); r.Status != 401 {
		t.Fatalf("list with another scheme: %+v", r)
	}
	if r := s.get(t, "/live/list"); r.Status != 401 {
		t.Fatalf("list without a token: %+v", r)
	}
	// Callbacks are not user routes: they keep working without a token.
	mustOK(t, s.get(t, "/ali/stream/notify?action=publish&id="+room.RoomID), nil)

	// The push gateway wants a token too.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/ws?topic=" + room.RoomID
	if _, res, err := websocket.Dial(ctx, wsURL, nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/ws without a token: %v", err)
	}
	conn, _, err := websocket.Dial(ctx, wsURL+"&token="+bob.Token, nil)
	if err != nil {
		t.Fatalf("/ws with a token: %v", err)
	}
	// bob reads the room's messages and his own, never those addressed to another user:
	// an invitation to carol (tagged with her uid) on this topic does not reach him.
	var carol struct{ ID, Token string }
	mustOK(t, s.post(t, "/login", "name", "carol"), &carol)
	mustOK(t, s.do(t, "POST", "/videocall/invite", "application/json",
		`{"inviterUid":"1","inviteeUid":"`+carol.ID+`","liveRoomId":"`+room.RoomID+`","inviterType":2}`, bearer(alice.Token)...), nil)
	mustOK(t, s.do(t, "POST", "/live/comment", "application/json",
		`{"uid":"2","roomId":"`+room.RoomID+`","comment":"hi"}`, bearer(bob.Token)...), nil)
	_, frame, err := conn.Read(ctx)
	if err != nil || !strings.Contains(string(frame), `"type":6`) {
		t.Fatalf("bob's first frame: %s %v, want the comment (type 6), not carol's invitation", frame, err)
	}
	conn.CloseNow()
	if _, res, err := websocket.Dial(ctx, wsURL+"&tags="+carol.ID+"&token="+bob.Token, nil); err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("/ws with another user's tag: %v", err)
	}
	own, _, err := websocket.Dial(ctx, wsURL+"&tags="+room.RoomID+","+bob.ID+"&token="+bob.Token, nil)
	if err != nil {
		t.Fatalf("/ws with the room's and his own tag: %v", err)
	}
	own.CloseNow()
	mustOK(t, s.do(t, "POST", "/live/leave", "application/json", `{"roomId":"`+room.RoomID+`"}`, bearer(alice.Token)...), nil)
}

func TestExpiredTokenIsRefused(t *testing.T) {
	s := newServer(t, serverOpts{authRequired: true, tokenTTL: time.Nanosecond})
	var alice struct{ ID, Token string }
	mustOK(t, s.post(t, "/login", "name", "alice"), &alice)
	time.Sleep(1100 * time.Millisecond) // tokens carry whole seconds
	if r := s.do(t, "POST", "/live/create", "application/json", `{"uid":"1"}`, bearer(alice.Token)...); r.Status != 401 {
		t.Fatalf("expired token: %+v", r)
	}
}

func TestTokensSurviveARestart(t *testing.T) {
	first := apihttp.NewTokenSigner([]byte("same secret"), time.Hour)
	token := first.Issue("42")
	second := apihttp.NewTokenSigner([]byte("same secret"), time.Hour) // a new process
	if uid, err := second.Verify(token); err != nil || uid != "42" {
		t.Fatalf("token after restart: %q %v", uid, err)
	}
	other := apihttp.NewTokenSigner([]byte("another secret"), time.Hour)
	if _, err := other.Verify(token); err == nil {
		t.Fatal("a token signed with another secret was accepted")
	}
	tampered := strings.Replace(token, token[:4], "NDMu", 1)
	if _, err := second.Verify(tampered); err == nil {
		t.Fatal("a tampered token was accepted")
	}
}

func TestRateLimitPerIP(t *testing.T) {
	s := newServer(t, serverOpts{rateLimit: 1, rateBurst: 3})
	codes := []int{}
	for range 5 {
		r := s.get(t, "/live/list")
		if r.Status != 200 {
			t.Fatalf("HTTP %d: an API answer is HTTP 200 even when limited (docs/api.md, Conventions)", r.Status)
		}
		codes = append(codes, r.Code)
	}
	if codes[0] != 200 || codes[2] != 200 || codes[4] != 429 {
		t.Fatalf("codes with burst 3: %v", codes)
	}
	if r := s.get(t, "/live/list"); r.Code != 429 || !strings.Contains(r.Message, "频繁") {
		t.Fatalf("limited answer: %+v", r)
	}
	// Health checks and Aliyun's callbacks are not limited.
	for range 5 {
		if r := s.get(t, "/healthz"); r.Status != 200 {
			t.Fatalf("healthz limited: %+v", r)
		}
		if r := s.get(t, "/ali/stream/notify?action=publish&id=nosuchroom"); r.Status != 200 {
			t.Fatalf("callback limited: %+v", r)
		}
	}
}

func TestCORS(t *testing.T) {
	off := newServer(t, serverOpts{})
	on := newServer(t, serverOpts{corsOrigins: []string{"https://app.example"}})
	preflight := func(base, origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", base+"/live/list", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := preflight(off.URL, "https://app.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS answered although not configured")
	}
	res := preflight(on.URL, "https://app.example")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", res.StatusCode, res.Header)
	}
	if res := preflight(on.URL, "https://evil.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS allowed an origin that is not configured")
	}
}
