package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomengine/actors"
)

func waitGW(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Pushes to topics nobody subscribes to are forgotten once idle for the TTL; a topic with a
// subscriber keeps its history and its seqs.
func TestIdleTopicsAreForgotten(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, srv := startGateway(t, Options{IdleTopicTTL: 200 * time.Millisecond, EvictInterval: 20 * time.Millisecond, Registerer: reg})
	c := dial(t, srv, "topic=kept")
	for i := range 1000 {
		pubOf(g).Publish(actors.Push{Topic: fmt.Sprint("made-up-", i), Tag: "x", Importance: 1, Type: 6, Body: []byte(`{"n":1}`)})
	}
	pubOf(g).Publish(actors.Push{Topic: "kept", Tag: "kept", Importance: 1, Type: 6, Body: []byte(`{"n":1}`)})
	// Each made-up topic is forgotten once, for idleness (some may already be, on a
	// loaded machine, before the last one is published).
	waitGW(t, "made-up topics forgotten", func() bool { return g.Stats().Topics == 1 })
	if n := gatheredValue(t, reg, "roomengine_ws_topics_evicted_total", EvictedIdle); n != 1000 {
		t.Fatalf("topics evicted for idleness: %v, want 1000", n)
	}
	if f := readFrame(t, c); f.Seq != 1 {
		t.Fatalf("the subscriber's frame: %+v", f)
	}
	// The kept topic's history is still there for a reconnect with since.
	again := dial(t, srv, "topic=kept&since=0")
	if f := readFrame(t, again); f.Seq != 1 {
		t.Fatalf("replay on the kept topic: %+v", f)
	}
}

// The history of all topics together stays under MaxHistoryBytes: the longest idle topics
// without subscribers go first; the gauge says how much is held.
func TestHistoryByteCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	const limit = 64 << 10
	g, srv := startGateway(t, Options{IdleTopicTTL: time.Hour, MaxHistoryBytes: limit, EvictInterval: 20 * time.Millisecond,
		Registerer: reg})
	c := dial(t, srv, "topic=busy")
	body := []byte(`{"text":"` + strings.Repeat("a", 1000) + `"}`)
	for i := range 500 { // about 500 KB
		pubOf(g).Publish(actors.Push{Topic: fmt.Sprint("t", i), Tag: "x", Importance: 1, Type: 6, Body: body})
	}
	for range 10 {
		pubOf(g).Publish(actors.Push{Topic: "busy", Tag: "x", Importance: 1, Type: 6, Body: body})
	}
	// A pass may run while the pushes are still coming: wait for one that saw them all.
	waitGW(t, "history under the cap", func() bool {
		b := g.HistoryBytes()
		return b > 0 && b <= limit && g.Stats().Topics <= 70
	})
	for range 10 {
		readFrame(t, c)
	}
	if subs := g.topics.subscribers("busy"); subs != 1 {
		t.Fatalf("the subscribed topic lost its subscriber: %d", subs)
	}
	if n := g.Stats().Topics; n < 2 {
		t.Fatalf("%d topics left, want about %d", n, limit/1100)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, mf := range mfs {
		seen = append(seen, mf.GetName())
	}
	for _, want := range []string{"roomengine_ws_history_bytes", "roomengine_ws_topics_evicted_total"} {
		if !strings.Contains(strings.Join(seen, " "), want) {
			t.Fatalf("metric %s missing from %v", want, seen)
		}
	}
}
