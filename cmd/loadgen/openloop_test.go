package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The open loop against the real stack: the schedule is kept whatever the answers, every
// subscriber gets every comment, and each comment frame's delivery latency is recorded.
func TestOpenLoopEndToEnd(t *testing.T) {
	addr := newServer(t)
	o := options{addr: addr, scenario: "comment", c: 4, subs: 3, rate: 40, likeRate: 20,
		d: 500 * time.Millisecond, warmup: 200 * time.Millisecond, client: "raw"}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := execute(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "open" || res.Errors != 0 || res.NotSent != 0 {
		t.Fatalf("open loop: %+v (%s)", res, res.ErrorSample)
	}
	// 40/s and 20/s over 0.5 s: 20 comments and 10 likes scheduled in the window.
	if res.Comments < 19 || res.Comments > 21 || res.Likes < 9 || res.Likes > 11 {
		t.Errorf("measured %d comments and %d likes; the schedule says 20 and 10", res.Comments, res.Likes)
	}
	// 0.2 s of warm-up at 60/s: about 12 requests, reported apart from the window.
	if res.Warmup < 10 || res.Warmup > 14 {
		t.Errorf("%d warm-up requests reported; the schedule says 12", res.Warmup)
	}
	if res.FramesComplete == nil || !*res.FramesComplete {
		t.Fatalf("not every subscriber got every comment: %+v", res)
	}
	if res.DeliverySamples != res.Comments*uint64(o.subs) {
		t.Errorf("%d delivery samples, want one per measured comment and subscriber (%d)", res.DeliverySamples, res.Comments*uint64(o.subs))
	}
	if res.DeliveryP50 <= 0 || res.DeliveryP99 < res.DeliveryP50 || res.DeliveryMax < res.DeliveryP99 || res.P99 <= 0 {
		t.Errorf("implausible latencies: delivery %v/%v/%v, request p99 %v", res.DeliveryP50, res.DeliveryP99, res.DeliveryMax, res.P99)
	}
	if res.ServerRSSMiB <= 0 || res.ServerCPUPerFrame <= 0 {
		t.Errorf("server figures missing: RSS %v MiB, %v µs/frame", res.ServerRSSMiB, res.ServerCPUPerFrame)
	}
}

func TestIdleMode(t *testing.T) {
	addr := newServer(t)
	o := options{addr: addr, scenario: "comment", c: 1, d: time.Second, subs: 20, idle: true, client: "raw"}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := execute(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// The server's memory and goroutines were read. (What 20 connections add to the RSS
	// can come out below 0 when the server frees more than they take, and an idle
	// connection may hold no goroutine at all (the gateway's epoll reader): the figures
	// are for thousands.)
	if res.Mode != "idle" || res.GoroutinesPerConn < 0 || res.ServerRSSMiB <= 0 || res.Requests != 0 {
		t.Fatalf("idle: %+v", res)
	}
}

func TestOpenLoopFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-rate", "-1"},
		{"-rate", "1e9"},
		{"-scenario", "list", "-rate", "5"},
		{"-rate", "5", "-idle", "-subs", "1"},
		{"-idle"},
		{"-rate", "5", "-n", "10"},
	} {
		var out, errOut strings.Builder
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, errOut.String())
		}
	}
}

// The hand-written subscriber answers pings (the server's Ping returns only on the pong),
// reads frames of every length encoding, and reports the server's close code.
func TestWSClient(t *testing.T) {
	big := strings.Repeat("x", 70_000) // a 64-bit length
	pinged := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ctx := ws.CloseRead(context.Background()) // the library reads the pong
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pinged <- ws.Ping(pctx)
		cancel()
		for _, m := range []string{"a", strings.Repeat("b", 300), big} {
			if err := ws.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
		_ = ws.Close(websocket.StatusTryAgainLater, "queue full")
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialWS(ctx, strings.TrimPrefix(srv.URL, "http://"), "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	var got []int
	for {
		m, err := c.next()
		if err != nil {
			if !errors.Is(err, errClosed) || c.closeCode != 1013 {
				t.Fatalf("end: %v, close code %d", err, c.closeCode)
			}
			break
		}
		got = append(got, len(m))
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 300 || got[2] != len(big) {
		t.Errorf("message lengths %v", got)
	}
	if err := <-pinged; err != nil {
		t.Errorf("ping not answered: %v", err)
	}
}
