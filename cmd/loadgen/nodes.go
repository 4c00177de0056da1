package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// maxNodes bounds the -addr list.
const maxNodes = 64

// parseAddrs reads -addr: one loopback host:port, or several separated by commas (the
// nodes of a cluster). Every entry must pass loopbackAddr; empty entries and the same
// node twice are refused, so each node's figures are its own.
func parseAddrs(list string) ([]string, error) {
	parts := strings.Split(list, ",")
	if len(parts) > maxNodes {
		return nil, fmt.Errorf("-addr: %d nodes, at most %d", len(parts), maxNodes)
	}
	out := make([]string, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("-addr %q: empty entry in the list", list)
		}
		a, err := loopbackAddr(p)
		if err != nil {
			return nil, err
		}
		if seen[a] {
			return nil, fmt.Errorf("-addr %q: %s is listed twice", list, a)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}

// nodeOf is the node a virtual client talks to. The spreading is per virtual client, round
// robin: worker (or subscriber) i keeps one keep-alive connection to node i mod n for the
// whole run, as a mobile client behind a load balancer without sticky sessions keeps the
// connection it was given. Every node gets ⌊c/n⌋ or ⌈c/n⌉ workers; with c a multiple of
// n the shares are equal.
func nodeOf(i, n int) int { return i % n }

// nodeResult is one node's share of a run (latencies in milliseconds).
type nodeResult struct {
	Addr     string  `json:"addr"`
	Workers  int     `json:"workers"`
	Requests uint64  `json:"requests"`
	Errors   uint64  `json:"errors"`
	RPS      float64 `json:"rps"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	// ServerCPU is the cores this node's process used in the window, -1 when unknown.
	ServerCPU float64 `json:"server_cpu_cores"`
}

// scrapeNodes reads /metrics of every node.
func scrapeNodes(ctx context.Context, client *http.Client, addrs []string) []serverSample {
	out := make([]serverSample, len(addrs))
	for i, a := range addrs {
		out[i] = scrapeServer(ctx, client, "http://"+a)
	}
	return out
}

// sumSamples adds the nodes' samples into one, as if the cluster were one server. A field
// any node lacks is -1 in the sum; the time is the latest of the samples.
func sumSamples(ss []serverSample) serverSample {
	sum := serverSample{}
	add := func(acc *float64, v float64) {
		if *acc < 0 || v < 0 {
			*acc = -1
			return
		}
		*acc += v
	}
	for _, s := range ss {
		add(&sum.cpuSeconds, s.cpuSeconds)
		add(&sum.wsConns, s.wsConns)
		add(&sum.framesSent, s.framesSent)
		add(&sum.pushDropped, s.pushDropped)
		add(&sum.rss, s.rss)
		add(&sum.goroutines, s.goroutines)
		add(&sum.heapInuse, s.heapInuse)
		add(&sum.stackInuse, s.stackInuse)
		if s.at.After(sum.at) {
			sum.at = s.at
		}
	}
	if len(ss) == 0 {
		return serverSample{cpuSeconds: -1, wsConns: -1, framesSent: -1, pushDropped: -1,
			rss: -1, goroutines: -1, heapInuse: -1, stackInuse: -1, at: time.Now()}
	}
	return sum
}

// clusterCPU is the cores all nodes used between two rounds of samples: the sum of each
// node's own rate, or -1 when any node's is unknown.
func clusterCPU(a, b []serverSample) float64 {
	total := 0.0
	for i := range a {
		c := cpuCores(a[i], b[i])
		if c < 0 {
			return -1
		}
		total += c
	}
	return total
}
