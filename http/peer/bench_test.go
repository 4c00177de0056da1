package peer

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"roomengine/actors"
)

// cpuTime is the CPU time this process has used (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type okEngine struct{}

func (okEngine) ServePeer(context.Context, actors.PeerRequest) actors.PeerReply {
	return actors.PeerReply{Status: actors.PeerOK}
}

// BenchmarkSend is the cost of the transport alone (client and server in this process, over
// loopback), unsigned and signed, with one sender and with about 21 at once (what one node of
// the cluster benchmark forwards). cpu-µs/op is the process's CPU time (user + system) per
// request, the figure that matters on a shared machine; signed minus unsigned is what signing
// costs per request, and the many-senders case shows what batching saves.
//
//	go test -run '^$' -bench BenchmarkSend -benchtime 20000x -count 5 ./http/peer/
func BenchmarkSend(b *testing.B) {
	for _, signed := range []bool{false, true} {
		for _, par := range []int{1, 21} {
			name := map[bool]string{false: "unsigned", true: "signed"}[signed]
			b.Run(fmt.Sprintf("%s/senders=%d", name, par), func(b *testing.B) {
				var signer *Signer
				if signed {
					signer = NewSigner("0123456789abcdef0123456789abcdef", "")
				}
				srv := httptest.NewServer(Handler(okEngine{}, signer, slog.New(slog.DiscardHandler)))
				defer srv.Close()
				addr := strings.TrimPrefix(srv.URL, "http://")
				c := NewClient(time.Second, signer)
				defer c.Close()
				req := actors.PeerRequest{Kind: actors.PeerRoom, ID: "abcdef", Event: "comment",
					Data: []byte(`{"user":{"id":"7","name":"n"},"known":true,"text":"hello"}`)}
				// RunParallel starts parallelism × GOMAXPROCS goroutines.
				b.SetParallelism(max(1, par/runtime.GOMAXPROCS(0)))
				cpu0 := cpuTime()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := c.Send(context.Background(), addr, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}
