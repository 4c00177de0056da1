package gateway

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// A connection's bytes reach its socket two ways: push frames, built once per topic and
// written by the gateway's writers (writer.go) several frames per system call, and the
// control frames (pongs, pings, the close: wsconn.go). Both go through sock,
// which writes without ever blocking its caller: what the kernel cannot take at once
// becomes the connection's backlog, which its writer tries again on each of its rounds
// (one per WriteCoalesce while a backlog waits), dropping the client if it takes no byte
// for WriteTimeout. No goroutine and no buffer is added for a client that falls behind: the
// backlog is the rest of a frame (its shared bytes) and the frames taken from the queue
// after it, and while it waits the queue fills and sheds as the client falls behind.

// sock is the hijacked connection as the writers and the control frames see it.
type sock struct {
	net.Conn
	rc      syscall.RawConn // for writes that must not block; nil: blocking writes under timeout
	timeout time.Duration   // WriteTimeout

	mu    sync.Mutex
	idle  *sync.Cond // signalled when the backlog is written or the socket fails
	owner *conn      // nil until the handshake is done: writes before it block, as plain writes
	// broken: a write failed, later writes fail at once.
	broken bool
	// The backlog, written in this order: cut is the rest of a frame the socket took in
	// part (a push frame's shared bytes, or a copy of a control frame's), ctrl the control
	// frames written meanwhile, rest the push frames not begun.
	cut  []byte
	ctrl []byte
	rest []*frame
	// moved is when the socket last took bytes while a backlog waited (or the backlog began).
	moved time.Time
	gone  bool // closed
	// waited: the wait for the client's close frame is over (waitGone).
	waited bool
}

var errBroken = errors.New("gateway: socket write failed earlier")

// errStuck is the failure of a client that took no byte of its backlog for WriteTimeout.
var errStuck = os.ErrDeadlineExceeded

func newSock(nc net.Conn, timeout time.Duration) *sock {
	s := &sock{Conn: nc, timeout: timeout}
	s.idle = sync.NewCond(&s.mu)
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
		}
	}
	return s
}

// attach hands the socket to its connection once the handshake is done.
func (s *sock) attach(c *conn) {
	s.mu.Lock()
	s.owner = c
	s.mu.Unlock()
}

// behind reports whether a backlog waits; s.mu is held.
func (s *sock) behind() bool { return len(s.cut) > 0 || len(s.ctrl) > 0 || len(s.rest) > 0 }

// Write is the control frames' path. It never blocks once attached: what the socket does not take at once joins the backlog, and the
// connection's writer is told.
func (s *sock) Write(p []byte) (int, error) {
	s.mu.Lock()
	switch {
	case s.broken:
		s.mu.Unlock()
		return 0, errBroken
	case s.owner == nil:
		defer s.mu.Unlock()
		return s.Conn.Write(p)
	case s.behind():
		s.ctrl = append(s.ctrl, p...)
		s.mu.Unlock()
		return len(p), nil
	}
	n, err := s.tryWrite(p)
	if err != nil {
		s.fail()
		s.mu.Unlock()
		return n, err
	}
	fell := n < len(p)
	if fell {
		s.ctrl = append(s.ctrl, p[n:]...)
		s.moved = time.Now()
	}
	owner := s.owner
	s.mu.Unlock()
	if fell {
		owner.schedule() // its writer takes the backlog on
	}
	return len(p), nil
}

// busy reports whether a backlog waits (or the socket failed): the writer then leaves the
// connection's queue alone, so it fills and sheds as the client falls behind.
func (s *sock) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.behind() || s.broken
}

// send writes frames in chunks of up to flushChunk bytes built in *scratch (the writer's
// buffer, reused for every connection), each chunk in one system call, after the backlog
// if one waits. What the socket does not take becomes the backlog. It reports whether a
// backlog remains; an error means the socket failed, or the client took nothing for
// WriteTimeout.
func (s *sock) send(frames []*frame, scratch *[]byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return false, errBroken
	}
	if len(frames) > 0 {
		if s.behind() {
			s.rest = append(s.rest, frames...)
		} else if err := s.writeFrames(frames, scratch, true); err != nil {
			return false, err
		}
	}
	if !s.behind() {
		return false, nil
	}
	return s.retry(scratch)
}

// retry writes as much of the backlog as the socket takes; s.mu is held.
func (s *sock) retry(scratch *[]byte) (bool, error) {
	now := time.Now()
	for len(s.cut) > 0 || len(s.ctrl) > 0 {
		b := &s.cut
		if len(s.cut) == 0 {
			b = &s.ctrl
		}
		n, err := s.tryWrite(*b)
		if err != nil {
			s.fail()
			return false, err
		}
		if n > 0 {
			s.moved = now
		}
		*b = (*b)[n:]
		if len(*b) > 0 {
			return true, s.stuck(now)
		}
		*b = nil
	}
	if len(s.rest) > 0 {
		rest := s.rest
		s.rest = nil
		if err := s.writeFrames(rest, scratch, false); err != nil {
			return false, err
		}
		clear(rest[:len(rest)-len(s.rest)])
		if s.behind() {
			return true, s.stuck(now)
		}
	}
	s.idle.Broadcast()
	return false, nil
}

// stuck fails the socket if the client has taken no byte for WriteTimeout; s.mu is held.
func (s *sock) stuck(now time.Time) error {
	if now.Sub(s.moved) < s.timeout {
		return nil
	}
	s.fail()
	return errStuck
}

// writeFrames writes frames chunk by chunk until the socket takes a chunk only in part:
// the rest of the frame it cut (its shared bytes, no copy) and the frames after it become
// backlog (copied when fresh: frames is then the caller's, which it reuses). s.mu is held;
// s.cut, s.ctrl and s.rest are empty.
func (s *sock) writeFrames(frames []*frame, scratch *[]byte, fresh bool) error {
	wrote := false
	for len(frames) > 0 {
		var n int
		*scratch, n = appendChunk((*scratch)[:0], frames)
		chunk := *scratch
		w, err := s.tryWrite(chunk)
		if err != nil {
			s.fail()
			return err
		}
		if w == len(chunk) {
			frames, wrote = frames[n:], true
			continue
		}
		for w >= len(frames[0].wire) { // the whole frames the socket took
			w -= len(frames[0].wire)
			frames = frames[1:]
		}
		s.cut = frames[0].wire[w:]
		if fresh || wrote || w > 0 {
			s.moved = time.Now()
		}
		if fresh {
			s.rest = append([]*frame(nil), frames[1:]...)
		} else {
			s.rest = frames[1:] // the backlog's own array
		}
		return nil
	}
	return nil
}

// appendChunk appends whole frames to b until it holds flushChunk bytes (at least one
// frame), and says how many it took.
func appendChunk(b []byte, frames []*frame) ([]byte, int) {
	n := 0
	for n < len(frames) && (n == 0 || len(b)+len(frames[n].wire) <= flushChunk) {
		b = append(b, frames[n].wire...)
		n++
	}
	return b, n
}

// fail marks the socket failed and drops its backlog; s.mu is held.
func (s *sock) fail() {
	s.broken = true
	s.cut, s.ctrl, s.rest = nil, nil, nil
	s.idle.Broadcast()
}

// tryWrite writes what the socket takes without waiting; s.mu is held. A connection without
// a raw descriptor (none of net/http's plain TCP ones) is written blocking, under
// WriteTimeout.
func (s *sock) tryWrite(p []byte) (int, error) {
	if s.rc == nil {
		_ = s.Conn.SetWriteDeadline(time.Now().Add(s.timeout))
		return s.Conn.Write(p)
	}
	n := 0
	var werr error
	err := s.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, e := syscall.Write(int(fd), p[n:])
			if m > 0 {
				n += m
			}
			if e == syscall.EINTR {
				continue
			}
			if e != nil && e != syscall.EAGAIN {
				werr = e
			}
			if e != nil || m <= 0 {
				break
			}
		}
		return true // never wait here: the writer's next round tries again
	})
	if err != nil {
		return n, err
	}
	return n, werr
}

// waitIdle returns once no backlog waits (everything handed to the socket was written, or
// the socket failed).
func (s *sock) waitIdle() {
	s.mu.Lock()
	for s.behind() && !s.broken {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// waitGone returns once the socket is closed, or after timeout.
func (s *sock) waitGone(timeout time.Duration) {
	t := time.AfterFunc(timeout, func() {
		s.mu.Lock()
		s.waited = true
		s.idle.Broadcast()
		s.mu.Unlock()
	})
	defer t.Stop()
	s.mu.Lock()
	for !s.gone && !s.waited {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// close closes the socket; every later write fails at once.
func (s *sock) close() {
	s.mu.Lock()
	s.gone = true
	s.fail()
	s.mu.Unlock()
	_ = s.Conn.Close()
}
