package http_test

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// listCodes sends n GET /live/list with the headers and returns the envelope codes.
func listCodes(t *testing.T, s *server, n int, header ...string) []int {
	t.Helper()
	var codes []int
	for range n {
		codes = append(codes, s.do(t, "GET", "/live/list", "", "", header...).Code)
	}
	return codes
}

func allCodes(codes []int, want int) bool {
	for _, c := range codes {
		if c != want {
			return false
		}
	}
	return true
}

// Through a trusted proxy (loopback) each client has its own rate limit, found from the
// right of X-Forwarded-For; a spoofed left-most entry does not escape it. From a peer that
// is not trusted the header is ignored: every request is the peer's.
func TestRateLimitPerForwardedClient(t *testing.T) {
	s := newServer(t, serverOpts{rateLimit: 0.001, rateBurst: 2, trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	a := []string{"X-Forwarded-For", "198.51.100.1"}
	if codes := listCodes(t, s, 3, a...); codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("client A: %v, want 200 200 429", codes)
	}
	if codes := listCodes(t, s, 2, "X-Forwarded-For", "198.51.100.2"); !allCodes(codes, 200) {
		t.Fatalf("client B after A was limited: %v, want its own limit", codes)
	}
	if codes := listCodes(t, s, 2, "X-Forwarded-For", "203.0.113.77, 198.51.100.1"); !allCodes(codes, 429) {
		t.Fatalf("client A with a spoofed left-most entry: %v, want still limited", codes)
	}
	if codes := listCodes(t, s, 1, "Forwarded", `for="198.51.100.3:4711"`); !allCodes(codes, 200) {
		t.Fatalf("client C by Forwarded: %v", codes)
	}

	untrusted := newServer(t, serverOpts{rateLimit: 0.001, rateBurst: 2, trustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	codes := append(listCodes(t, untrusted, 2, "X-Forwarded-For", "198.51.100.1"), listCodes(t, untrusted, 1, "X-Forwarded-For", "198.51.100.2")...)
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("headers from an untrusted peer: %v, want one shared limit (200 200 429)", codes)
	}
}

// With maxConnsPerUser 4 the fifth socket of one user is refused with HTTP 429 before the
// upgrade, while another user still connects; a closed socket frees its place.
func TestWSConnsPerUser(t *testing.T) {
	s := newServer(t, serverOpts{authRequired: true, maxWSConnsPerUser: 4})
	var alice, bob struct{ ID, Token string }
	mustOK(t, s.post(t, "/login", "name", "alice"), &alice)
	mustOK(t, s.post(t, "/login", "name", "bob"), &bob)
	var room roomObject
	mustOK(t, s.do(t, "POST", "/live/create", "application/json", `{"uid":"`+alice.ID+`"}`, bearer(alice.Token)...), &room)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := "ws" + strings.TrimPrefix(s.URL, "http") + "/ws?topic=" + room.RoomID
	var open []*websocket.Conn
	for i := range 4 {
		c, _, err := websocket.Dial(ctx, base+"&token="+alice.Token, nil)
		if err != nil {
			t.Fatalf("socket %d of alice: %v", i+1, err)
		}
		open = append(open, c)
		t.Cleanup(func() { c.CloseNow() })
	}
	if _, res, err := websocket.Dial(ctx, base+"&token="+alice.Token, nil); err == nil || res == nil || res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fifth socket of alice: %v (%v), want HTTP 429", err, res)
	}
	b, _, err := websocket.Dial(ctx, base+"&token="+bob.Token, nil)
	if err != nil {
		t.Fatalf("bob while alice is at her limit: %v", err)
	}
	b.CloseNow()
	open[0].Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _, err := websocket.Dial(ctx, base+"&token="+alice.Token, nil)
		if err == nil {
			c.CloseNow()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice after closing a socket: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// POST /ws/ticket hands out a ticket for one /ws?ticket= within 30 s; it is no token, and
// a second use is refused.
func TestWSTickets(t *testing.T) {
	s := newServer(t, serverOpts{authRequired: true})
	var alice struct{ ID, Token string }
	mustOK(t, s.post(t, "/login", "name", "alice"), &alice)
	var room roomObject
	mustOK(t, s.do(t, "POST", "/live/create", "application/json", `{"uid":"`+alice.ID+`"}`, bearer(alice.Token)...), &room)
	if r := s.do(t, "POST", "/ws/ticket", "", ""); r.Code != 401 {
		t.Fatalf("ticket without a token: %+v", r)
	}
	var tk struct {
		Ticket    string
		ExpiresIn int
	}
	mustOK(t, s.do(t, "POST", "/ws/ticket", "", "", bearer(alice.Token)...), &tk)
	if tk.Ticket == "" || tk.ExpiresIn != 30 || strings.Contains(tk.Ticket, alice.Token) {
		t.Fatalf("ticket %+v", tk)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := "ws" + strings.TrimPrefix(s.URL, "http") + "/ws?topic=" + room.RoomID
	c, _, err := websocket.Dial(ctx, base+"&ticket="+tk.Ticket, nil)
	if err != nil {
		t.Fatalf("/ws with a ticket: %v", err)
	}
	c.CloseNow()
	for name, ticket := range map[string]string{"used twice": tk.Ticket, "forged": "eHl6.abc", "a token": alice.Token} {
		if _, res, err := websocket.Dial(ctx, base+"&ticket="+ticket, nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("ticket %s: %v (%v), want HTTP 401", name, err, res)
		}
	}
	// A ticket is no token for the API.
	if r := s.do(t, "POST", "/live/comment", "application/json", `{"uid":"`+alice.ID+`","roomId":"`+room.RoomID+`","comment":"x"}`,
		bearer(tk.Ticket)...); r.Code != 401 {
		t.Fatalf("ticket as a token: %+v", r)
	}
}
