package gateway

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomengine/actors"
	"roomengine/persistence/redis"
)

// BenchmarkClusterFanout100 is BenchmarkFanout100 through the cluster: 100 subscribers
// spread over three gateways, comments published round-robin through the three nodes'
// Redis publishers, each gateway fed by its own follower. It reports delivered frames per
// second and the publish→frame latency (p50, p99) over every delivered frame. The
// publisher stays at most a window ahead of the slowest reader, so nothing is shed.
func BenchmarkClusterFanout100(b *testing.B) {
	const (
		subs   = 100
		window = 512
	)
	cl := startCluster(b, 3, redis.PublisherOptions{})
	conns := make([]*websocket.Conn, subs)
	for i := range conns {
		conns[i] = dial(b, cl.nodes[i%3].srv, "topic=bench&tags=bench")
	}
	for i, nd := range cl.nodes {
		waitSubscribers(b, nd.g, "bench", subs/3+btoi(i < subs%3))
	}

	counts := make([]atomic.Int64, subs)
	lat := make([][]time.Duration, subs)
	slowest := func() int64 {
		m := counts[0].Load()
		for i := range counts[1:] {
			m = min(m, counts[i+1].Load())
		}
		return m
	}
	var readers sync.WaitGroup
	for i, c := range conns {
		readers.Go(func() {
			for {
				_, data, err := c.Read(context.Background())
				if err != nil {
					return
				}
				lat[i] = append(lat[i], time.Since(sentAt(data)))
				counts[i].Add(1)
			}
		})
	}

	// awaitReaders is the flow control; a frame that never arrives fails the run instead
	// of hanging it.
	awaitReaders := func(n int64) {
		deadline := time.Now().Add(time.Minute)
		for slowest() < n {
			if time.Now().After(deadline) {
				b.Fatalf("the slowest reader is stuck at %d of %d frames", slowest(), n)
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 1; i <= b.N; i++ {
		cl.nodes[i%3].pub.Publish(stampedComment())
		if i%16 == 0 {
			awaitReaders(int64(i - window))
		}
	}
	awaitReaders(int64(b.N))
	elapsed := time.Since(start)
	b.StopTimer()
	for _, c := range conns {
		c.CloseNow()
	}
	readers.Wait()
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(subs)*float64(b.N)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	for _, nd := range cl.nodes {
		for reason, n := range nd.g.Stats().Dropped {
			if n != 0 {
				b.Fatalf("%d frames dropped (%s): the benchmark must measure delivery, not shedding", n, reason)
			}
		}
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// stampedComment carries its publish time (ns) as the comment, for the latency.
func stampedComment() actors.Push {
	return newPush("bench", "bench", 8, 6, fmt.Sprintf(`{"uid":"42","name":"viewer","comment":"%d"}`, time.Now().UnixNano()))
}

func sentAt(frame []byte) time.Time {
	const key = `"comment":"`
	i := bytes.Index(frame, []byte(key))
	if i < 0 {
		return time.Now()
	}
	rest := frame[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	ns, _ := strconv.ParseInt(string(rest[:max(j, 0)]), 10, 64)
	return time.Unix(0, ns)
}
