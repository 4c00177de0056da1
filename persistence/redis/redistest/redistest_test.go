package redistest

import (
	"bufio"
	"fmt"
	goredis "github.com/redis/go-redis/v9"
	"net"
	"strings"
	"testing"
	"time"
)

// do sends one inline command and returns the first reply line.
func do(t *testing.T, addr, cmd string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "%s\r\n", cmd)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return strings.TrimRight(line, "\r\n")
}

// TestStopRestartKeepsAcknowledgedWrites checks what the store tests rely on: Stop makes
// the port refuse connections, and a write acknowledged before a SIGKILL is there after
// Restart on the same address.
func TestStopRestartKeepsAcknowledgedWrites(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	if got := do(t, addr, "SET k v1"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}

	s.Stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("server still accepts connections after Stop")
	}
	s.Stop() // idempotent

	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	if got := do(t, addr, "GET k"); got != "$2" {
		t.Fatalf("GET after Restart = %q, want the bulk header of \"v1\"", got)
	}
}

// TestClusterPromotesAReplica: a write acknowledged by a master (and its replica, WAIT) is
// served by that replica once the master is killed and the replica promoted.
func TestClusterPromotesAReplica(t *testing.T) {
	c := StartCluster(t)
	if got := len(c.Masters()); got != 3 {
		t.Fatalf("%d masters, want 3", got)
	}
	ctx := t.Context()
	rc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs(), ClusterStateReloadInterval: time.Second})
	defer rc.Close()
	master, err := rc.MasterForKey(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	var pipe []goredis.Cmder
	if pipe, err = master.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.Set(ctx, "k", "v", 0)
		p.Do(ctx, "WAIT", 1, 2000)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, _ := pipe[1].(*goredis.Cmd).Int(); n != 1 {
		t.Fatalf("WAIT = %d replicas, want 1", n)
	}
	old := c.byAddr(master.Options().Addr)
	replica := c.ReplicaOf(old)
	if old == nil || replica == nil {
		t.Fatalf("master %s (%v) has no replica", master.Options().Addr, old)
	}
	old.Stop()
	took := c.WaitPromoted(t, replica, 20*time.Second)
	t.Logf("replica promoted %v after kill -9 of its master", took.Round(time.Millisecond))
	var v string
	deadline := time.Now().Add(10 * time.Second)
	for v, err = rc.Get(ctx, "k").Result(); err != nil && time.Now().Before(deadline); v, err = rc.Get(ctx, "k").Result() {
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || v != "v" {
		t.Fatalf("GET k after the failover = %q, %v", v, err)
	}
	// The old master comes back as the new master's replica.
	old.Restart()
	c.WaitHealthy(t, 3, 20*time.Second)
	// Each node learns the new roles through the cluster bus: the view asked may lag.
	for deadline := time.Now().Add(10 * time.Second); c.ReplicaOf(replica) != old; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted master is not its old replica's replica")
		}
	}
}
