// Package redistest runs a real redis-server for tests: on a free loopback port, with its
// data in the test's temporary directory, fsyncing every write (so a store whose call
// returned nil must still have the data after Stop and Restart, exactly as in production
// with appendfsync always), and killed when the test ends.
//
// redis-server must be on PATH; `make test` installs it (scripts/test-deps.sh). A missing
// server fails the test rather than skipping it: the Redis store's contract is with a real
// Redis, and a silently skipped suite would look like a passing one.
package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long Start and Restart wait for the server to answer PING.
const startTimeout = 15 * time.Second

// Server is one redis-server process. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	// args come after the common ones: --replicaof for a replica; conf is a config file
	// to pass first (a sentinel's, which it rewrites as it learns the topology).
	args []string
	conf string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been waited for
	paused bool          // frozen with SIGSTOP
}

// Start starts a fresh redis-server and registers its termination with t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	return startServer(t, nil, "")
}

func startServer(t testing.TB, args []string, conf string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server is not on PATH (%v). Run `make test`, which installs "+
			"it via scripts/test-deps.sh, or `sudo apt-get install redis-server`.", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: args}
	if conf != "" {
		s.conf = filepath.Join(s.dir, "sentinel.conf")
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			t.Fatalf("redistest: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	// A port picked by the kernel can be taken by someone else before redis binds it;
	// try a few times before giving up.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Dir is the server's data directory (the append-only file and the server log).
func (s *Server) Dir() string { return s.dir }

// Stop kills the server with SIGKILL, as a crash or a lost machine would, and waits until
// it has exited, so its port refuses connections afterwards. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Restart stops the server if it runs and starts it again on the same port and data
// directory; it returns once the server answers PING with the data reloaded.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	s.stopLocked()
	s.mu.Unlock()
	// The old process may have left its port in TIME_WAIT on some connections; redis sets
	// SO_REUSEADDR, but retry briefly anyway in case the bind still races.
	var err error
	for range 5 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart: %v", err)
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
	s.paused = false
}

func (s *Server) start() error {
	logPath := filepath.Join(s.dir, "redis.log")
	var args []string
	if s.conf != "" {
		args = append(args, s.conf, "--sentinel")
	} else {
		args = append(args, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", logPath,
	)
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start:\n%s", s.port, tail(logPath))
		default:
		}
		if ping(s.Addr()) {
			s.mu.Lock()
			s.cmd, s.done = cmd, done
			s.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d did not answer PING within %v:\n%s",
				s.port, startTimeout, tail(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping reports whether a server answers PING with PONG (not -LOADING while it replays its
// append-only file).
func ping(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of the server log for a failure message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// Freeze stops the server with SIGSTOP: it keeps its connections and answers nothing, as a
// hung machine would. Thaw resumes it.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server with SIGCONT.
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
		s.paused = sig == syscall.SIGSTOP
	}
}

// PID is the server process's id (0 when it is not running), for a test or a script that
// signals it itself.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) running() bool { return s.PID() != 0 }

func (s *Server) frozen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil && s.paused
}
