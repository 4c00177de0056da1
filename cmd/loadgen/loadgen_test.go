package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"roomengine/actors"
	"roomengine/aliyun"
	apihttp "roomengine/http"
	"roomengine/http/gateway"
	"roomengine/persistence/embedded"
	"roomengine/push"
)

func TestHistBuckets(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 123456789, 1 << 40, 1<<62 + 12345} {
		b := histBucket(v)
		if b < prev {
			t.Fatalf("bucket of %d is %d, below the previous %d", v, b, prev)
		}
		prev = b
		if lo := histLower(b); lo > v {
			t.Fatalf("value %d in bucket %d whose lower edge is %d", v, b, lo)
		}
		if b+1 < histBuckets {
			if hi := histLower(b + 1); hi > 0 && hi <= v {
				t.Fatalf("value %d in bucket %d but the next bucket starts at %d", v, b, hi)
			}
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var parts [4]hist
	vals := make([]int64, 0, 100_000)
	for i := range 100_000 {
		v := int64(r.ExpFloat64() * float64(2*time.Millisecond))
		vals = append(vals, v)
		parts[i%4].record(time.Duration(v))
	}
	var h hist
	for i := range parts {
		h.merge(&parts[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	if h.n != uint64(len(vals)) || h.max != vals[len(vals)-1] || h.min != vals[0] {
		t.Fatalf("n/min/max = %d/%d/%d, want %d/%d/%d", h.n, h.min, h.max, len(vals), vals[0], vals[len(vals)-1])
	}
	for _, q := range []float64{.5, .9, .99, .999, 1} {
		exact := float64(vals[int(math.Ceil(q*float64(len(vals))))-1])
		got := float64(h.quantile(q))
		if got < exact || got > exact*(1+1.0/64)+1 {
			t.Errorf("q%.3f = %.0f, exact %.0f: more than 1/64 off", q, got, exact)
		}
	}
	var empty hist
	if empty.quantile(.99) != 0 || empty.mean() != 0 {
		t.Error("empty histogram should report zeros")
	}
}

func TestLoopbackAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:4000": "127.0.0.1:4000",
		"localhost:80":   "127.0.0.1:80",
		"127.1.2.3:9":    "127.1.2.3:9",
		"[::1]:4000":     "[::1]:4000",
	} {
		got, err := loopbackAddr(in)
		if err != nil || got != want {
			t.Errorf("loopbackAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"10.0.0.1:4000", "0.0.0.0:4000", "example.com:80", ":4000", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:x", "[::]:4000"} {
		if got, err := loopbackAddr(in); err == nil {
			t.Errorf("loopbackAddr(%q) = %q, want an error", in, got)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"-addr", "192.168.1.1:4000"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "loopback") {
		t.Errorf("non-loopback -addr: exit %d, %q", code, errOut.String())
	}
}

func TestLoopbackDialerRefusesOthers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := loopbackDialer().DialContext(ctx, "tcp", "192.0.2.1:80"); err == nil || !strings.Contains(err.Error(), "non-loopback") {
		t.Fatalf("dial to a non-loopback address: %v", err)
	}
}

func TestFlagBounds(t *testing.T) {
	for _, args := range [][]string{
		{"-scenario", "nope"}, {"-c", "0"}, {"-d", "2h"}, {"-d", "0s"}, {"-warmup", "-1s"},
		{"-subs", "-1"}, {"-scenario", "list", "-subs", "3"}, {"-rooms", "1000000"}, {"extra"},
	} {
		if code := run(args, io.Discard, io.Discard); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestEnvelopeAndIDs(t *testing.T) {
	for body, want := range map[string]int{
		`{"code":200,"message":"成功","data":{"id":"7"}}`: 200,
		`{"message":"x","code":2003}`:                   2003,
		`{"code":400,"message":"bad"}`:                  400,
	} {
		if got, err := envelopeCode([]byte(body)); err != nil || got != want {
			t.Errorf("envelopeCode(%s) = %d, %v; want %d", body, got, err, want)
		}
	}
	for _, body := range []string{`nope`, `{"message":"no code"}`, `[]`} {
		if _, err := envelopeCode([]byte(body)); err == nil {
			t.Errorf("envelopeCode(%s): want an error", body)
		}
	}
	if id := loginID([]byte(`{"code":200,"message":"成功","data":{"id":"42","name":"a","token":"t"}}`)); id != "42" {
		t.Errorf("loginID = %q", id)
	}
	if id := loginID([]byte(`{"code":200}`)); id != "" {
		t.Errorf("loginID without id = %q", id)
	}
}

func TestParseServerMetrics(t *testing.T) {
	s := serverSample{cpuSeconds: -1, wsConns: -1, framesSent: -1, pushDropped: -1}
	parseServerMetrics([]byte(`# HELP process_cpu_seconds_total x
process_cpu_seconds_total 12.5
roomengine_ws_connections 3
roomengine_ws_frames_sent_total 1e+06
roomengine_push_dropped_total{reason="queue_full_dropped"} 7
roomengine_push_dropped_total{reason="queue_full_shed"} 2
roomengine_push_dropped_total{reason="slow_client_closed"} 0
`), &s)
	if s.cpuSeconds != 12.5 || s.wsConns != 3 || s.framesSent != 1e6 || s.pushDropped != 9 {
		t.Fatalf("parsed %+v", s)
	}
}

func TestSubscriberCount(t *testing.T) {
	var sub subscriber
	frame := func(seq string, typ int) []byte {
		return []byte(`{"topic":"r","seq":` + seq + `,"tag":"r","importance":8,"message":{"data":{"comment":"x"},"type":` +
			string(rune('0'+typ)) + `,"time":1}}`)
	}
	for _, f := range [][]byte{frame("1", 6), frame("2", 7), frame("4", 6), frame("5", 6)} {
		sub.count(f)
	}
	if sub.frames.Load() != 4 || sub.comments.Load() != 3 || sub.gaps.Load() != 1 {
		t.Fatalf("frames %d comments %d gaps %d", sub.frames.Load(), sub.comments.Load(), sub.gaps.Load())
	}
}

// newServer runs the real stack (embedded store, actors, gateway, router) on loopback.
func newServer(t *testing.T) string {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	store, err := embedded.Open(filepath.Join(t.TempDir(), "test.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	feed := push.NewMemory(push.MemoryOptions{})
	gw := gateway.New(gateway.Options{Feed: feed, Logger: log, Registerer: reg})
	urls := &aliyun.URLBuilder{AppName: "DemoApp", RtmpHost: "push.example", PlayHost: "play.example", TemplateName: "_mix"}
	eng, err := actors.NewEngine(actors.EngineConfig{
		Room:  actors.RoomConfig{NoPublishTimeout: time.Hour, TopicDeleteDelay: time.Minute},
		Store: store, Publisher: feed, URLs: urls, Logger: log, AskTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := apihttp.NewHandler(apihttp.Options{
		Engine: eng, Gateway: gw, Ready: store.Ping, URLs: urls, Logger: log,
		Tokens:     apihttp.NewTokenSigner([]byte("test-secret"), time.Hour),
		Registerer: reg, Gatherer: reg,
	})
	ts := httptest.NewServer(h)
	t.Cleanup(func() {
		ts.Close()
		_ = gw.Shutdown(context.Background())
		eng.Shutdown()
		_ = store.Close()
	})
	return strings.TrimPrefix(ts.URL, "http://")
}

func TestScenariosEndToEnd(t *testing.T) {
	addr := newServer(t)
	base := options{addr: addr, c: 4, d: 300 * time.Millisecond, warmup: 100 * time.Millisecond, client: "raw"}
	ctx := context.Background()

	t.Run("comment", func(t *testing.T) {
		o := base
		o.scenario, o.subs = "comment", 3
		res := mustRun(t, ctx, o)
		if res.FramesComplete == nil || res.FramesExpected == 0 {
			t.Fatalf("no frame accounting: %+v", res)
		}
		// Every comment frame is either delivered or counted as dropped by the gateway.
		if got := float64(res.FramesDelivered) + res.PushDropped; got != float64(res.FramesExpected) {
			t.Errorf("delivered %d + dropped %.0f != expected %d", res.FramesDelivered, res.PushDropped, res.FramesExpected)
		}
		if res.PushDropped == 0 && !*res.FramesComplete {
			t.Errorf("nothing dropped but incomplete: %+v", res)
		}
	})
	t.Run("list", func(t *testing.T) {
		o := base
		o.scenario, o.rooms = "list", 12
		res := mustRun(t, ctx, o)
		if res.ListedRooms != 12 || res.ListBytes == 0 {
			t.Errorf("listed %d rooms (%d bytes), want 12", res.ListedRooms, res.ListBytes)
		}
	})
	t.Run("play", func(t *testing.T) {
		// Each worker plays its own viewer into one room, over and over: every repeat
		// must be answered like the first play.
		o := base
		o.scenario = "play"
		res := mustRun(t, ctx, o)
		if len(res.Nodes) != 1 || res.Nodes[0].Requests != res.Requests || res.Nodes[0].Workers != o.c {
			t.Errorf("one node's figures: %+v", res.Nodes)
		}
	})
	t.Run("login", func(t *testing.T) {
		o := base
		o.scenario, o.n, o.client = "login", 50, "std"
		res := mustRun(t, ctx, o)
		if res.Requests > 50 {
			t.Errorf("-n 50 made %d measured requests", res.Requests)
		}
		if res.DuplicateIDs == nil || *res.DuplicateIDs != 0 {
			t.Errorf("duplicate ids: %v", res.DuplicateIDs)
		}
	})
	t.Run("errors are counted", func(t *testing.T) {
		o := base
		o.scenario = "comment"
		res, err := execute(ctx, o, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors != 0 {
			t.Fatalf("unexpected errors: %+v", res)
		}
		c := &caller{client: newHTTPClient(1), base: "http://" + addr}
		_, err = c.postJSON(ctx, "/live/comment", []byte(`{"uid":"1","roomId":"nope","comment":"x"}`))
		if err == nil || !strings.HasPrefix(err.Error(), "code ") {
			t.Fatalf("comment to an unknown room: %v", err)
		}
	})
}

func mustRun(t *testing.T, ctx context.Context, o options) *result {
	t.Helper()
	res, err := execute(ctx, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.RPS <= 0 || res.P99 <= 0 || res.Max < res.P99 {
		t.Fatalf("implausible result: %+v (errors: %v %s)", res, res.ErrorKinds, res.ErrorSample)
	}
	return res
}

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name, in   string
		status     int
		keep       bool
		body, rest string
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: x\r\n\r\nhelloNEXT", 200, true, "hello", "NEXT"},
		{"chunked", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\nNEXT", 200, true, "abcde", "NEXT"},
		{"close", "HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", 413, false, "{}", ""},
		{"to EOF", "HTTP/1.0 200 OK\r\n\r\nall of it", 200, false, "all of it", ""},
		{"empty", "HTTP/1.1 204 No Content\r\n\r\nNEXT", 204, true, "", "NEXT"},
	}
	for _, tc := range cases {
		br := bufio.NewReader(strings.NewReader(tc.in))
		var out bytes.Buffer
		status, keep, err := readResponse(br, &out)
		rest, _ := io.ReadAll(br)
		if err != nil || status != tc.status || keep != tc.keep || out.String() != tc.body || string(rest) != tc.rest {
			t.Errorf("%s: status %d keep %v body %q rest %q err %v", tc.name, status, keep, out.String(), rest, err)
		}
	}
	for _, in := range []string{"", "junk\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"} {
		var out bytes.Buffer
		if _, _, err := readResponse(bufio.NewReader(strings.NewReader(in)), &out); err == nil {
			t.Errorf("readResponse(%q): want an error", in)
		}
	}
}

func TestRawConnReconnects(t *testing.T) {
	addr := newServer(t)
	c := newRawConn(addr)
	defer c.close()
	var out bytes.Buffer
	for i := range 3 {
		status, err := c.roundTrip(context.Background(), "GET", "/readyz", "", nil, &out)
		if err != nil || status != 200 || !strings.Contains(out.String(), "ready") {
			t.Fatalf("round trip %d: %d %q %v", i, status, out.String(), err)
		}
	}
	// A connection that broke fails the request in flight; the next one redials.
	_ = c.conn.Close()
	if _, err := c.roundTrip(context.Background(), "GET", "/readyz", "", nil, &out); err == nil {
		t.Fatal("round trip on a closed connection succeeded")
	}
	status, err := c.roundTrip(context.Background(), "POST", "/login", "application/json", []byte(`{"name":"raw"}`), &out)
	if err != nil || status != 200 || loginID(out.Bytes()) == "" {
		t.Fatalf("login: %d %q %v", status, out.String(), err)
	}
}
