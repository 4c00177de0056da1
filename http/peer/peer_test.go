package peer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"roomengine/actors"
)

type echoEngine struct{ got chan actors.PeerRequest }

func (e echoEngine) ServePeer(_ context.Context, req actors.PeerRequest) actors.PeerReply {
	e.got <- req
	return actors.PeerReply{Status: actors.PeerOK, Room: &actors.Room{ID: req.ID, Name: "a&b<c>"}, Result: "room"}
}

// A request crosses intact and its answer comes back, text with & < > included.
func TestSendDeliversAndAnswers(t *testing.T) {
	eng := echoEngine{got: make(chan actors.PeerRequest, 1)}
	srv := httptest.NewServer(Handler(eng, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	c := NewClient(time.Second, nil)
	defer c.Close()
	req := actors.PeerRequest{Kind: actors.PeerRoom, ID: "abc", Event: "comment", Data: []byte(`{"user":{"id":"7","name":"n"},"text":"<hi>"}`)}
	rep, err := c.Send(context.Background(), strings.TrimPrefix(srv.URL, "http://"), req)
	if err != nil {
		t.Fatal(err)
	}
	got := <-eng.got
	var data struct{ Text string }
	if err := json.Unmarshal(got.Data, &data); err != nil || got.ID != "abc" || data.Text != "<hi>" {
		t.Fatalf("delivered %+v (%v)", got, err)
	}
	if rep.Status != actors.PeerOK || rep.Room == nil || rep.Room.Name != "a&b<c>" {
		t.Fatalf("answer %+v", rep)
	}
}

// A node that is gone (nothing listens) fails fast; a frozen one (accepts, never answers)
// fails at the caller's deadline.
func TestSendFailsFastAndAtTheDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := NewClient(time.Second, nil)
	start := time.Now()
	_, err = c.Send(context.Background(), addr, actors.PeerRequest{Kind: actors.PeerRoom})
	if !errors.Is(err, actors.ErrPeerUnreachable) {
		t.Fatalf("send to a closed port: %v, want ErrPeerUnreachable (not delivered)", err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("refused connection took %v", d)
	}
	frozen := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body is read first: only then does the server notice the caller hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer frozen.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = c.Send(ctx, strings.TrimPrefix(frozen.URL, "http://"), actors.PeerRequest{Kind: actors.PeerRoom})
	if err == nil || errors.Is(err, actors.ErrPeerUnreachable) {
		t.Fatalf("send to a frozen node: %v, want an error of unknown outcome (delivered, unanswered)", err)
	}
}

// Garbage on the cluster port is refused and changes nothing.
func TestHandlerRefusesGarbage(t *testing.T) {
	eng := echoEngine{got: make(chan actors.PeerRequest, 1)}
	srv := httptest.NewServer(Handler(eng, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := http.Post(srv.URL+Path, "application/json", strings.NewReader("{nope"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || len(eng.got) != 0 {
		t.Fatalf("HTTP %d, delivered %d", resp.StatusCode, len(eng.got))
	}
}
