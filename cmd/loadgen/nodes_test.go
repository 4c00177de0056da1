package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseAddrs(t *testing.T) {
	for in, want := range map[string][]string{
		"127.0.0.1:4000":                           {"127.0.0.1:4000"},
		"127.0.0.1:4101,127.0.0.1:4102":            {"127.0.0.1:4101", "127.0.0.1:4102"},
		" localhost:1 , 127.0.0.2:2,[::1]:3 ":      {"127.0.0.1:1", "127.0.0.2:2", "[::1]:3"},
		"127.0.0.1:4101,127.0.0.1:4102,[::1]:4103": {"127.0.0.1:4101", "127.0.0.1:4102", "[::1]:4103"},
	} {
		got, err := parseAddrs(in)
		if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("parseAddrs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	tooMany := strings.Repeat("127.0.0.1:1,", maxNodes) + "127.0.0.1:2"
	for in, wantErr := range map[string]string{
		"":                              "empty entry",
		"127.0.0.1:4101,":               "empty entry",
		",127.0.0.1:4101":               "empty entry",
		"127.0.0.1:4101,,127.0.0.1:2":   "empty entry",
		"127.0.0.1:4101,10.0.0.1:4102":  "loopback",
		"127.0.0.1:4101,example.com:80": "loopback",
		"127.0.0.1:4101,127.0.0.1":      "host:port",
		"127.0.0.1:4101,localhost:4101": "listed twice",
		tooMany:                         "at most",
	} {
		if got, err := parseAddrs(in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("parseAddrs(%.60q) = %q, %v; want an error with %q", in, got, err, wantErr)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"-addr", "127.0.0.1:4101,192.168.1.1:4000"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "loopback") {
		t.Errorf("a non-loopback node in the list: exit %d, %q", code, errOut.String())
	}
}

func TestNodeOf(t *testing.T) {
	counts := make([]int, 3)
	for w := range 64 {
		counts[nodeOf(w, 3)]++
	}
	if counts[0] != 22 || counts[1] != 21 || counts[2] != 21 {
		t.Errorf("64 workers over 3 nodes: %v", counts)
	}
	for w := range 5 {
		if nodeOf(w, 1) != 0 {
			t.Fatal("one node takes every worker")
		}
	}
}

// fakeNode is a loopback server answering the API just enough for the comment, play and
// login scenarios; it counts the requests it got per path and which node it is.
type fakeNode struct {
	srv   *httptest.Server
	mu    sync.Mutex
	paths map[string]int
	delay time.Duration
	fail  bool // answer comments with an error envelope
}

func newFakeNodes(t *testing.T, n int, ids *atomic.Uint64) []*fakeNode {
	t.Helper()
	nodes := make([]*fakeNode, n)
	for i := range nodes {
		f := &fakeNode{paths: map[string]int{}}
		f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			f.mu.Lock()
			f.paths[r.URL.Path]++
			delay, fail := f.delay, f.fail
			f.mu.Unlock()
			time.Sleep(delay)
			w.Header().Set("Content-Type", "application/json")
			switch r.URL.Path {
			case "/login":
				fmt.Fprintf(w, `{"code":200,"message":"ok","data":{"id":"%d"}}`, ids.Add(1))
			case "/live/create":
				fmt.Fprintf(w, `{"code":200,"message":"ok","data":{"roomId":"r%d"}}`, ids.Add(1))
			case "/live/comment":
				if fail {
					fmt.Fprint(w, `{"code":2003,"message":"no such room"}`)
					return
				}
				fmt.Fprint(w, `{"code":200,"message":"ok"}`)
			case "/readyz", "/ali/stream/notify", "/live/play":
				fmt.Fprint(w, `{"code":200,"message":"ok"}`)
			default:
				http.NotFound(w, r)
			}
		}))
		t.Cleanup(f.srv.Close)
		nodes[i] = f
	}
	return nodes
}

func (f *fakeNode) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeNode) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paths[path]
}

func TestSpreadOverNodes(t *testing.T) {
	var ids atomic.Uint64
	for _, tc := range []struct {
		scenario, path string
		client         string
		c              int
		workers        []int
	}{
		{"comment", "/live/comment", "raw", 6, []int{2, 2, 2}},
		{"play", "/live/play", "std", 4, []int{2, 1, 1}},
		{"login", "/login", "raw", 7, []int{3, 2, 2}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			nodes := newFakeNodes(t, 3, &ids)
			addrs := make([]string, len(nodes))
			for i, n := range nodes {
				addrs[i] = n.addr()
			}
			o := options{addr: strings.Join(addrs, ","), scenario: tc.scenario, c: tc.c, d: 10 * time.Second, n: 300, client: tc.client}
			if err := o.validate(); err != nil {
				t.Fatal(err)
			}
			res, err := execute(context.Background(), o, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 300 || res.Errors != 0 || len(res.Nodes) != 3 {
				t.Fatalf("requests %d errors %d nodes %d: %+v", res.Requests, res.Errors, len(res.Nodes), res)
			}
			var sum uint64
			for i, nr := range res.Nodes {
				sum += nr.Requests
				if nr.Addr != addrs[i] || nr.Workers != tc.workers[i] {
					t.Errorf("node %d: addr %s workers %d, want %s %d", i, nr.Addr, nr.Workers, addrs[i], tc.workers[i])
				}
				// The setup goes through the first node only; every measured request of a
				// node's workers reached that node.
				got := nodes[i].count(tc.path)
				if tc.scenario == "login" || i > 0 {
					if got != int(nr.Requests) {
						t.Errorf("node %d got %d %s, the report says %d", i, got, tc.path, nr.Requests)
					}
				}
				if nr.Requests == 0 || nr.RPS <= 0 || nr.P50 <= 0 || nr.P99 < nr.P50 {
					t.Errorf("node %d: implausible %+v", i, nr)
				}
				if i > 0 && (nodes[i].count("/live/create") != 0 || nodes[i].count("/ali/stream/notify") != 0) {
					t.Errorf("node %d took part in the setup", i)
				}
				if nodes[i].count("/readyz") == 0 {
					t.Errorf("node %d was not checked for readiness", i)
				}
			}
			if sum != res.Requests {
				t.Errorf("per-node requests add up to %d, total %d", sum, res.Requests)
			}
			// Shares follow the workers: a node with twice the workers gets more requests.
			if tc.workers[0] > tc.workers[1] && res.Nodes[0].Requests <= res.Nodes[1].Requests/2 {
				t.Logf("note: node 0 (more workers) got %d, node 1 %d", res.Nodes[0].Requests, res.Nodes[1].Requests)
			}
			var human bytes.Buffer
			res.printHuman(&human)
			for _, a := range addrs {
				if !strings.Contains(human.String(), a) {
					t.Errorf("the report does not name node %s:\n%s", a, human.String())
				}
			}
			line, _ := json.Marshal(res)
			var back struct {
				Nodes []nodeResult `json:"nodes"`
			}
			if err := json.Unmarshal(line, &back); err != nil || len(back.Nodes) != 3 || back.Nodes[2].Requests != res.Nodes[2].Requests {
				t.Errorf("-json nodes: %s (%v)", line, err)
			}
		})
	}
}

// A slow node shows in its own latency and not in the others'; errors are counted where
// they happened.
func TestPerNodeFigures(t *testing.T) {
	var ids atomic.Uint64
	nodes := newFakeNodes(t, 2, &ids)
	nodes[1].delay = 50 * time.Millisecond
	o := options{addr: nodes[0].addr() + "," + nodes[1].addr(), scenario: "comment", c: 4, d: 400 * time.Millisecond, client: "raw"}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	res, err := execute(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fast, slow := res.Nodes[0], res.Nodes[1]
	if slow.P50 < 49 || fast.P50 >= slow.P50 || fast.Requests <= slow.Requests {
		t.Errorf("fast %+v slow %+v", fast, slow)
	}
	if res.Max < slow.P50 {
		t.Errorf("total max %.3f below the slow node's p50 %.3f", res.Max, slow.P50)
	}

	// Errors are counted on the node that answered them.
	nodes[1].mu.Lock()
	nodes[1].delay, nodes[1].fail = 0, true
	nodes[1].mu.Unlock()
	o.n, o.d = 200, 10*time.Second
	res, err = execute(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Nodes[0].Errors != 0 || res.Nodes[1].Errors == 0 || res.Nodes[1].Errors != res.Nodes[1].Requests ||
		res.Errors != res.Nodes[1].Errors || res.ErrorKinds["code 2003"] != res.Errors {
		t.Errorf("errors: total %d %v, nodes %+v", res.Errors, res.ErrorKinds, res.Nodes)
	}
}

func TestWaitReadyEveryNode(t *testing.T) {
	var ids atomic.Uint64
	nodes := newFakeNodes(t, 2, &ids)
	var out, errOut bytes.Buffer
	if code := run([]string{"-addr", nodes[0].addr() + "," + nodes[1].addr(), "-wait-ready", "2s"}, &out, &errOut); code != 0 {
		t.Fatalf("both ready: exit %d %s", code, errOut.String())
	}
	down := nodes[1].addr()
	nodes[1].srv.Close()
	errOut.Reset()
	if code := run([]string{"-addr", nodes[0].addr() + "," + down, "-wait-ready", "300ms"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), down) {
		t.Fatalf("one node down: exit %d %q", code, errOut.String())
	}
}
