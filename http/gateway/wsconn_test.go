package gateway

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The gateway speaks the client side of RFC 6455 itself (wsconn.go). These tests hold it to
// what the WebSocket library did: pings answered, a client's close answered with its code,
// data from the client discarded, a message over the read limit closed with 1009, a frame
// against the protocol with 1002; and frames cut anywhere by the network, or sent with the
// handshake, read all the same.

// rawClient is a WebSocket client written byte by byte, to send what a library would not.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialRaw opens a WebSocket by hand; extra is written in the same write as the request.
func dialRaw(t *testing.T, addr, query string, extra []byte) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET /ws?" + query + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write(append([]byte(req), extra...)); err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	status, err := c.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101") {
		t.Fatalf("handshake: %q %v", status, err)
	}
	accept := ""
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Accept") {
			accept = strings.TrimSpace(v)
		}
	}
	if accept != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" { // RFC 6455's example key's answer
		t.Fatalf("Sec-WebSocket-Accept %q", accept)
	}
	return c
}

// clientFrame builds a client frame: masked unless unmasked is set.
func clientFrame(fin bool, op byte, payload []byte, unmasked bool) []byte {
	b0 := op
	if fin {
		b0 |= finBit
	}
	b := []byte{b0}
	n := len(payload)
	mb := byte(maskBit)
	if unmasked {
		mb = 0
	}
	switch {
	case n < 126:
		b = append(b, mb|byte(n))
	case n < 1<<16:
		b = append(b, mb|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, mb|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if unmasked {
		return append(b, payload...)
	}
	mask := []byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask...)
	for i, p := range payload {
		b = append(b, p^mask[i&3])
	}
	return b
}

// next reads the server's next frame (servers never mask).
func (c *rawClient) next() (op byte, payload []byte) {
	c.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(c.br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(c.br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		c.t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, payload
}

// A ping sent with the handshake, and one sent a byte per write, are both answered.
func TestClientPingsAnsweredWhateverTheCuts(t *testing.T) {
	g, srv := startGateway(t, Options{PingInterval: time.Hour})
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := dialRaw(t, addr, "topic=r1", clientFrame(true, opPing, []byte("early"), false))
	if op, p := c.next(); op != opPong || string(p) != "early" {
		t.Fatalf("got op %x %q, want the pong of the early ping", op, p)
	}
	for _, b := range clientFrame(true, opPing, []byte("cut"), false) {
		if _, err := c.nc.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // separate segments, so separate reads
	}
	if op, p := c.next(); op != opPong || string(p) != "cut" {
		t.Fatalf("got op %x %q, want the pong of the cut ping", op, p)
	}
	// Data from the client, fragmented, is discarded; the connection still gets frames.
	_, _ = c.nc.Write(append(clientFrame(false, opText, []byte("hel"), false), clientFrame(true, opContinuation, []byte("lo"), false)...))
	waitSubscribers(t, g, "r1", 1)
	pubOf(g).Publish(comment("r1", 1))
	if op, p := c.next(); op != opText || !strings.Contains(string(p), `"seq":1`) {
		t.Fatalf("got op %x %q, want the comment", op, p)
	}
}

// A client's close is answered with its code, and the connection is gone as client_gone.
func TestClientCloseIsAnswered(t *testing.T) {
	g, srv := startGateway(t, Options{PingInterval: time.Hour})
	c := dial(t, srv, "topic=r1")
	waitSubscribers(t, g, "r1", 1)
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	waitUntil(t, "the connection to end", func() bool { return g.Stats().Disconnects[EndClientGone] == 1 })
	if n := g.Subscribers("r1"); n != 0 {
		t.Fatalf("%d subscribers after the close", n)
	}
}

// A message over the read limit closes with 1009; an unmasked frame with 1002.
func TestClientMisbehaviourCloses(t *testing.T) {
	_, srv := startGateway(t, Options{PingInterval: time.Hour})
	c := dial(t, srv, "topic=r1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, make([]byte, clientReadLimit+1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("after a big message: %v, want close 1009", err)
	}

	raw := dialRaw(t, strings.TrimPrefix(srv.URL, "http://"), "topic=r1", nil)
	if _, err := raw.nc.Write(clientFrame(true, opText, []byte("x"), true)); err != nil {
		t.Fatal(err)
	}
	op, p := raw.next()
	if op != opClose || len(p) < 2 || websocket.StatusCode(binary.BigEndian.Uint16(p)) != websocket.StatusProtocolError {
		t.Fatalf("after an unmasked frame: op %x %q, want close 1002", op, p)
	}
}

// A bad handshake is refused before the upgrade with 400, the JSON envelope and the
// version the server speaks (RFC 6455 4.4); an HTTP/1.0 request cannot upgrade at all.
func TestBadHandshakeRefused(t *testing.T) {
	_, srv := startGateway(t, Options{PingInterval: time.Hour})
	for name, req := range map[string]string{
		"short key": "GET /ws?topic=r1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"version 8": "GET /ws?topic=r1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
		"HTTP/1.0": "GET /ws?topic=r1 HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_, _ = io.WriteString(nc, req)
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			res, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusBadRequest || res.Header.Get("Sec-WebSocket-Version") != "13" ||
				!strings.Contains(string(body), `"code":400`) {
				t.Fatalf("HTTP %d, Sec-WebSocket-Version %q, body %s; want 400, 13 and the envelope",
					res.StatusCode, res.Header.Get("Sec-WebSocket-Version"), body)
			}
		})
	}
}

// wrappedListener wraps each accepted socket as appserver's listeners do; unwrappable says
// whether the wrapper offers the socket under it (UnwrapConn).
type wrappedListener struct {
	net.Listener
	unwrappable bool
}

type opaqueConn struct{ net.Conn }

type unwrappableConn struct{ net.Conn }

func (c unwrappableConn) UnwrapConn() net.Conn { return c.Conn }

func (l wrappedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || !l.unwrappable {
		return opaqueConn{c}, err
	}
	return unwrappableConn{c}, nil
}

// A socket under a listener's wrapper is found and watched by the poller; one under a
// wrapper that does not offer it is read by a goroutine and written blocking. Both deliver
// frames, answer pings and end on the client's close.
func TestWrappedConnections(t *testing.T) {
	for _, unwrappable := range []bool{true, false} {
		g := New(Options{PingInterval: 50 * time.Millisecond, SeqOrigin: zeroOrigin, Logger: quietLogger()})
		srv := httptest.NewUnstartedServer(g)
		srv.Listener = wrappedListener{srv.Listener, unwrappable}
		srv.Start()
		var pings atomic.Int32
		c := dialWith(t, srv, "topic=r1", &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
			pings.Add(1)
			return true
		}})
		sc := onlyConn(t, g)
		if watched := sc.pollID.Load() != 0; watched != unwrappable {
			t.Errorf("unwrappable %v: watched by the poller: %v", unwrappable, watched)
		}
		frames := make(chan uint64, 1)
		go func() {
			for {
				_, b, err := c.Read(context.Background())
				if err != nil {
					close(frames)
					return
				}
				var f testFrame
				_ = json.Unmarshal(b, &f)
				frames <- f.Seq
			}
		}()
		pubOf(g).Publish(comment("r1", 1))
		if seq := <-frames; seq != 1 {
			t.Errorf("unwrappable %v: got seq %d", unwrappable, seq)
		}
		// The client library answers pings while it reads.
		waitUntil(t, "three pings", func() bool { return pings.Load() >= 3 })
		if g.Subscribers("r1") != 1 || g.Stats().Disconnects[EndClientGone] != 0 {
			t.Errorf("unwrappable %v: the pinged client was dropped", unwrappable)
		}
		c.Close(websocket.StatusNormalClosure, "")
		waitUntil(t, "the client's close", func() bool { return g.Stats().Disconnects[EndClientGone] == 1 })
		stopGateway(t, g, srv)
	}
}
