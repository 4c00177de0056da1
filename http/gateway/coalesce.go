package gateway

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// The WebSocket library flushes every message to the socket: one write system call per
// frame per subscriber, which on a small machine costs more than everything else the
// gateway does. The writer already takes its queue as a batch, so the connection under the
// library is wrapped: while a batch is being written, frames collect in memory, and the
// batch leaves in one write. Framing stays entirely the library's.

// coalescingConn is the hijacked connection as the library sees it.
type coalescingConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.batching {
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// begin starts collecting writes.
func (c *coalescingConn) begin() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

// flush sends what was collected in one write, which must finish by deadline. Control
// frames written meanwhile by other goroutines (pongs, close) are whole frames, so they may
// go out before or after the batch without corrupting the stream.
func (c *coalescingConn) flush(deadline time.Time) error {
	c.mu.Lock()
	buf := c.buf
	c.buf, c.batching = nil, false
	c.mu.Unlock()
	if len(buf) == 0 {
		return nil
	}
	_ = c.Conn.SetWriteDeadline(deadline)
	_, err := c.Conn.Write(buf)
	_ = c.Conn.SetWriteDeadline(time.Time{})
	return err
}

// coalescingWriter hands the library a coalescingConn when it hijacks the connection.
type coalescingWriter struct {
	http.ResponseWriter
	conn *coalescingConn
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
	w.conn = &coalescingConn{Conn: nc}
	return w.conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(w.conn, 4096)), nil
}
