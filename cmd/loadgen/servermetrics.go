package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serverSample is what the generator reads from the server's /metrics: its CPU time, to say
// how many cores the server used, and the push gateway's counters, to say whether frames
// were shed. Every field is -1 when the server did not expose it.
type serverSample struct {
	cpuSeconds  float64
	wsConns     float64
	framesSent  float64
	pushDropped float64 // all reasons together
	rss         float64 // process_resident_memory_bytes
	goroutines  float64
	heapInuse   float64 // go_memstats_heap_inuse_bytes
	stackInuse  float64 // go_memstats_stack_inuse_bytes
	at          time.Time
}

// scrapeServer reads /metrics. It never fails the run: a missing value is -1.
func scrapeServer(ctx context.Context, client *http.Client, base string) serverSample {
	s := serverSample{cpuSeconds: -1, wsConns: -1, framesSent: -1, pushDropped: -1,
		rss: -1, goroutines: -1, heapInuse: -1, stackInuse: -1, at: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return s
	}
	res, err := client.Do(req)
	if err != nil {
		return s
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return s
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(res.Body); err != nil {
		return s
	}
	parseServerMetrics(buf.Bytes(), &s)
	return s
}

// parseServerMetrics picks the few series it knows out of Prometheus text exposition.
func parseServerMetrics(text []byte, s *serverSample) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name, val := line[:sp], line[sp+1:]
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "process_cpu_seconds_total":
			s.cpuSeconds = v
		case name == "process_resident_memory_bytes":
			s.rss = v
		case name == "go_goroutines":
			s.goroutines = v
		case name == "go_memstats_heap_inuse_bytes":
			s.heapInuse = v
		case name == "go_memstats_stack_inuse_bytes":
			s.stackInuse = v
		case name == "roomengine_ws_connections":
			s.wsConns = v
		case name == "roomengine_ws_frames_sent_total":
			s.framesSent = v
		case strings.HasPrefix(name, "roomengine_push_dropped_total{"):
			if s.pushDropped < 0 {
				s.pushDropped = 0
			}
			s.pushDropped += v
		}
	}
}

// cpuCores is the average number of cores the server used between two samples, or -1.
func cpuCores(a, b serverSample) float64 {
	if a.cpuSeconds < 0 || b.cpuSeconds < 0 {
		return -1
	}
	d := b.at.Sub(a.at).Seconds()
	if d <= 0 {
		return -1
	}
	return (b.cpuSeconds - a.cpuSeconds) / d
}

func delta(a, b float64) float64 {
	if a < 0 || b < 0 {
		return -1
	}
	return b - a
}
