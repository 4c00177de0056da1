package redistest

import (
	"bufio"
	"fmt"
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
