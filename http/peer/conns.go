package peer

import (
	"container/list"
	"context"
	"crypto/tls"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// The cluster port must stay open to the other nodes whatever a stranger who reaches it
// does. A connection is unproven until it has sent a correctly signed request (in a cluster
// without a secret: a well-formed one); an unproven connection is closed after ProveWithin,
// and beyond MaxConns unproven connections the oldest is closed to make room. So a flood of
// idle or slow connections holds at most MaxConns descriptors, each for seconds, and never
// keeps out a peer's fresh connection: accepted at once, it proves itself with its first
// request, milliseconds later.

// Timeouts of the cluster port.
const (
	// ProveWithin is how long a connection may stay without a correctly signed request.
	ProveWithin = 5 * time.Second
	// BodyTimeout bounds the reading of one whole request, headers and body.
	BodyTimeout = 10 * time.Second
	// HeaderTimeout bounds the reading of a request's headers.
	HeaderTimeout = 5 * time.Second
	// IdleTimeout closes a proven connection nobody used for this long.
	IdleTimeout = 2 * time.Minute
)

// NewServer is the HTTP server of the cluster port; serve it on Guard's listener.
func NewServer(engine Engine, signer *Signer, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           Handler(engine, signer, logger),
		ReadHeaderTimeout: HeaderTimeout,
		ReadTimeout:       BodyTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          log.New(slogWriter{logger}, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn() // cluster.tls: the guarded connection is underneath
			}
			if gc, ok := c.(*guardedConn); ok {
				return context.WithValue(ctx, connKey{}, gc)
			}
			return ctx
		},
	}
}

// slogWriter puts the server's own messages (TLS handshake errors, accept retries) in the
// node's log at debug level: a flood of strangers must not flood the log either.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("cluster listener", "msg", string(p))
	return len(p), nil
}

type connKey struct{}

// proved marks the connection of a request as proven.
func proved(ctx context.Context) {
	if gc, ok := ctx.Value(connKey{}).(*guardedConn); ok {
		gc.prove()
	}
}

// Guard wraps the cluster listener: at most maxUnproven unproven connections, each closed
// after within unless it proves itself.
func Guard(ln net.Listener, maxUnproven int, within time.Duration) net.Listener {
	return &guardedListener{Listener: ln, max: maxUnproven, within: within}
}

type guardedListener struct {
	net.Listener
	max    int
	within time.Duration

	mu       sync.Mutex
	unproven list.List // of *guardedConn, oldest first
}

type guardedConn struct {
	net.Conn
	l     *guardedListener
	elem  *list.Element // in l.unproven; nil once proven or closed
	timer *time.Timer
	once  sync.Once
}

func (l *guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &guardedConn{Conn: c, l: l}
	var evict *guardedConn
	l.mu.Lock()
	if l.unproven.Len() >= l.max {
		evict = l.unproven.Remove(l.unproven.Front()).(*guardedConn)
		evict.elem = nil
	}
	gc.elem = l.unproven.PushBack(gc)
	gc.timer = time.AfterFunc(l.within, gc.expire)
	l.mu.Unlock()
	if evict != nil {
		_ = evict.Close()
	}
	return gc, nil
}

// Unproven is the number of connections that have not proved themselves yet.
func (l *guardedListener) Unproven() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unproven.Len()
}

func (c *guardedConn) expire() {
	c.l.mu.Lock()
	still := c.elem != nil
	if still {
		c.l.unproven.Remove(c.elem)
		c.elem = nil
	}
	c.l.mu.Unlock()
	if still {
		_ = c.Close()
	}
}

func (c *guardedConn) prove() {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.elem != nil {
		c.l.unproven.Remove(c.elem)
		c.elem = nil
		c.timer.Stop()
	}
}

func (c *guardedConn) Close() error {
	err := error(nil)
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.elem != nil {
			c.l.unproven.Remove(c.elem)
			c.elem = nil
		}
		c.l.mu.Unlock()
		if c.timer != nil {
			c.timer.Stop()
		}
		err = c.Conn.Close()
	})
	return err
}
