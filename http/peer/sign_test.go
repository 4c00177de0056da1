package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"roomengine/actors"
)

const (
	secretA = "cluster-secret-A-0123456789abcdef0123456789"
	secretB = "cluster-secret-B-0123456789abcdef0123456789"
)

// countingEngine counts the requests that reached it.
type countingEngine struct{ n atomic.Int64 }

func (e *countingEngine) ServePeer(_ context.Context, req actors.PeerRequest) actors.PeerReply {
	e.n.Add(1)
	return actors.PeerReply{Status: actors.PeerOK, Room: &actors.Room{ID: req.ID}, Result: "room"}
}

var okRequest = actors.PeerRequest{Kind: actors.PeerRoom, ID: "1234567890", Event: "queryRoom"}

func signedServer(t *testing.T, s *Signer) (*countingEngine, string) {
	t.Helper()
	eng := &countingEngine{}
	srv := httptest.NewServer(Handler(eng, s, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return eng, strings.TrimPrefix(srv.URL, "http://")
}

// post sends body to addr with the headers set by sign (nil: unsigned) and returns the status.
func post(t *testing.T, addr string, body []byte, sign func(h http.Header)) int {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+Path, bytes.NewReader(body))
	if sign != nil {
		sign(req.Header)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// A node obeys only requests signed with its secret (or the previous one), fresh and
// never seen before; everything else is 401 and reaches nothing.
func TestSignedRequestsOnly(t *testing.T) {
	server := NewSigner(secretA, secretB)
	eng, addr := signedServer(t, server)
	body, _ := json.Marshal(okRequest)

	if rep, err := NewClient(time.Second, NewSigner(secretA, "")).Send(context.Background(), addr, okRequest); err != nil || rep.Status != actors.PeerOK {
		t.Fatalf("signed with the secret: %+v %v", rep, err)
	}
	if _, err := NewClient(time.Second, NewSigner(secretB, secretA)).Send(context.Background(), addr, okRequest); err != nil {
		t.Fatalf("signed with the previous secret: %v", err)
	}
	served := eng.n.Load()

	captured := http.Header{}
	NewSigner(secretA, "").sign(captured, kindRequest, body, "")
	old := NewSigner(secretA, "")
	old.now = func() time.Time { return time.Now().Add(-31 * time.Second) }
	future := NewSigner(secretA, "")
	future.now = func() time.Time { return time.Now().Add(31 * time.Second) }
	for name, sign := range map[string]func(http.Header){
		"unsigned":     nil,
		"wrong secret": func(h http.Header) { NewSigner(strings.Repeat("x", 40), "").sign(h, kindRequest, body, "") },
		"31 s old":     func(h http.Header) { old.sign(h, kindRequest, body, "") },
		"31 s ahead":   func(h http.Header) { future.sign(h, kindRequest, body, "") },
		"other body":   func(h http.Header) { NewSigner(secretA, "").sign(h, kindRequest, []byte(`{}`), "") },
		"reply signature": func(h http.Header) {
			NewSigner(secretA, "").sign(h, kindReply, body, "")
		},
		"no nonce": func(h http.Header) {
			NewSigner(secretA, "").sign(h, kindRequest, body, "")
			h.Del(HeaderNonce)
		},
	} {
		if code := post(t, addr, body, sign); code != http.StatusUnauthorized {
			t.Errorf("%s: HTTP %d, want 401", name, code)
		}
	}
	// The first use of a captured request is served; its replay is 401 whatever the body.
	if code := post(t, addr, body, func(h http.Header) { copyHeader(h, captured) }); code != http.StatusOK {
		t.Fatalf("first use: HTTP %d", code)
	}
	served++
	for _, b := range [][]byte{body, []byte("{garbage")} {
		if code := post(t, addr, b, func(h http.Header) { copyHeader(h, captured) }); code != http.StatusUnauthorized {
			t.Errorf("replayed nonce: HTTP %d, want 401", code)
		}
	}
	if got := eng.n.Load(); got != served {
		t.Fatalf("refused requests reached the engine: %d served, want %d", got, served)
	}
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// An answer that is not signed by the cluster, or signed for another request, is an error.
func TestAnswerMustBeSigned(t *testing.T) {
	client := NewClient(time.Second, NewSigner(secretA, ""))
	for name, h := range map[string]http.HandlerFunc{
		"unsigned": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, `{"status":"ok"}`)
		},
		"wrong secret": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			out := []byte(`{"status":"ok"}`)
			NewSigner(secretB, "").sign(w.Header(), kindReply, out, r.Header.Get(HeaderNonce))
			_, _ = w.Write(out)
		},
		"bound to another request": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			out := []byte(`{"status":"ok"}`)
			NewSigner(secretA, "").sign(w.Header(), kindReply, out, strings.Repeat("ab", 16))
			_, _ = w.Write(out)
		},
	} {
		srv := httptest.NewServer(h)
		_, err := client.Send(context.Background(), strings.TrimPrefix(srv.URL, "http://"), okRequest)
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "answer refused") {
			t.Errorf("%s: %v, want the answer refused", name, err)
		}
	}
}

// A signed request that is not a valid event is 400 and reaches nothing.
func TestBadEventsAreRefused(t *testing.T) {
	eng, addr := signedServer(t, NewSigner(secretA, ""))
	for name, req := range map[string]actors.PeerRequest{
		"unknown kind":       {Kind: "x", ID: "1", Event: "queryRoom"},
		"no id":              {Kind: actors.PeerRoom, Event: "queryRoom"},
		"unknown event":      {Kind: actors.PeerRoom, ID: "1", Event: "nope"},
		"comment too long":   {Kind: actors.PeerRoom, ID: "1", Event: "comment", Data: json.RawMessage(`{"user":{"id":"7"},"text":"` + strings.Repeat("a", 2001) + `"}`)},
		"comment of nobody":  {Kind: actors.PeerRoom, ID: "1", Event: "comment", Data: json.RawMessage(`{"text":"hi"}`)},
		"control characters": {Kind: actors.PeerRoom, ID: "1", Event: "comment", Data: json.RawMessage(`{"user":{"id":"7"},"text":"a\u001bb"}`)},
		"announce elsewhere": {Kind: actors.PeerRoom, ID: "1", Event: "announceCall", Data: json.RawMessage(`{"CallID":"c","Topic":"2","Tag":"7","Importance":4,"Type":2,"Data":"{}"}`)},
		"announce type 1":    {Kind: actors.PeerRoom, ID: "1", Event: "announceCall", Data: json.RawMessage(`{"CallID":"c","Topic":"1","Tag":"7","Importance":4,"Type":1,"Data":"{}"}`)},
		"announce bad data":  {Kind: actors.PeerRoom, ID: "1", Event: "announceCall", Data: json.RawMessage(`{"CallID":"c","Topic":"1","Tag":"7","Importance":4,"Type":2,"Data":"{nope"}`)},
		"from on a room":     {Kind: actors.PeerRoom, ID: "1", From: "2", Event: "queryRoom"},
		"data of wrong type": {Kind: actors.PeerRoom, ID: "1", Event: "play", Data: json.RawMessage(`[1,2]`)},
	} {
		body, _ := json.Marshal(req)
		code := post(t, addr, body, func(h http.Header) { NewSigner(secretA, "").sign(h, kindRequest, body, "") })
		if code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", name, code)
		}
	}
	if eng.n.Load() != 0 {
		t.Fatalf("%d bad requests reached the engine", eng.n.Load())
	}
}

// Connections that never send a signed request are closed after the proving time, and
// beyond the cap the oldest goes: a peer's fresh connection is served during the flood.
func TestUnprovenConnectionsAreBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	signer := NewSigner(secretA, "")
	guarded := Guard(ln, 20, 300*time.Millisecond).(*guardedListener)
	srv := NewServer(&countingEngine{}, signer, slog.New(slog.DiscardHandler))
	go func() { _ = srv.Serve(guarded) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := ln.Addr().String()

	var idle []net.Conn
	for range 100 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	client := NewClient(time.Second, signer)
	defer client.Close()
	if _, err := client.Send(context.Background(), addr, okRequest); err != nil {
		t.Fatalf("a peer during the flood: %v", err)
	}
	waitFor(t, 2*time.Second, "unproven connections capped", func() bool { return guarded.Unproven() <= 20 })
	// The cap closed the oldest: the first idle connection reads EOF.
	_ = idle[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("the oldest idle connection is still open")
	}
	waitFor(t, 2*time.Second, "idle connections closed after the proving time", func() bool { return guarded.Unproven() == 0 })
	// The peer's proven connection stays and is reused.
	if _, err := client.Send(context.Background(), addr, okRequest); err != nil {
		t.Fatalf("a peer after the flood: %v", err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A request nonce is refused again for at least NonceMemory after it was first seen, and
// forgotten within twice that (a generation is dropped whole); the clock is the signer's.
func TestNonceMemory(t *testing.T) {
	s := NewSigner(secretA, "")
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	if !isFresh(s, "a") || isFresh(s, "a") {
		t.Fatal("a first nonce must be fresh once")
	}
	now = now.Add(NonceMemory - time.Second) // a just before the generation turns
	if isFresh(s, "a") {
		t.Fatal("a replayed within NonceMemory")
	}
	if !isFresh(s, "b") {
		t.Fatal("b is new")
	}
	now = now.Add(2 * time.Second) // the generation turned: a and b are in the previous one
	if isFresh(s, "a") || isFresh(s, "b") {
		t.Fatal("a nonce forgotten before NonceMemory")
	}
	if !isFresh(s, "c") {
		t.Fatal("c is new")
	}
	now = now.Add(NonceMemory) // b is NonceMemory+1s old, c exactly NonceMemory
	if !isFresh(s, "a") {
		t.Fatal("a still remembered after twice NonceMemory")
	}
	if isFresh(s, "c") {
		t.Fatal("c forgotten at NonceMemory")
	}
	now = now.Add(3 * NonceMemory) // a long quiet time forgets everything
	for _, n := range []string{"a", "b", "c"} {
		if !isFresh(s, n) {
			t.Fatalf("%s remembered after a long quiet time", n)
		}
	}
	// Sparse calls: one just before twice NonceMemory must not carry a into another window.
	start := now
	if !isFresh(s, "d") {
		t.Fatal("d is new")
	}
	now = start.Add(2*NonceMemory - time.Second)
	if !isFresh(s, "x") || isFresh(s, "d") {
		t.Fatal("x is new, d is still remembered")
	}
	now = start.Add(2*NonceMemory + time.Second)
	if !isFresh(s, "d") {
		t.Fatal("d remembered for more than twice NonceMemory")
	}
}

// A memory full of live nonces refuses a new request rather than forget one that could be
// replayed; it takes new ones again once a generation has gone.
func TestNonceMemoryFull(t *testing.T) {
	s := NewSigner(secretA, "")
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	if !isFresh(s, "first") {
		t.Fatal("first is new")
	}
	for i := range maxNonces - 1 {
		var k nonceKey
		binary.BigEndian.PutUint64(k[:], uint64(i)+1)
		s.cur[k] = struct{}{}
	}
	if err := s.fresh("one more"); !errors.Is(err, errNoncesFull) {
		t.Fatalf("beyond maxNonces: %v, want errNoncesFull", err)
	}
	now = now.Add(2*NonceMemory + time.Second)
	if !isFresh(s, "one more") {
		t.Fatal("still full after every remembered nonce aged out")
	}
}

// isFresh: the nonce was new (and is now remembered).
func isFresh(s *Signer, nonce string) bool { return s.fresh(nonce) == nil }
