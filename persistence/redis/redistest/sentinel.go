package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels of StartSentinel monitor the primary under.
const SentinelMaster = "roomengine"

// Sentinel is a primary, its replicas and the sentinels watching them, as production runs
// Redis for failover: every server fsyncs every write, the sentinels agree (quorum 2) that
// the primary is down after one second and promote a replica.
type Sentinel struct {
	t         testing.TB
	Servers   []*Server // [0] is the first primary; the others start as its replicas
	Sentinels []*Server
}

// StartSentinel starts a primary with `replicas` replicas and `sentinels` sentinels, and
// returns once every sentinel knows the primary and its replicas, so a failover can happen.
func StartSentinel(t testing.TB, replicas, sentinels int) *Sentinel {
	t.Helper()
	primary := Start(t)
	s := &Sentinel{t: t, Servers: []*Server{primary}}
	host, port, _ := net.SplitHostPort(primary.Addr())
	for range replicas {
		s.Servers = append(s.Servers, startServer(t, []string{"--replicaof", host, port}, ""))
	}
	quorum := sentinels/2 + 1
	conf := fmt.Sprintf("sentinel monitor %s %s %s %d\n"+
		"sentinel down-after-milliseconds %s 1000\n"+
		"sentinel failover-timeout %s 5000\n"+
		"sentinel parallel-syncs %s 1\n",
		SentinelMaster, host, port, quorum, SentinelMaster, SentinelMaster, SentinelMaster)
	for range sentinels {
		s.Sentinels = append(s.Sentinels, startServer(t, nil, conf))
	}
	// Sentinels discover replicas and each other through the primary's INFO and hello
	// messages; until they have, a failover could not pick a replica.
	deadline := time.Now().Add(startTimeout)
	for !s.ready(replicas, sentinels) {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinels did not discover %d replicas and %d sentinels within %v", replicas, sentinels, startTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// Addrs lists the sentinels' host:port.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, x := range s.Sentinels {
		out[i] = x.Addr()
	}
	return out
}

// Primary returns the server the sentinels currently name as the primary (nil if none of
// them answers or they name an unknown address).
func (s *Sentinel) Primary() *Server {
	for _, x := range s.Sentinels {
		sc := sentinelClient(x.Addr())
		reply, err := sc.GetMasterAddrByName(context.Background(), SentinelMaster).Result()
		sc.Close()
		if err != nil || len(reply) != 2 {
			continue
		}
		addr := net.JoinHostPort(reply[0], reply[1])
		for _, srv := range s.Servers {
			if srv.Addr() == addr {
				return srv
			}
		}
	}
	return nil
}

func (s *Sentinel) ready(replicas, sentinels int) bool {
	// A replica acknowledges writes only once its first sync is done.
	for _, srv := range s.Servers[1:] {
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
		info, err := c.Info(context.Background(), "replication").Result()
		c.Close()
		if err != nil || !strings.Contains(info, "master_link_status:up") {
			return false
		}
	}
	for _, x := range s.Sentinels {
		sc := sentinelClient(x.Addr())
		fields, err := sc.Master(context.Background(), SentinelMaster).Result()
		sc.Close()
		if err != nil {
			return false
		}
		if fields["num-slaves"] != strconv.Itoa(replicas) || fields["num-other-sentinels"] != strconv.Itoa(sentinels-1) {
			return false
		}
	}
	return true
}

func sentinelClient(addr string) *goredis.SentinelClient {
	return goredis.NewSentinelClient(&goredis.Options{Addr: addr, DialTimeout: time.Second,
		ReadTimeout: time.Second, MaxRetries: -1})
}

// WaitSynced waits until the primary the sentinels name has at least n replicas whose
// link is up and in sync (a server restarted after a failover is made a replica by the
// sentinels and resyncs first), failing the test after within.
func (s *Sentinel) WaitSynced(t testing.TB, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if p := s.Primary(); p != nil && onlineReplicas(p.Addr()) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: the primary has fewer than %d replicas in sync after %v", n, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// onlineReplicas counts the replicas a primary lists as online.
func onlineReplicas(addr string) int {
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil || !strings.Contains(info, "role:master") {
		return 0
	}
	return strings.Count(info, ",state=online,")
}
