package http_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// With auth.required a room's auth_key is its host's: /live/create answers it to the host,
// /live/list to the host for its own rooms only; everyone else gets the URL without it.
// Nothing a run logs, at debug level, has a token, a ticket, a signed URL or a secret.
func TestSecretsStayWithTheirOwner(t *testing.T) {
	logs := &syncBuffer{}
	const cbKey = "callback-key-0123456789abcdef0123456789"
	s := newServer(t, serverOpts{authRequired: true, logOut: logs, callbackAuthKey: cbKey, adminToken: "admin-token-0123456789abcdef0123456789"})
	var alice, bob struct{ ID, Token string }
	mustOK(t, s.post(t, "/login", "name", "alice"), &alice)
	mustOK(t, s.post(t, "/login", "name", "bob"), &bob)
	var room roomObject
	mustOK(t, s.do(t, "POST", "/live/create", "application/json", `{"uid":"`+alice.ID+`"}`, bearer(alice.Token)...), &room)
	if !strings.Contains(room.RtmpURL, "auth_key=") {
		t.Fatalf("the host's own create answer lacks auth_key: %s", room.RtmpURL)
	}
	R := room.RoomID
	for _, path := range []string{"/ali/stream/notify?action=publish&id=" + R,
		"/ali/mix/availability/notify?Stream=" + R + "_mix&Event=MixAvailable"} {
		mustOK(t, s.do(t, "GET", path, "", "", signedHeaders("push.example", cbKey, time.Now())...), nil)
	}
	listed := func(token string) roomObject {
		t.Helper()
		var rooms []roomObject
		mustOK(t, s.do(t, "GET", "/live/list", "", "", bearer(token)...), &rooms)
		if len(rooms) != 1 {
			t.Fatalf("list: %+v", rooms)
		}
		return rooms[0]
	}
	if got := listed(alice.Token).RtmpURL; got != room.RtmpURL {
		t.Fatalf("the host's list: %s, want %s", got, room.RtmpURL)
	}
	other := listed(bob.Token).RtmpURL
	if strings.Contains(other, "auth_key") || !strings.HasPrefix(room.RtmpURL, other) {
		t.Fatalf("another user's list: %s (the host's: %s), want it without auth_key", other, room.RtmpURL)
	}

	// A run through the routes that handle secrets, then the log.
	var tk struct{ Ticket string }
	mustOK(t, s.do(t, "POST", "/ws/ticket", "", "", bearer(bob.Token)...), &tk)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	base := "ws" + strings.TrimPrefix(s.URL, "http") + "/ws?topic=" + R
	for _, cred := range []string{"ticket=" + tk.Ticket, "token=" + bob.Token, "ticket=" + tk.Ticket} {
		if c, _, err := websocket.Dial(ctx, base+"&"+cred, nil); err == nil {
			c.CloseNow()
		}
	}
	mustOK(t, s.do(t, "POST", "/live/comment", "application/json", `{"uid":"`+bob.ID+`","roomId":"`+R+`","comment":"hi"}`, bearer(bob.Token)...), nil)
	s.do(t, "POST", "/live/comment", "application/json", `{"uid":"`+bob.ID+`","roomId":"`+R+`","comment":"x"}`, bearer(alice.Token)...)
	s.do(t, "GET", "/ali/stream/notify?action=publish_done&id="+R, "", "", signedHeaders("push.example", "wrong-key", time.Now())...)
	s.do(t, "POST", "/reset", "", "", "Authorization", "Bearer wrong-admin-token-0123456789abcdef")
	req, _ := http.NewRequest("GET", s.URL+"/live/list?token="+alice.Token, nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
	mustOK(t, s.do(t, "POST", "/live/leave", "application/json", `{"roomId":"`+R+`"}`, bearer(alice.Token)...), nil)

	out := logs.String()
	if !strings.Contains(out, "level=DEBUG") {
		t.Fatal("the run logged nothing at debug level: the check below would be empty")
	}
	for name, secret := range map[string]string{"alice's token": alice.Token, "bob's token": bob.Token, "a ticket": tk.Ticket,
		"a signed push URL": "auth_key=", "the URL signing key": "secretkey", "the callback key": cbKey,
		"the token secret": "test-secret", "the admin token": "admin-token-0123456789"} {
		if strings.Contains(out, secret) {
			i := strings.Index(out, secret)
			t.Errorf("the log has %s: …%s…", name, out[max(0, i-200):min(len(out), i+100)])
		}
	}
}
