package http_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	apihttp "roomengine/http"
)

// http.maxConns: beyond the limit a plain connection is answered 503 and closed, while
// WebSockets never count (open sockets leave room for requests, and a new socket's
// upgrade request counts only until it is upgraded).
func TestMaxConnsSparesWebSockets(t *testing.T) {
	s := newServer(t, serverOpts{})
	limit := apihttp.NewConnLimit(3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.handler, ConnState: limit.ConnState}
	go func() { _ = srv.Serve(limit.Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := ln.Addr().String()

	var room roomObject
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 5 { // more sockets than the limit
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws?topic="+room.RoomID, nil)
		if err != nil {
			t.Fatalf("socket %d: %v", i+1, err)
		}
		t.Cleanup(func() { c.CloseNow() })
	}
	waitUntil(t, "sockets uncounted", func() bool { return limit.Open() == 0 })
	var idle []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		t.Cleanup(func() { c.Close() })
	}
	waitUntil(t, "idle connections counted", func() bool { return limit.Open() == 3 })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "503") {
		t.Fatalf("a connection beyond the limit: %q %v, want 503", line, err)
	}
	idle[0].Close()
	waitUntil(t, "a closed connection frees its place", func() bool { return limit.Open() == 2 })
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("a request once a place is free: %v %v", res, err)
	}
	res.Body.Close()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
