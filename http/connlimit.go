package http

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ConnLimit is http.maxConns: at most max open connections on the public port that are not
// WebSockets. A connection counts from its accept until it closes or is upgraded (a
// WebSocket is hijacked from the server and stops counting: the gateway has its own
// limits), so a flood of idle or slow connections cannot take every descriptor of the
// process, and the WebSockets already open are never refused. A connection beyond the
// limit is answered 503 and closed at once.
type ConnLimit struct {
	max  int64
	open atomic.Int64
}

// NewConnLimit returns nil for max <= 0 (no limit); a nil *ConnLimit changes nothing.
func NewConnLimit(max int) *ConnLimit {
	if max <= 0 {
		return nil
	}
	return &ConnLimit{max: int64(max)}
}

// Open is the number of counted connections.
func (l *ConnLimit) Open() int64 { return l.open.Load() }

// Listener counts the connections ln accepts; it must be the outermost listener, so the
// server's ConnState sees its connections.
func (l *ConnLimit) Listener(ln net.Listener) net.Listener {
	if l == nil {
		return ln
	}
	return &limitedListener{Listener: ln, l: l}
}

// ConnState stops counting a connection once it is hijacked (a WebSocket).
func (l *ConnLimit) ConnState(c net.Conn, s http.ConnState) {
	if l == nil || s != http.StateHijacked {
		return
	}
	if lc, ok := c.(*limitedConn); ok {
		lc.release()
	}
}

type limitedListener struct {
	net.Listener
	l *ConnLimit
}

// overLimit is the whole answer to a connection beyond the limit.
const overLimit = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\n" +
	"Content-Length: 45\r\nRetry-After: 1\r\n\r\n{\"code\":503,\"message\":\"too many connections\"}"

func (ln *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ln.l.open.Add(1) > ln.l.max {
			ln.l.open.Add(-1)
			go refuseConn(c)
			continue
		}
		return &limitedConn{Conn: c, l: ln.l}, nil
	}
}

// refuseConn answers 503 without reading the request (a slow client costs nothing).
func refuseConn(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte(overLimit))
	_ = c.Close()
}

type limitedConn struct {
	net.Conn
	l    *ConnLimit
	once sync.Once
}

func (c *limitedConn) release() { c.once.Do(func() { c.l.open.Add(-1) }) }

// UnwrapConn hands over the socket itself (to the WebSocket gateway, after the upgrade):
// the connection stops counting, as when it is hijacked.
func (c *limitedConn) UnwrapConn() net.Conn {
	c.release()
	return c.Conn
}

func (c *limitedConn) Close() error {
	c.release()
	return c.Conn.Close()
}
