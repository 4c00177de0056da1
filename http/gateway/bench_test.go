package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkFanout100 publishes comments to one topic with 100 real WebSocket subscribers
// over loopback and reports delivered frames per second (b.N publishes × 100 frames). The
// publisher stays at most a window ahead of the slowest reader, well inside the queue, so
// nothing is shed and the figure is sustained throughput rather than a burst into queues.
func BenchmarkFanout100(b *testing.B) {
	const (
		subs   = 100
		window = 512
	)
	g, srv := startGateway(b, Options{QueueSize: 8 * window, PingInterval: time.Hour})
	conns := make([]*websocket.Conn, subs)
	for i := range conns {
		conns[i] = dial(b, srv, "topic=bench&tags=bench")
	}
	waitSubscribers(b, g, "bench", subs)

	counts := make([]atomic.Int64, subs)
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
				_, r, err := c.Reader(context.Background())
				if err != nil {
					return
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					return
				}
				counts[i].Add(1)
			}
		})
	}

	p := newPush("bench", "bench", 8, 6, `{"uid":"42","name":"viewer","comment":"what a goal!"}`)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 1; i <= b.N; i++ {
		pubOf(g).Publish(p)
		if i%16 == 0 {
			for slowest() < int64(i-window) {
				time.Sleep(20 * time.Microsecond) // flow control, not synchronisation
			}
		}
	}
	for slowest() < int64(b.N) {
		time.Sleep(20 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(subs)*float64(b.N)/elapsed.Seconds(), "frames/s")

	for reason, n := range g.Stats().Dropped {
		if n != 0 {
			b.Fatalf("%d frames dropped (%s): the benchmark must measure delivery, not shedding", n, reason)
		}
	}
	for _, c := range conns {
		c.CloseNow()
	}
	readers.Wait()
}

// BenchmarkIdleConnection reports what an idle subscriber holds once the garbage of its
// upgrade is collected: live heap and goroutine stack per connection, and goroutines per
// connection. The clients are raw sockets in the same process that never read (a few
// hundred bytes each of the heap figure are theirs: a socket and its address).
//
//	go test -run '^$' -bench BenchmarkIdleConnection -benchtime 1x ./http/gateway/
func BenchmarkIdleConnection(b *testing.B) {
	const n = 2000
	for range b.N {
		g, srv := startGateway(b, Options{PingInterval: time.Hour, MaxConnsPerAddr: -1})
		addr := strings.TrimPrefix(srv.URL, "http://")
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		goroutines := runtime.NumGoroutine()
		conns := make([]net.Conn, n)
		for i := range conns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			conns[i] = c
			_, _ = io.WriteString(c, "GET /ws?topic=idle HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			br := bufio.NewReaderSize(c, 16)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if line == "\r\n" {
					break
				}
			}
		}
		waitSubscribers(b, g, "idle", n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/n/1024, "heap-KiB/conn")
		b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/n/1024, "stack-KiB/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/n, "goroutines/conn")
		for _, c := range conns {
			_ = c.Close()
		}
	}
}
