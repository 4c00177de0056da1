package gateway

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// The gateway speaks the little of RFC 6455 a push-only server needs, itself: the
// handshake, its own frames (text frames built once per topic, pings, pongs, the close)
// and the client's frames, of which it keeps only the control frames. An idle connection
// then holds no goroutine and no buffer: the client's bytes are read when the network
// poller says they are there (poll_linux.go), by one goroutine for all connections, and
// parsed here, a frame at a time, with nothing kept between reads but the few bytes of a
// frame cut by the network.

// WebSocket opcodes and frame bits (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
	finBit         = 0x80
	rsvBits        = 0x70
	maskBit        = 0x80
)

// closeTimeout is how long a connection that sent its close frame waits for the client's
// before it closes the socket anyway.
const closeTimeout = 5 * time.Second

// wsGUID is the handshake's fixed key suffix (RFC 6455, section 1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// handshake checks the upgrade request; nil means it may be accepted.
type handshakeError struct {
	status  int
	message string
}

func checkHandshake(r *http.Request) *handshakeError {
	if !r.ProtoAtLeast(1, 1) {
		return &handshakeError{http.StatusBadRequest, "WebSocket握手需要HTTP/1.1"}
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		return &handshakeError{http.StatusBadRequest, "Sec-WebSocket-Version必须是13"}
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key")))
	if err != nil || len(key) != 16 {
		return &handshakeError{http.StatusBadRequest, "Sec-WebSocket-Key无效"}
	}
	return nil
}

// acceptKey is the Sec-WebSocket-Accept answering key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(strings.TrimSpace(key) + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// upgrade takes the connection from the HTTP server and completes the handshake. It
// returns the socket and the bytes the client sent after its request, if any. The HTTP
// server's buffers are not kept.
func upgrade(w http.ResponseWriter, r *http.Request, timeout time.Duration) (*sock, []byte, error) {
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ = brw.Reader.Peek(n)
		early = append([]byte(nil), early...)
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(nc, resp); err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	_ = nc.SetWriteDeadline(time.Time{})
	return newSock(unwrapConn(nc), timeout), early, nil
}

// unwrapConn finds the socket under the listener's wrappers (a connection counter, a
// request-line mender: appserver's), so that it is written without blocking and read by
// the poller, and the wrappers' buffers are let go. A wrapper offers its inner connection
// with UnwrapConn only when it adds nothing more to the byte stream (TLS never does).
func unwrapConn(nc net.Conn) net.Conn {
	for {
		if _, ok := nc.(syscall.Conn); ok {
			return nc
		}
		u, ok := nc.(interface{ UnwrapConn() net.Conn })
		if !ok {
			return nc
		}
		inner := u.UnwrapConn()
		if inner == nil {
			return nc
		}
		nc = inner
	}
}

// frameReader is what a connection keeps of the client's bytes between reads.
type frameReader struct {
	partial []byte // the start of a frame header or of a control frame, cut by the network
	skip    int64  // bytes of a data frame's payload still to discard
	msg     int64  // the size of the data message being received, over its fragments
	inMsg   bool   // a fragmented data message has begun
	done    bool   // the connection is closing: what the client sends is discarded
}

// errWait says a frame is not complete yet.
var errWait = errors.New("frame incomplete")

// onRead parses what the client sent: pings are answered, pongs noted, a close is answered
// and ends the connection, data messages (which clients have no reason to send) are
// discarded, and a protocol error or a message over clientReadLimit closes the connection
// (1002, 1009), as the WebSocket library did. It runs on the reading goroutine only.
func (c *conn) onRead(b []byte) {
	rd := &c.rd
	if rd.done {
		return
	}
	if len(rd.partial) > 0 {
		b = append(rd.partial, b...)
		rd.partial = nil
	}
	for len(b) > 0 {
		if rd.skip > 0 {
			n := min(rd.skip, int64(len(b)))
			rd.skip -= n
			b = b[n:]
			continue
		}
		n, err := c.readFrame(b)
		if err == errWait {
			rd.partial = append([]byte(nil), b...) // at most a header and 125 bytes
			return
		}
		if err != nil || rd.done {
			rd.done = true
			return
		}
		b = b[n:]
	}
}

// readFrame handles the frame at the start of b and returns how many bytes it used (of a
// data frame: its header; the payload is skipped by the caller).
func (c *conn) readFrame(b []byte) (int, error) {
	rd := &c.rd
	if len(b) < 2 {
		return 0, errWait
	}
	b0, b1 := b[0], b[1]
	op := b0 & 0x0f
	control := op&0x8 != 0
	n, h := int64(b1&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, errWait
		}
		n, h = int64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, errWait
		}
		n, h = int64(binary.BigEndian.Uint64(b[2:])&(1<<63-1)), 10
	}
	switch {
	case b0&rsvBits != 0, b1&maskBit == 0, control && (b0&finBit == 0 || n > 125):
		return 0, c.protocolError()
	case op == opContinuation && !rd.inMsg, (op == opText || op == opBinary) && rd.inMsg:
		return 0, c.protocolError()
	case !control && op != opContinuation && op != opText && op != opBinary:
		return 0, c.protocolError()
	case control && op != opClose && op != opPing && op != opPong:
		return 0, c.protocolError()
	}
	h += 4 // the mask key
	if len(b) < h {
		return 0, errWait
	}
	if !control {
		// Compared before adding: a 63-bit length would overflow the sum.
		if n > clientReadLimit-rd.msg {
			c.finish(ending{websocket.StatusMessageTooBig, "message too big", EndClientGone})
			return 0, errBroken
		}
		rd.msg += n
		rd.inMsg = b0&finBit == 0
		if !rd.inMsg {
			rd.msg = 0
		}
		rd.skip = n
		return h, nil
	}
	if int64(len(b)) < int64(h)+n {
		return 0, errWait
	}
	var payload [125]byte
	p := payload[:n]
	mask := b[h-4 : h]
	for i := range p {
		p[i] = b[h+i] ^ mask[i&3]
	}
	switch op {
	case opPing:
		c.control(opPong, p)
	case opPong:
		c.pinging.Store(false)
	case opClose:
		c.onClose(p)
		return 0, errBroken
	}
	return h + int(n), nil
}

func (c *conn) protocolError() error {
	c.finish(ending{websocket.StatusProtocolError, "protocol error", EndClientGone})
	return errBroken
}

// onClose answers the client's close frame with its own status code (RFC 6455, section
// 5.5.1) and closes the socket; it is the answer to ours if we closed first.
func (c *conn) onClose(p []byte) {
	if !c.closeSent.Swap(true) {
		c.end.CompareAndSwap(nil, &ending{cause: EndClientGone})
		if len(p) >= 2 {
			c.control(opClose, p[:2])
		} else {
			c.control(opClose, nil)
		}
	}
	c.closeNow()
}

// control writes a control frame (at most 125 bytes of payload) through the socket, never
// blocking: behind a backlog it waits its turn.
func (c *conn) control(op byte, payload []byte) {
	var buf [2 + 125]byte
	buf[0], buf[1] = finBit|op, byte(len(payload))
	n := 2 + copy(buf[2:], payload)
	if _, err := c.sock.Write(buf[:n]); err != nil {
		c.finish(writeFailed(err))
	}
}

// closePayload is a close frame's payload: the status code and the reason.
func closePayload(code websocket.StatusCode, reason string) []byte {
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	return append(p, reason[:min(len(reason), 123)]...)
}

// closeGracefully sends what is queued for the socket, then the close frame, waits for the
// client's (closeTimeout at most) and closes the socket. It runs on a goroutine of its own
// for the few seconds a connection takes to close.
func (c *conn) closeGracefully(e ending) {
	s := c.sock
	s.waitIdle()
	if !c.closeSent.Swap(true) {
		c.control(opClose, closePayload(e.code, e.reason))
	}
	s.waitIdle()
	s.waitGone(closeTimeout)
	c.closeNow()
}

// closeNow closes the socket at once, once, and undoes the connection: it stops being
// read, leaves its writer and its topic, and gives back what the handler took for it.
func (c *conn) closeNow() {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.end.CompareAndSwap(nil, &ending{cause: EndClientGone})
	c.w.poll.forget(c)
	c.sock.close()
	g := c.g
	c.w.leave(c)
	g.unsubscribe(c.topic, c)
	end := c.end.Load()
	g.metrics.ended(end.cause)
	switch end.cause {
	case EndQueueFull:
		g.log.Info("closing slow push client", "topic", c.name)
	case EndWriteFailed:
		g.log.Info("dropping stuck push client", "topic", c.name, "writeTimeout", g.opts.WriteTimeout)
	}
	g.untrack(c)
	c.release()
}

// readBlocking reads the client's bytes on a goroutine of its own: for a connection the
// network poller cannot watch (no raw descriptor, or no poller on this system).
func (c *conn) readBlocking() {
	buf := make([]byte, readBufferSize)
	for {
		n, err := c.sock.Conn.Read(buf)
		if n > 0 {
			c.onRead(buf[:n])
		}
		if err != nil {
			c.closeNow()
			return
		}
	}
}

// readBufferSize is the fallback reader's buffer: clients send nothing but control frames.
const readBufferSize = 512

// pollReadSize is the poller's one read buffer, shared by all connections.
const pollReadSize = 16 << 10

var _ net.Conn = (*sock)(nil)
