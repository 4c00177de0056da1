package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The ceiling speaks the same protocol as roomengine for what the load generator uses:
// each comment is one text frame, numbered from 1, with the push message inside.
func TestCommentsReachSubscribersAsFrames(t *testing.T) {
	s := newServer()
	stop := make(chan struct{})
	defer close(stop)
	go s.flushLoop(stop)
	srv := httptest.NewServer(s.routes())
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?topic=r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	for i := range 3 {
		res, err := http.Post(srv.URL+"/live/comment", "application/json",
			strings.NewReader(`{"uid":"7","roomId":"r1","comment":"c`+strconv.Itoa(i)+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("comment: HTTP %d", res.StatusCode)
		}
	}
	for want := 1; want <= 3; want++ {
		typ, b, err := ws.Read(ctx)
		if err != nil || typ != websocket.MessageText {
			t.Fatalf("frame %d: %v %v", want, typ, err)
		}
		var f struct {
			Topic   string `json:"topic"`
			Seq     int    `json:"seq"`
			Message struct {
				Type int `json:"type"`
				Data struct {
					Comment string `json:"comment"`
				} `json:"data"`
			} `json:"message"`
		}
		if err := json.Unmarshal(b, &f); err != nil || f.Topic != "r1" || f.Seq != want ||
			f.Message.Type != 6 || f.Message.Data.Comment != "c"+strconv.Itoa(want-1) {
			t.Fatalf("frame %d: %s (%v)", want, b, err)
		}
	}
	if res, err := http.Post(srv.URL+"/live/comment", "application/json", strings.NewReader(`{`)); err != nil {
		t.Fatal(err)
	} else if res.Body.Close(); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("a bad body: HTTP %d, want 400", res.StatusCode)
	}
}
