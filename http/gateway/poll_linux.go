//go:build linux

package gateway

import (
	"sync"
	"syscall"
)

// poller reads the clients' bytes of every connection that has any, on one goroutine: an
// epoll set (level-triggered) holds the sockets, so an idle connection costs no goroutine
// and no read buffer, and what clients send (pongs, the odd ping or close) is read from one
// shared buffer. Go's own network poller watches the same sockets for the writers; a
// socket may belong to several epoll sets.
type poller struct {
	epfd int
	wake [2]int // a pipe: a byte in it stops the loop

	mu    sync.Mutex
	conns map[uint64]*conn // by the id in their epoll event
	next  uint64
}

// newPoller starts a poller that stops when stop is closed; nil if the system refuses
// (connections are then read by a goroutine each).
func newPoller(stop <-chan struct{}) *poller {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	p := &poller{epfd: epfd, conns: make(map[uint64]*conn)}
	if err := syscall.Pipe2(p.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = syscall.Close(epfd)
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // id 0: the wake pipe
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run()
	}()
	go func() {
		// The descriptors are closed only here, once the loop has ended: never while a
		// write to the pipe could reach a reused number.
		<-stop
		_, _ = syscall.Write(p.wake[1], []byte{0})
		<-done
		p.closeFDs()
	}()
	return p
}

func (p *poller) closeFDs() {
	_ = syscall.Close(p.epfd)
	_ = syscall.Close(p.wake[0])
	_ = syscall.Close(p.wake[1])
}

// watch starts reading c when the client sends something; false if c cannot be watched.
func (p *poller) watch(c *conn) bool {
	if p == nil || c.sock.rc == nil {
		return false
	}
	p.mu.Lock()
	p.next++
	id := p.next
	p.conns[id] = c
	p.mu.Unlock()
	c.pollID.Store(id)
	if c.closed.Load() { // closeNow may have run before the id was known
		p.forget(c)
		return true
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP}
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
	var err error
	if cerr := c.sock.rc.Control(func(fd uintptr) {
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}); cerr != nil {
		err = cerr
	}
	if err != nil {
		p.mu.Lock()
		delete(p.conns, id)
		p.mu.Unlock()
		return false
	}
	return true
}

// forget stops watching c; it is called before c's socket is closed, so that the
// descriptor, once reused, is not watched for c.
func (p *poller) forget(c *conn) {
	id := c.pollID.Load()
	if p == nil || id == 0 {
		return
	}
	p.mu.Lock()
	delete(p.conns, id)
	p.mu.Unlock()
	_ = c.sock.rc.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
}

func (p *poller) run() {
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, pollReadSize)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				return // stopped
			}
			p.mu.Lock()
			c := p.conns[id]
			p.mu.Unlock()
			if c != nil {
				c.readReady(buf)
			}
		}
	}
}

// readReady reads what a socket the poller reported readable holds, into buf, without
// waiting; the client leaving (or the socket failing) closes the connection.
func (c *conn) readReady(buf []byte) {
	for {
		n, gone := c.sock.readNow(buf)
		if n > 0 {
			c.onRead(buf[:n])
		}
		if gone {
			c.closeNow()
			return
		}
		if n < len(buf) {
			return
		}
	}
}

// readNow reads what the socket holds without waiting. gone: the client closed its side
// or the socket failed.
func (s *sock) readNow(buf []byte) (n int, gone bool) {
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			m, e := syscall.Read(int(fd), buf)
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
			case e != nil || m == 0:
				gone = true
			default:
				n = m
			}
			return true
		}
	})
	if err != nil {
		gone = true
	}
	return n, gone
}
