package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Open loop (-rate, -like-rate): comments and likes are sent at a fixed arrival rate,
// whatever the answers, as real viewers do. The closed loop above sends the next request
// only when the last one is answered, so a server that stalls also slows the load and the
// stall never shows in the figures. Here each request has a scheduled time; its latency is
// counted from that time, so a request that waited for a free connection (because the
// server was slow) carries the wait. Each comment carries its scheduled time in its text
// (sentMarker + unix ns), and every subscriber records how long the comment took to reach
// it as a frame: the delivery latency, end to end.

// sentMarker precedes the send time in an open-loop comment's text.
const sentMarker = "lgt="

// maxRate bounds -rate and -like-rate.
const maxRate = 100_000

// openJob is one scheduled request.
type openJob struct {
	like bool
	at   time.Time
}

// openStats is one open-loop worker's share.
type openStats struct {
	h                   hist // comment request latency, from the scheduled time
	comments, likes     uint64
	warmup              uint64 // requests scheduled before the measured window
	errs                uint64
	okComments, okLikes uint64 // answered 200, warm-up included (frames to expect)
	kinds               map[string]uint64
	example             string
}

// runOpenLoop drives the comment scenario's room at o.rate comments/s and o.likeRate
// likes/s for o.warmup + o.d and fills res.
func runOpenLoop(ctx context.Context, o options, cs *commentScenario, subs *subscribers, client *http.Client, log io.Writer, res *result) error {
	res.Mode, res.Rate, res.LikeRate = "open", o.rate, o.likeRate
	start := time.Now().Add(20 * time.Millisecond)
	measureFrom := start.Add(o.warmup)
	deadline := measureFrom.Add(o.d)
	if subs != nil {
		subs.measureFrom.Store(measureFrom.UnixNano())
	}
	rctx, rcancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer rcancel()

	// The queue holds what the workers have not picked up yet; it is large enough for a
	// few seconds of a stalled server, after which scheduled requests are counted as not
	// sent (generator backlog) rather than blocking the schedule.
	jobs := make(chan openJob, 64<<10)
	var backlog atomic.Uint64
	go schedule(rctx, jobs, &backlog, start, deadline, o.rate, o.likeRate)

	stats := make([]*openStats, o.c)
	var wg sync.WaitGroup
	for w := range o.c {
		node := nodeOf(w, len(o.addrs))
		st := &openStats{kinds: map[string]uint64{}}
		stats[w] = st
		wc := &caller{client: client, base: "http://" + o.addrs[node], raw: newRawConn(o.addrs[node])}
		defer wc.raw.close()
		commentPrefix := `{"uid":"` + cs.uid + `","roomId":"` + cs.roomID + `","comment":"` + sentMarker
		likeBody := []byte(`{"uid":"` + cs.uid + `","roomId":"` + cs.roomID + `"}`)
		body := make([]byte, 0, 128)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				measured := !job.at.Before(measureFrom)
				var err error
				if job.like {
					_, err = wc.postJSON(rctx, "/live/like", likeBody)
				} else {
					body = strconv.AppendInt(append(body[:0], commentPrefix...), job.at.UnixNano(), 10)
					body = append(body, `"}`...)
					_, err = wc.postJSON(rctx, "/live/comment", body)
				}
				took := time.Since(job.at)
				switch {
				case err == nil && job.like:
					st.okLikes++
				case err == nil:
					st.okComments++
				}
				if !measured {
					st.warmup++
					continue
				}
				if job.like {
					st.likes++
				} else {
					st.comments++
					st.h.record(took)
				}
				if err != nil {
					st.errs++
					st.kinds[errKind(err)]++
					if st.example == "" {
						st.example = err.Error()
					}
				}
			}
		}()
	}

	// Snapshots at the start and the end of the measured window.
	waitUntilTime(rctx, measureFrom)
	framesFrom := uint64(0)
	if subs != nil {
		framesFrom, _ = subs.total()
	}
	cpuFrom := processCPU()
	srvFrom := scrapeNodes(rctx, client, o.addrs)
	waitUntilTime(rctx, deadline)
	framesTo := uint64(0)
	if subs != nil {
		framesTo, _ = subs.total()
	}
	cpuTo := processCPU()
	srvTo := scrapeNodes(ctx, client, o.addrs)
	end := time.Now()
	wg.Wait() // the schedule closed jobs at the deadline; the last answers come in

	var h hist
	var okComments uint64
	res.ErrorKinds = map[string]uint64{}
	for _, st := range stats {
		h.merge(&st.h)
		res.Comments += st.comments
		res.Likes += st.likes
		res.Requests += st.comments + st.likes
		res.Warmup += st.warmup
		res.Errors += st.errs
		okComments += st.okComments
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
	res.NotSent = backlog.Load()
	window := max(end.Sub(measureFrom), time.Nanosecond)
	res.Seconds = window.Seconds()
	res.RPS = float64(res.Requests) / res.Seconds
	res.P50, res.P90, res.P99 = ms(h.quantile(.50)), ms(h.quantile(.90)), ms(h.quantile(.99))
	res.Max, res.Mean = ms(time.Duration(h.max)), ms(h.mean())
	res.ServerCPU = clusterCPU(srvFrom, srvTo)
	res.ClientCPU = (cpuTo - cpuFrom).Seconds() / res.Seconds
	res.Nodes = make([]nodeResult, len(o.addrs))
	for i, a := range o.addrs {
		res.Nodes[i] = nodeResult{Addr: a, ServerCPU: cpuCores(srvFrom[i], srvTo[i])}
	}
	if rss := sumSamples(srvTo).rss; rss >= 0 {
		res.ServerRSSMiB = rss / (1 << 20)
	}
	if subs == nil {
		return nil
	}
	res.FramesPerS = float64(framesTo-framesFrom) / res.Seconds
	if res.FramesPerS > 0 && res.ServerCPU >= 0 {
		res.ServerCPUPerFrame = res.ServerCPU * 1e6 / res.FramesPerS
		res.ClientCPUPerFrame = res.ClientCPU * 1e6 / res.FramesPerS
	}
	res.DrainMs = ms(subs.waitFor(okComments, 2*time.Second, 15*time.Second))
	_, delivered := subs.total()
	st := subs.stats()
	res.FramesExpected = okComments * uint64(len(subs.list))
	res.FramesDelivered = delivered
	res.SubsMinFrames = st.minComments
	res.SeqGaps = st.gaps
	res.SubsBroken = st.broken
	if codes := subs.closeCodes(); len(codes) > 0 {
		res.CloseCodes = codes
	}
	complete := st.minComments >= okComments && st.gaps == 0 && st.broken == 0
	res.FramesComplete = &complete
	if st.broken > 0 && res.ErrorSample == "" {
		res.ErrorSample = "subscriber: " + st.brokenErr
	}
	dh := subs.delivery.snapshot()
	res.DeliverySamples = dh.n
	res.DeliveryP50, res.DeliveryP90 = ms(dh.quantile(.50)), ms(dh.quantile(.90))
	res.DeliveryP99, res.DeliveryMax = ms(dh.quantile(.99)), ms(time.Duration(dh.max))
	srvAfter := sumSamples(scrapeNodes(ctx, client, o.addrs))
	res.PushDropped = delta(sumSamples(srvFrom).pushDropped, srvAfter.pushDropped)
	if ctx.Err() != nil {
		fmt.Fprintln(log, "loadgen: interrupted; the figures cover the run so far")
	}
	return nil
}

// schedule sends the jobs of both rates at their times from start until deadline, then
// closes jobs. It sleeps until the next due time and sends everything due, so a late
// wake-up sends the missed jobs at once with their own (earlier) times.
func schedule(ctx context.Context, jobs chan<- openJob, backlog *atomic.Uint64, start, deadline time.Time, rate, likeRate float64) {
	defer close(jobs)
	type stream struct {
		like     bool
		interval time.Duration
		next     time.Time
	}
	var streams []*stream
	for _, s := range []struct {
		like bool
		rate float64
	}{{false, rate}, {true, likeRate}} {
		if s.rate > 0 {
			streams = append(streams, &stream{like: s.like, interval: time.Duration(float64(time.Second) / s.rate), next: start})
		}
	}
	for {
		var due *stream
		for _, s := range streams {
			if due == nil || s.next.Before(due.next) {
				due = s
			}
		}
		if due == nil || !due.next.Before(deadline) {
			return
		}
		if !waitUntilTime(ctx, due.next) {
			return
		}
		select {
		case jobs <- openJob{like: due.like, at: due.next}:
		default:
			backlog.Add(1)
		}
		due.next = due.next.Add(due.interval)
	}
}

// waitUntilTime sleeps until t; false if ctx ended first.
func waitUntilTime(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// measureIdle reports what idle subscribers cost the server: its RSS (and Go heap, stacks
// and goroutines) before the subscribers connected and once they are all subscribed and
// the figure has settled, divided by their number.
func measureIdle(ctx context.Context, o options, before serverSample, client *http.Client, res *result) {
	res.Mode = "idle"
	var after serverSample
	// RSS settles within a few seconds of the last connect (the runtime returns memory
	// to the OS in the background); it is sampled until two readings a second apart agree
	// within 1%, for at most 15 s.
	prev := -1.0
	for i := 0; i < 15 && ctx.Err() == nil; i++ {
		time.Sleep(time.Second)
		after = sumSamples(scrapeNodes(ctx, client, o.addrs))
		if prev > 0 && after.rss > 0 && abs(after.rss-prev) <= 0.01*prev {
			break
		}
		prev = after.rss
	}
	n := float64(o.subs)
	per := func(a, b float64) float64 {
		if a < 0 || b < 0 {
			return -1
		}
		return (b - a) / n
	}
	res.ServerRSSMiB = after.rss / (1 << 20)
	res.RSSPerConnKiB = per(before.rss, after.rss) / 1024
	res.HeapPerConnKiB = per(before.heapInuse, after.heapInuse) / 1024
	res.StackPerConnKiB = per(before.stackInuse, after.stackInuse) / 1024
	res.GoroutinesPerConn = per(before.goroutines, after.goroutines)
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
