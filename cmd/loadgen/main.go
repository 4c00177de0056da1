// Command loadgen load-tests a running appserver over loopback: N keep-alive HTTP workers
// send one scenario's request as fast as the server answers, for a bounded time or count,
// and the run is reported as throughput, errors and latency percentiles (plus, for comments
// with WebSocket subscribers, how many frames were delivered).
//
//	loadgen -scenario comment -subs 100 -c 64 -d 10s
//	loadgen -scenario list -rooms 1000
//	loadgen -scenario login -n 50000 -json
//	loadgen -addr 127.0.0.1:4101,127.0.0.1:4102,127.0.0.1:4103 -scenario play -c 63
//	loadgen -scenario comment -subs 10000 -rate 5 -d 20s     (open loop, delivery latency)
//	loadgen -scenario comment -subs 10000 -idle              (server memory per idle subscriber)
//
// Scenarios:
//
//	comment  log in a user, create a room, connect -subs WebSocket subscribers to its topic,
//	         then POST /live/comment (JSON bodies)
//	list     create -rooms rooms, each publishing and mix-ready, then GET /live/list
//	login    POST /login, every request with a name never used before
//	play     log in a host and one viewer per worker, create a room, then each worker
//	         POST /live/play of its viewer into the room, again and again
//
// -addr takes one node or a comma-separated list (a cluster). With a list the requests are
// spread per virtual client, round robin: worker i talks to node i mod n for the whole run
// (its keep-alive connection stays there), subscriber i listens on node i mod n, and the
// setup goes through the first node (so in a cluster the first node owns the room). The
// report gives each node's requests, errors, latency and throughput beside the totals.
//
// With -rate (and -like-rate) the comment scenario runs open loop (openloop.go): comments
// and likes at a fixed arrival rate whatever the answers, request latency counted from each
// request's scheduled time, and every subscriber measuring comment→frame delivery latency.
// -idle only connects the subscribers and reports the server's memory per connection.
//
// Only loopback addresses are accepted. See docs/benchmarks.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Upper bounds on the flags, so no invocation can run unbounded or exhaust the machine.
const (
	maxDuration    = time.Hour
	maxWarmup      = 10 * time.Minute
	maxConcurrency = 10_000
	maxSubs        = 20_000
	maxRooms       = 100_000
	setupTimeout   = 5 * time.Minute
)

type options struct {
	addr      string   // as given, normalised; the list joined by commas
	addrs     []string // the nodes, in -addr order
	scenario  string
	c         int
	d         time.Duration
	n         uint64
	subs      int
	rooms     int
	warmup    time.Duration
	json      bool
	setupOnly bool
	freePort  bool
	waitReady time.Duration
	client    string
	rate      float64 // open loop: comments/s (0: closed loop)
	likeRate  float64 // open loop: likes/s
	idle      bool
	cpuPids   string // -cpu-pids, as given
	pids      []int
}

// open reports whether the run is open loop.
func (o *options) open() bool { return o.rate > 0 || o.likeRate > 0 }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:4000", "server host:port, or a comma-separated list of cluster nodes (loopback only)")
	fs.StringVar(&o.scenario, "scenario", "comment", "comment, list, login or play")
	fs.IntVar(&o.c, "c", 64, "concurrent workers (one keep-alive connection each)")
	fs.DurationVar(&o.d, "d", 10*time.Second, "measured duration, after the warm-up (at most 1h)")
	fs.Uint64Var(&o.n, "n", 0, "stop after this many measured requests (0: no limit; -d still applies)")
	fs.IntVar(&o.subs, "subs", 0, "comment: WebSocket subscribers of the room topic")
	fs.IntVar(&o.rooms, "rooms", 100, "list: rooms to create, each publishing and mix-ready")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before measuring, excluded from the statistics")
	fs.StringVar(&o.client, "client", "raw", "HTTP client of the workers: raw (lean HTTP/1.1, least CPU) or std (net/http)")
	fs.BoolVar(&o.json, "json", false, "print the result as one JSON line on stdout (the report goes to stderr)")
	fs.BoolVar(&o.setupOnly, "setup-only", false, "do the scenario's setup, print its ids as JSON and exit (for external tools such as wrk)")
	fs.BoolVar(&o.freePort, "free-port", false, "print a free loopback TCP port and exit")
	fs.Float64Var(&o.rate, "rate", 0, "comment: open loop, send this many comments/s whatever the answers (0: closed loop)")
	fs.Float64Var(&o.likeRate, "like-rate", 0, "comment: open loop, also send this many likes/s")
	fs.BoolVar(&o.idle, "idle", false, "comment: only connect -subs subscribers and report the server's memory per connection")
	fs.StringVar(&o.cpuPids, "cpu-pids", "", "comma-separated process ids (server nodes, redis-server) whose CPU over the measured window is reported (Linux /proc)")
	fs.DurationVar(&o.waitReady, "wait-ready", 0, "poll the server's /readyz for up to this long, exit 0 once it answers 200, else 1")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if o.freePort {
		p, err := freePort()
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 1
		}
		fmt.Fprintln(stdout, p)
		return 0
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.waitReady > 0 {
		// Every node, within one overall limit.
		deadline := time.Now().Add(min(o.waitReady, maxWarmup))
		for _, a := range o.addrs {
			if err := waitReady(ctx, a, max(time.Until(deadline), time.Millisecond)); err != nil {
				fmt.Fprintln(stderr, "loadgen:", err)
				return 1
			}
		}
		return 0
	}
	res, err := execute(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 1
	}
	if o.setupOnly {
		return 0
	}
	if o.json {
		res.printHuman(stderr)
		line, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(line))
	} else {
		res.printHuman(stdout)
	}
	return 0
}

func (o *options) validate() error {
	addrs, err := parseAddrs(o.addr)
	if err != nil {
		return err
	}
	o.addrs, o.addr = addrs, strings.Join(addrs, ",")
	if o.pids, err = parsePids(o.cpuPids); err != nil {
		return err
	}
	switch o.scenario {
	case "comment", "list", "login", "play":
	default:
		return fmt.Errorf("-scenario %q: want comment, list, login or play", o.scenario)
	}
	switch o.client {
	case "raw", "std":
	case "":
		o.client = "raw"
	default:
		return fmt.Errorf("-client %q: want raw or std", o.client)
	}
	switch {
	case o.c < 1 || o.c > maxConcurrency:
		return fmt.Errorf("-c %d: want 1..%d", o.c, maxConcurrency)
	case o.d <= 0 || o.d > maxDuration:
		return fmt.Errorf("-d %s: want more than 0 and at most %s", o.d, maxDuration)
	case o.warmup < 0 || o.warmup > maxWarmup:
		return fmt.Errorf("-warmup %s: want 0..%s", o.warmup, maxWarmup)
	case o.subs < 0 || o.subs > maxSubs:
		return fmt.Errorf("-subs %d: want 0..%d", o.subs, maxSubs)
	case o.rooms < 0 || o.rooms > maxRooms:
		return fmt.Errorf("-rooms %d: want 0..%d", o.rooms, maxRooms)
	case o.subs > 0 && o.scenario != "comment":
		return errors.New("-subs only applies to -scenario comment")
	case o.rate < 0 || o.rate > maxRate || o.likeRate < 0 || o.likeRate > maxRate:
		return fmt.Errorf("-rate %g / -like-rate %g: want 0..%d", o.rate, o.likeRate, maxRate)
	case (o.open() || o.idle) && o.scenario != "comment":
		return errors.New("-rate, -like-rate and -idle only apply to -scenario comment")
	case o.open() && o.idle:
		return errors.New("-idle sends nothing: leave out -rate and -like-rate")
	case o.idle && o.subs == 0:
		return errors.New("-idle needs -subs")
	case o.open() && o.n > 0:
		return errors.New("-n does not apply to the open loop (it runs for -d)")
	}
	return nil
}

// result is one run's outcome; it is also the -json line. Latencies are milliseconds.
// Fields that do not apply to the scenario are omitted; -1 means "not measured".
type result struct {
	Scenario    string  `json:"scenario"`
	Addr        string  `json:"addr"`
	Concurrency int     `json:"concurrency"`
	Client      string  `json:"client"`
	Seconds     float64 `json:"seconds"` // the measured window, as it really lasted
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	RPS         float64 `json:"rps"`
	P50         float64 `json:"p50_ms"`
	P90         float64 `json:"p90_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
	Mean        float64 `json:"mean_ms"`
	Warmup      uint64  `json:"warmup_requests"`

	Subs            int     `json:"subs,omitempty"`
	FramesPerS      float64 `json:"frames_per_s,omitempty"`
	FramesExpected  uint64  `json:"frames_expected,omitempty"`
	FramesDelivered uint64  `json:"frames_delivered,omitempty"`
	FramesComplete  *bool   `json:"frames_complete,omitempty"`
	SubsMinFrames   uint64  `json:"subs_min_frames,omitempty"`
	SeqGaps         uint64  `json:"seq_gaps,omitempty"`
	SubsBroken      int     `json:"subs_broken,omitempty"`
	DrainMs         float64 `json:"drain_ms,omitempty"`

	Rooms       int `json:"rooms,omitempty"`
	ListedRooms int `json:"listed_rooms,omitempty"`
	ListBytes   int `json:"list_bytes,omitempty"`

	DuplicateIDs *uint64 `json:"duplicate_ids,omitempty"`

	// Open loop (-rate) and idle (-idle) only. Requests and latencies above are then the
	// measured comments and likes, latency from the scheduled time; delivery is comment →
	// frame at every subscriber.
	Mode              string         `json:"mode,omitempty"` // "open" or "idle"
	Rate              float64        `json:"rate,omitempty"`
	LikeRate          float64        `json:"like_rate,omitempty"`
	Comments          uint64         `json:"comments,omitempty"`
	Likes             uint64         `json:"likes,omitempty"`
	NotSent           uint64         `json:"not_sent,omitempty"` // scheduled but dropped: the generator's queue was full
	DeliverySamples   uint64         `json:"delivery_samples,omitempty"`
	DeliveryP50       float64        `json:"delivery_p50_ms,omitempty"`
	DeliveryP90       float64        `json:"delivery_p90_ms,omitempty"`
	DeliveryP99       float64        `json:"delivery_p99_ms,omitempty"`
	DeliveryMax       float64        `json:"delivery_max_ms,omitempty"`
	CloseCodes        map[string]int `json:"close_codes,omitempty"` // subscribers the server closed, by code
	ServerRSSMiB      float64        `json:"server_rss_mib,omitempty"`
	ServerCPUPerFrame float64        `json:"server_cpu_us_per_frame,omitempty"`
	ClientCPUPerFrame float64        `json:"client_cpu_us_per_frame,omitempty"`
	RSSPerConnKiB     float64        `json:"rss_per_conn_kib,omitempty"`
	HeapPerConnKiB    float64        `json:"heap_per_conn_kib,omitempty"`
	StackPerConnKiB   float64        `json:"stack_per_conn_kib,omitempty"`
	GoroutinesPerConn float64        `json:"goroutines_per_conn,omitempty"`

	ServerCPU   float64 `json:"server_cpu_cores"`
	ClientCPU   float64 `json:"client_cpu_cores"`
	PushDropped float64 `json:"push_dropped"`

	ErrorKinds  map[string]uint64 `json:"error_kinds,omitempty"`
	ErrorSample string            `json:"error_sample,omitempty"`

	// -cpu-pids: each process's CPU over the measured window, and their sum per measured
	// request (-1 when a process could not be read).
	ProcsCPUPerReq float64      `json:"procs_cpu_us_per_req,omitempty"`
	Procs          []procResult `json:"procs,omitempty"`

	// Nodes is each node's share, in -addr order (also for a single node).
	Nodes []nodeResult `json:"nodes"`
}

// workerStats is one worker's share of the measured window.
type workerStats struct {
	node    int // index into options.addrs
	h       hist
	ok      uint64
	errs    uint64
	warmup  uint64
	warmOK  uint64
	kinds   map[string]uint64
	example string
}

func execute(ctx context.Context, o options, log io.Writer) (*result, error) {
	if len(o.addrs) == 0 { // called without validate (tests)
		o.addrs = []string{o.addr}
	}
	base := "http://" + o.addrs[0]
	client := newHTTPClient(o.c + 4*len(o.addrs))
	defer client.CloseIdleConnections()
	newCaller := func() *caller { return &caller{client: client, base: base} }
	runID := newRunID()

	// Setup, through the first node.
	sctx, scancel := context.WithTimeout(ctx, setupTimeout)
	defer scancel()
	setup := newCaller()
	for _, a := range o.addrs {
		c := &caller{client: client, base: "http://" + a}
		if _, err := c.get(sctx, "/readyz"); err != nil {
			return nil, fmt.Errorf("server at %s is not ready: %w", a, err)
		}
	}
	res := &result{Scenario: o.scenario, Addr: o.addr, Concurrency: o.c, Client: o.client, ServerCPU: -1, ClientCPU: -1, PushDropped: -1}
	var sc scenario
	var logins *loginScenario
	var subs *subscribers
	switch o.scenario {
	case "comment":
		cs, err := setupComment(sctx, setup, runID)
		if err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		if o.setupOnly {
			return res, printSetup(os.Stdout, map[string]any{"scenario": o.scenario, "uid": cs.uid, "roomId": cs.roomID})
		}
		sc = cs
		if o.subs > 0 {
			before := sumSamples(scrapeNodes(sctx, client, o.addrs))
			if o.idle {
				// What the server holds before the subscribers (its heap after the setup
				// settles a little first).
				time.Sleep(time.Second)
				before = sumSamples(scrapeNodes(sctx, client, o.addrs))
			}
			s, err := connectSubscribers(sctx, o.addrs, cs.roomID, o.subs)
			if err != nil {
				return nil, fmt.Errorf("setup: %w", err)
			}
			defer s.close()
			subs = s
			// The gateway counts a connection once it is subscribed; wait for that so no
			// comment is published before every subscriber listens.
			if before.wsConns >= 0 {
				waitUntil(sctx, 10*time.Second, func() bool {
					return sumSamples(scrapeNodes(sctx, client, o.addrs)).wsConns >= before.wsConns+float64(o.subs)
				})
			} else {
				time.Sleep(500 * time.Millisecond)
			}
			res.Subs = o.subs
			if o.idle {
				measureIdle(sctx, o, before, client, res)
				return res, nil
			}
		}
		if o.open() {
			return res, runOpenLoop(ctx, o, cs, subs, client, log, res)
		}
	case "list":
		ls, err := setupList(sctx, setup, newCaller, runID, o.rooms, min(o.c, 32))
		if err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		if o.setupOnly {
			return res, printSetup(os.Stdout, map[string]any{"scenario": o.scenario, "rooms": o.rooms, "listedRooms": ls.listed})
		}
		if ls.listed < o.rooms {
			fmt.Fprintf(log, "loadgen: warning: created %d listed rooms but /live/list returns %d\n", o.rooms, ls.listed)
		}
		sc = ls
		res.Rooms, res.ListedRooms, res.ListBytes = o.rooms, ls.listed, ls.bytes
	case "play":
		ps, err := setupPlay(sctx, setup, newCaller, runID, o.c, min(o.c, 32))
		if err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		if o.setupOnly {
			return res, printSetup(os.Stdout, map[string]any{"scenario": o.scenario, "roomId": ps.roomID, "viewers": ps.viewers})
		}
		sc = ps
	case "login":
		if o.setupOnly {
			return res, printSetup(os.Stdout, map[string]any{"scenario": o.scenario})
		}
		logins = newLoginScenario(runID)
		sc = logins
	}

	// Load: warm-up, then the measured window, ending at -d or -n, whichever comes first.
	start := time.Now()
	measureFrom := start.Add(o.warmup)
	deadline := measureFrom.Add(o.d)
	rctx, rcancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer rcancel()

	var claimed atomic.Uint64
	stats := make([]*workerStats, o.c)
	var wg sync.WaitGroup

	// Snapshots at the start of the measured window, taken by a timer.
	var (
		srvStart     []serverSample
		cpuStart     time.Duration
		procsStart   []float64
		framesAtFrom uint64
		started      = make(chan struct{})
	)
	takeStart := func() {
		defer close(started)
		if subs != nil {
			framesAtFrom, _ = subs.total()
		}
		cpuStart = processCPU()
		procsStart = sampleProcs(o.pids)
		srvStart = scrapeNodes(rctx, client, o.addrs)
	}
	var startTimer *time.Timer
	if o.warmup == 0 {
		takeStart()
	} else {
		startTimer = time.AfterFunc(o.warmup, takeStart)
	}
	srvBefore := sumSamples(scrapeNodes(rctx, client, o.addrs))

	for w := range o.c {
		node := nodeOf(w, len(o.addrs))
		st := &workerStats{node: node, kinds: map[string]uint64{}}
		stats[w] = st
		wc := &caller{client: client, base: "http://" + o.addrs[node]}
		if o.client == "raw" {
			wc.raw = newRawConn(o.addrs[node])
			defer wc.raw.close()
		}
		do := sc.newWorker(w, wc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				measured := !t0.Before(measureFrom)
				if measured && o.n > 0 && claimed.Add(1) > o.n {
					return
				}
				err := do(rctx)
				took := time.Since(t0)
				if !measured {
					st.warmup++
					if err == nil {
						st.warmOK++
					}
					continue
				}
				st.h.record(took)
				if err == nil {
					st.ok++
					continue
				}
				st.errs++
				st.kinds[errKind(err)]++
				if st.example == "" {
					st.example = err.Error()
				}
			}
		}()
	}
	wg.Wait()
	end := time.Now()
	if startTimer != nil && startTimer.Stop() {
		takeStart() // the run ended (interrupted) before the warm-up did
	}
	<-started
	var framesAtEnd uint64
	if subs != nil {
		framesAtEnd, _ = subs.total()
	}
	cpuEnd := processCPU()
	procsEnd := sampleProcs(o.pids)
	srvEnd := scrapeNodes(ctx, client, o.addrs)

	// Aggregate, in total and per node.
	var h hist
	var okTotal uint64
	nodeHists := make([]hist, len(o.addrs))
	res.Nodes = make([]nodeResult, len(o.addrs))
	for i, a := range o.addrs {
		res.Nodes[i] = nodeResult{Addr: a, ServerCPU: -1}
	}
	res.ErrorKinds = map[string]uint64{}
	for _, st := range stats {
		h.merge(&st.h)
		nodeHists[st.node].merge(&st.h)
		nr := &res.Nodes[st.node]
		nr.Workers++
		nr.Requests += st.ok + st.errs
		nr.Errors += st.errs
		res.Requests += st.ok + st.errs
		res.Errors += st.errs
		res.Warmup += st.warmup
		okTotal += st.ok + st.warmOK
		for k, v := range st.kinds {
			res.ErrorKinds[k] += v
		}
		if res.ErrorSample == "" {
			res.ErrorSample = st.example
		}
	}
	if len(res.ErrorKinds) == 0 {
		res.ErrorKinds = nil
	}
	window := end.Sub(measureFrom)
	if window <= 0 {
		window = time.Nanosecond
	}
	res.Seconds = window.Seconds()
	res.RPS = float64(res.Requests) / res.Seconds
	res.P50, res.P90, res.P99 = ms(h.quantile(.50)), ms(h.quantile(.90)), ms(h.quantile(.99))
	res.Max, res.Mean = ms(time.Duration(h.max)), ms(h.mean())
	res.ServerCPU = clusterCPU(srvStart, srvEnd)
	for i := range res.Nodes {
		nr, nh := &res.Nodes[i], &nodeHists[i]
		nr.RPS = float64(nr.Requests) / res.Seconds
		nr.P50, nr.P99, nr.Max = ms(nh.quantile(.50)), ms(nh.quantile(.99)), ms(time.Duration(nh.max))
		nr.ServerCPU = cpuCores(srvStart[i], srvEnd[i])
	}
	res.ClientCPU = (cpuEnd - cpuStart).Seconds() / window.Seconds()
	if len(o.pids) > 0 {
		res.Procs, res.ProcsCPUPerReq = procResults(o.pids, procsStart, procsEnd, res.Requests)
	}

	if subs != nil {
		res.FramesPerS = float64(framesAtEnd-framesAtFrom) / res.Seconds
		// Frames still in flight when the load stopped are waited for, within bounds.
		res.DrainMs = ms(subs.waitFor(okTotal, 2*time.Second, 15*time.Second))
		_, delivered := subs.total()
		st := subs.stats()
		res.FramesExpected = okTotal * uint64(o.subs)
		res.FramesDelivered = delivered
		res.SubsMinFrames = st.minComments
		res.SeqGaps = st.gaps
		res.SubsBroken = st.broken
		complete := st.minComments >= okTotal && st.gaps == 0 && st.broken == 0
		res.FramesComplete = &complete
		if st.broken > 0 && res.ErrorSample == "" {
			res.ErrorSample = "subscriber: " + st.brokenErr
		}
	}
	srvAfter := sumSamples(scrapeNodes(ctx, client, o.addrs))
	res.PushDropped = delta(srvBefore.pushDropped, srvAfter.pushDropped)
	if logins != nil {
		logins.mu.Lock()
		d := logins.duplicates
		res.DuplicateIDs = &d
		if logins.missing > 0 {
			fmt.Fprintf(log, "loadgen: warning: %d login answers had no data.id\n", logins.missing)
		}
		if logins.untracked > 0 {
			fmt.Fprintf(log, "loadgen: note: %d ids beyond the first %d were not checked for duplicates\n", logins.untracked, maxTrackedIDs)
		}
		logins.mu.Unlock()
	}
	if ctx.Err() != nil {
		fmt.Fprintln(log, "loadgen: interrupted; the figures cover the run so far")
	}
	return res, nil
}

// errKind groups an error for the report.
func errKind(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.kind
	}
	return "error"
}

// waitReady polls /readyz until it answers 200 or limit passes.
func waitReady(ctx context.Context, addr string, limit time.Duration) error {
	client := newHTTPClient(1)
	defer client.CloseIdleConnections()
	c := &caller{client: client, base: "http://" + addr}
	var last error
	ok := waitUntil(ctx, limit, func() bool {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, last = c.get(rctx, "/readyz")
		return last == nil
	})
	if !ok {
		return fmt.Errorf("server at %s not ready after %s: %v", addr, limit, last)
	}
	return nil
}

func printSetup(w io.Writer, v map[string]any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// waitUntil polls cond every 50ms until it holds or limit passes.
func waitUntil(ctx context.Context, limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// freePort asks the kernel for a free loopback port. Another process may take it before
// the caller binds it; callers retry on failure.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *result) printHuman(w io.Writer) {
	fmt.Fprintf(w, "scenario %s  addr %s  c=%d  client %s", r.Scenario, r.Addr, r.Concurrency, r.Client)
	if r.Subs > 0 {
		fmt.Fprintf(w, "  subs=%d", r.Subs)
	}
	if r.Rooms > 0 {
		fmt.Fprintf(w, "  rooms=%d (listed %d, %d bytes)", r.Rooms, r.ListedRooms, r.ListBytes)
	}
	if r.Mode == "idle" {
		fmt.Fprintf(w, "  idle\n  server    RSS %.1f MiB   per connection: RSS %.1f KiB, heap %.1f KiB, stacks %.1f KiB, %.2f goroutines\n",
			r.ServerRSSMiB, r.RSSPerConnKiB, r.HeapPerConnKiB, r.StackPerConnKiB, r.GoroutinesPerConn)
		return
	}
	if r.Mode == "open" {
		fmt.Fprintf(w, "  open loop %g comments/s + %g likes/s", r.Rate, r.LikeRate)
	}
	fmt.Fprintf(w, "  window %.2fs (+%d warm-up requests)\n", r.Seconds, r.Warmup)
	pct := 0.0
	if r.Requests > 0 {
		pct = 100 * float64(r.Errors) / float64(r.Requests)
	}
	fmt.Fprintf(w, "  requests  %d   errors %d (%.2f%%)   %.0f req/s\n", r.Requests, r.Errors, pct, r.RPS)
	fmt.Fprintf(w, "  latency   p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms  mean %.3fms\n", r.P50, r.P90, r.P99, r.Max, r.Mean)
	if r.FramesComplete != nil {
		verdict := "every subscriber got every comment"
		if !*r.FramesComplete {
			verdict = fmt.Sprintf("INCOMPLETE: slowest subscriber got %d of %d, seq gaps %d, broken connections %d",
				r.SubsMinFrames, r.FramesExpected/uint64(max(r.Subs, 1)), r.SeqGaps, r.SubsBroken)
		}
		fmt.Fprintf(w, "  frames    %.0f delivered/s   %d of %d expected (drained in %.0fms): %s\n",
			r.FramesPerS, r.FramesDelivered, r.FramesExpected, r.DrainMs, verdict)
	}
	if r.Mode == "open" && r.Subs > 0 {
		fmt.Fprintf(w, "  delivery  p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms  (%d comment frames; comment sent → frame read)\n",
			r.DeliveryP50, r.DeliveryP90, r.DeliveryP99, r.DeliveryMax, r.DeliverySamples)
		fmt.Fprintf(w, "  per frame server %.2f µs CPU   loadgen %.2f µs CPU   server RSS %.0f MiB   closed by server %v   not sent %d\n",
			r.ServerCPUPerFrame, r.ClientCPUPerFrame, r.ServerRSSMiB, r.CloseCodes, r.NotSent)
	}
	if r.DuplicateIDs != nil {
		fmt.Fprintf(w, "  login ids duplicates %d\n", *r.DuplicateIDs)
	}
	fmt.Fprintf(w, "  cpu       server %s cores   loadgen %.2f cores   push frames dropped %s\n",
		orUnknown(r.ServerCPU, "%.2f"), r.ClientCPU, orUnknown(r.PushDropped, "%.0f"))
	if len(r.Procs) > 0 {
		fmt.Fprintf(w, "  cpu-pids  %s CPU-µs per request in all;", orUnknown(r.ProcsCPUPerReq, "%.1f"))
		for _, p := range r.Procs {
			fmt.Fprintf(w, " pid %d %s s", p.PID, orUnknown(p.CPUSeconds, "%.2f"))
		}
		fmt.Fprintln(w)
	}
	if len(r.Nodes) > 1 {
		fmt.Fprintf(w, "  per node  %-22s %7s %9s %7s %9s %8s %8s %6s\n", "addr", "workers", "requests", "errors", "req/s", "p50 ms", "p99 ms", "cores")
		for _, n := range r.Nodes {
			fmt.Fprintf(w, "            %-22s %7d %9d %7d %9.0f %8.3f %8.3f %6s\n",
				n.Addr, n.Workers, n.Requests, n.Errors, n.RPS, n.P50, n.P99, orUnknown(n.ServerCPU, "%.2f"))
		}
	}
	if r.Errors > 0 || r.ErrorSample != "" {
		kinds := make([]string, 0, len(r.ErrorKinds))
		for k, v := range r.ErrorKinds {
			kinds = append(kinds, fmt.Sprintf("%s×%d", k, v))
		}
		sort.Strings(kinds)
		fmt.Fprintf(w, "  errors    %s   e.g. %s\n", strings.Join(kinds, ", "), r.ErrorSample)
	}
}

func orUnknown(v float64, format string) string {
	if v < 0 {
		return "?"
	}
	return fmt.Sprintf(format, v)
}
