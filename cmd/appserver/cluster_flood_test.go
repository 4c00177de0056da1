package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// floodFDLimit is the descriptor limit of the node under a flood: far below the flood, so a
// node that kept every connection a stranger opens would run out (and its public port with it).
const floodFDLimit = 4096

// readyzTimes polls the public /readyz until stop closes and returns each answer's time;
// a failed or non-200 answer counts as an hour.
func readyzTimes(base string, stop <-chan struct{}) func() []time.Duration {
	var mu sync.Mutex
	var times []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			start := time.Now()
			res, err := c.Get(base + "/readyz")
			d := time.Since(start)
			if err != nil || res.StatusCode != http.StatusOK {
				d = time.Hour
			}
			if res != nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			mu.Lock()
			times = append(times, d)
			mu.Unlock()
		}
	}()
	return func() []time.Duration {
		<-done
		mu.Lock()
		defer mu.Unlock()
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		return times
	}
}

// signedQuery is a fresh connection's signed queryRoom to the node at addr: a peer arriving
// during the flood.
func signedQuery(t *testing.T, addr, room string) int {
	t.Helper()
	body := []byte(fmt.Sprintf(`{"kind":"room","id":%q,"event":"queryRoom"}`, room))
	req, err := http.NewRequest("POST", "http://"+addr+"/peer/v1", strings.NewReader(string(body)))
	require.NoError(t, err)
	signPeer(req.Header, clusterSecretOld, time.Now(), newNonce(), body)
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := fresh.Do(req)
	require.NoError(t, err, "a peer's fresh connection during the flood")
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// The cluster port under a stranger's flood: 1,000 slow-body connections are cut within
// 15 s and 20,000 idle connections pass while the node's descriptors are four thousand; the
// public port answers /readyz throughout (90 % within 100 ms) and a peer's fresh connection
// is served.
func TestClusterPeerPortFloods(t *testing.T) {
	c := newTestCluster(t, 3*time.Second, "APPSERVER_CLUSTER_SECRET="+clusterSecretOld)
	n := c.start("n1")[0]
	out, err := exec.Command("prlimit", "--pid", fmt.Sprint(n.cmd.Process.Pid), fmt.Sprintf("--nofile=%d:%d", floodFDLimit, floodFDLimit)).CombinedOutput()
	require.NoError(t, err, "prlimit: %s", out)
	host := field(t, n.call(t, "/login", url.Values{"name": {"host"}}), "id")
	room := field(t, n.call(t, "/live/create", url.Values{"uid": {host}}), "roomId")
	addr := c.peerAddr(n)

	t.Run("slow bodies", func(t *testing.T) {
		stop := make(chan struct{})
		times := readyzTimes(n.base, stop)
		const conns = 1000
		var closed atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for i := range conns {
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			head := fmt.Sprintf("POST /peer/v1 HTTP/1.1\r\nHost: peer\r\nContent-Length: 100000\r\nX-Peer-Time: %d\r\n"+
				"X-Peer-Nonce: %s\r\nX-Peer-Signature: %s\r\n\r\n", time.Now().Unix(), newNonce(), strings.Repeat("ab", 32))
			_, err = conn.Write([]byte(head))
			require.NoError(t, err, "connection %d", i)
			wg.Go(func() { // one byte of body every 500 ms, until the node hangs up
				for ctx.Err() == nil {
					if _, err := conn.Write([]byte("x")); err != nil {
						return
					}
					time.Sleep(500 * time.Millisecond)
				}
			})
			wg.Go(func() {
				_, _ = io.Copy(io.Discard, conn)
				closed.Add(1)
			})
		}
		eventually(t, 15*time.Second-time.Since(start), "slow-body connections cut", func() error {
			if n := closed.Load(); n < conns {
				return fmt.Errorf("%d of %d cut", n, conns)
			}
			return nil
		})
		t.Logf("%d slow-body connections cut within %v", conns, time.Since(start).Round(time.Millisecond))
		assert.Equal(t, http.StatusOK, signedQuery(t, addr, room))
		cancel()
		close(stop)
		wg.Wait()
		checkReadyz(t, times())
	})

	t.Run("idle connections", func(t *testing.T) {
		stop := make(chan struct{})
		times := readyzTimes(n.base, stop)
		const total, held = 20000, 6000
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for i := range total {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			require.NoError(t, err, "connection %d", i)
			open = append(open, conn)
			if len(open) > held { // the test's own descriptors are limited too
				open[0].Close()
				open = open[1:]
			}
			if i%5000 == 4999 {
				_, err := n.try("/live/list", nil)
				require.NoError(t, err, "public API after %d idle connections", i+1)
				require.Equal(t, http.StatusOK, signedQuery(t, addr, room), "a peer after %d idle connections", i+1)
			}
		}
		close(stop)
		checkReadyz(t, times())
	})
	assert.NotContains(t, n.log.String(), "too many open files")
}

// checkReadyz: every /readyz answered 200 during the flood, 90 % of them within 100 ms. The
// 95th percentile and the slowest are logged, not asserted: on a shared two-core machine running the flood, the
// node (a -race build) and other tests, a single answer may wait for a core.
func checkReadyz(t *testing.T, times []time.Duration) {
	t.Helper()
	require.NotEmpty(t, times)
	p90, p95 := times[len(times)*90/100], times[len(times)*95/100]
	t.Logf("/readyz during the flood: %d answers, median %v, p90 %v, p95 %v, slowest %v", len(times),
		times[len(times)/2].Round(time.Microsecond), p90.Round(time.Microsecond), p95.Round(time.Microsecond),
		times[len(times)-1].Round(time.Microsecond))
	assert.Less(t, times[len(times)-1], time.Hour, "a /readyz failed during the flood")
	assert.Less(t, p90, 100*time.Millisecond, "p90 of /readyz during the flood")
}
