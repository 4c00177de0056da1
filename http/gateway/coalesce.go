package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// A connection's bytes reach its socket two ways: push frames, built once per topic and
// written by the gateway's writers (writer.go) several frames per system call, and the
// WebSocket library's control frames (pongs, pings, the close). Both go through sock,
// which writes without ever blocking its caller: a write the kernel cannot take at once
// leaves its remainder, and the frames behind it, to a drain goroutine that writes them
// chunk by chunk, dropping the client if it takes nothing for WriteTimeout. That goroutine exists only while a client is behind, so an
// idle or keeping-up connection holds no writer goroutine and no write buffer.

// sock is the hijacked connection as the library and the writers see it.
type sock struct {
	net.Conn
	rc syscall.RawConn // for writes that must not block; nil: every write goes to the drain

	mu    sync.Mutex
	idle  *sync.Cond // signalled when a drain ends
	owner *conn      // nil until the handshake is done: writes before it block, as plain writes
	// slow is set while a drain goroutine owns the socket's writes: everything else is
	// appended behind it (pending bytes, then rest frames) and nothing writes directly.
	slow    bool
	broken  bool     // a write failed: later writes fail at once
	pending []byte   // bytes that must go first: the rest of a cut frame, control frames
	rest    []*frame // frames not yet written, after pending
}

var errBroken = errors.New("gateway: socket write failed earlier")

func newSock(nc net.Conn) *sock {
	s := &sock{Conn: nc}
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

// Write is the library's path (control frames; the handshake before attach). It never
// blocks once attached: what the socket does not take at once goes to the drain.
func (s *sock) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.broken:
		return 0, errBroken
	case s.owner == nil:
		return s.Conn.Write(p)
	case s.slow:
		s.pending = append(s.pending, p...)
		return len(p), nil
	}
	n, err := s.tryWrite(p)
	if err != nil {
		s.broken = true
		return n, err
	}
	if n < len(p) {
		s.pending = append(s.pending, p[n:]...)
		s.startDrain()
	}
	return len(p), nil
}

// busy reports whether the drain owns the writes (or the socket failed): the writer then
// leaves the connection's queue alone, so it fills and sheds as the client falls behind.
func (s *sock) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slow || s.broken
}

// send writes frames in chunks of up to flushChunk bytes built in *scratch (the writer's
// buffer, reused for every connection), each chunk in one system call. When the kernel
// takes a chunk only in part, the remainder and the frames after it go to the drain.
func (s *sock) send(frames []*frame, scratch *[]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return errBroken
	}
	if s.slow {
		s.rest = append(s.rest, frames...)
		return nil
	}
	for len(frames) > 0 {
		var n int
		*scratch, n = appendChunk((*scratch)[:0], frames)
		chunk := *scratch
		frames = frames[n:]
		w, err := s.tryWrite(chunk)
		if err != nil {
			s.broken = true
			return err
		}
		if w < len(chunk) {
			s.pending = append(s.pending, chunk[w:]...)
			s.rest = append(s.rest, frames...)
			s.startDrain()
			return nil
		}
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

// tryWrite writes what the socket takes without waiting; s.mu is held.
func (s *sock) tryWrite(p []byte) (int, error) {
	if s.rc == nil {
		return 0, nil
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
		return true // never wait here: the drain does
	})
	if err != nil {
		return n, err
	}
	return n, werr
}

// startDrain hands the socket's writes to a drain goroutine; s.mu is held.
func (s *sock) startDrain() {
	s.slow = true
	if !s.owner.goHelper(s.owner.drain) {
		// The connection has ended: nothing more will be written.
		s.broken, s.pending, s.rest = true, nil, nil
	}
}

// drain writes what is pending, then the rest frames chunk by chunk, each chunk within
// WriteTimeout, until nothing is left; then the writer takes the connection back.
func (c *conn) drain() {
	s := c.sock
	var buf []byte
	for {
		s.mu.Lock()
		var out []byte
		switch {
		case len(s.pending) > 0:
			out, s.pending = s.pending, nil
		case len(s.rest) > 0:
			var n int
			buf, n = appendChunk(buf[:0], s.rest)
			clear(s.rest[:n])
			s.rest = s.rest[n:]
			out = buf
		default:
			s.slow, s.rest = false, nil
			s.idle.Broadcast()
			s.mu.Unlock()
			c.schedule() // what queued meanwhile
			return
		}
		s.mu.Unlock()
		err := s.writeAll(out, c.g.opts.WriteTimeout)
		_ = s.Conn.SetWriteDeadline(time.Time{})
		if err != nil {
			s.mu.Lock()
			s.broken, s.pending, s.rest = true, nil, nil
			s.idle.Broadcast()
			s.mu.Unlock()
			c.finish(writeFailed(err))
			return
		}
	}
}

// writeAll writes out, blocking. A client is stuck when it takes nothing for timeout: one
// that takes some of it in time is slow, and gets another timeout for the rest (its queue
// sheds meanwhile, and an important frame it cannot take closes it with 1013).
func (s *sock) writeAll(out []byte, timeout time.Duration) error {
	for {
		_ = s.Conn.SetWriteDeadline(time.Now().Add(timeout))
		n, err := s.Conn.Write(out)
		if err == nil || n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		out = out[n:]
	}
}

// waitIdle returns once no drain is running (everything handed to the socket was written,
// or the socket failed).
func (s *sock) waitIdle() {
	s.mu.Lock()
	for s.slow && !s.broken {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// controlBufferSize is the library's write buffer: it only writes control frames now (at
// most 131 bytes each), so a small one saves memory on every connection.
const controlBufferSize = 256

// readBufferSize is the library's read buffer: clients send nothing but control frames.
const readBufferSize = 512

// coalescingWriter hands the library a sock when it hijacks the connection.
type coalescingWriter struct {
	http.ResponseWriter
	conn *sock
}

func (w *coalescingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	w.conn = newSock(nc)
	br := brw.Reader
	if br.Buffered() == 0 {
		// The server's 4 KiB read buffer would idle with the connection; nothing read
		// ahead is lost by replacing it.
		br = bufio.NewReaderSize(nc, readBufferSize)
	}
	return w.conn, bufio.NewReadWriter(br, bufio.NewWriterSize(w.conn, controlBufferSize)), nil
}
