package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// wsConn is the subscriber side of one WebSocket: a hand-written client, because the
// generator runs beside the server it measures and tens of thousands of subscribers read
// hundreds of thousands of frames per second. Each frame is read into one reused buffer
// with no allocation; pings are answered with a pong and a close frame with a close, as
// RFC 6455 asks; nothing else is ever sent (the push protocol is one-way).
type wsConn struct {
	nc  net.Conn
	br  *bufio.Reader
	buf []byte // the current message, reused
	out []byte // the control frame being written, reused
	// closeCode is the code of the server's close frame (0 while none came).
	closeCode int
}

// wsGUID is the fixed string of the accept handshake (RFC 6455, section 1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxFrame bounds a message the subscriber accepts: push frames are a few hundred bytes.
const maxFrame = 1 << 20

// errClosed is returned by next once the server closed the connection with a close frame.
var errClosed = errors.New("websocket closed by the server")

// dialWS opens ws://addr/path from the local address laddr (nil: any), through the
// loopback-only dialer, and completes the handshake within ctx.
func dialWS(ctx context.Context, addr, path string, laddr net.Addr) (*wsConn, error) {
	d := loopbackDialer()
	d.LocalAddr = laddr
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + k + "\r\nSec-WebSocket-Version: 13\r\nUser-Agent: roomengine-loadgen\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	if err := readUpgrade(br, k); err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return &wsConn{nc: nc, br: br, buf: make([]byte, 0, 1024)}, nil
}

// readUpgrade reads the server's handshake answer: 101 with the matching accept key.
func readUpgrade(br *bufio.Reader, key string) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, _ := strconv.Atoi(string(line[9:12]))
	sum := sha1.Sum([]byte(key + wsGUID))
	want := base64.StdEncoding.EncodeToString(sum[:])
	accepted := false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok &&
			bytes.EqualFold(name, []byte("Sec-WebSocket-Accept")) && string(bytes.TrimSpace(value)) == want {
			accepted = true
		}
	}
	if status != 101 {
		// The body (an envelope) is not read: the connection is dropped anyway.
		return fmt.Errorf("websocket upgrade refused: HTTP %d", status)
	}
	if !accepted {
		return errors.New("websocket upgrade: missing or wrong Sec-WebSocket-Accept")
	}
	return nil
}

// next returns the next data message (valid until the following call). It answers pings
// and a close on the way; after a close frame it returns errClosed with closeCode set.
func (c *wsConn) next() ([]byte, error) {
	c.buf = c.buf[:0]
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return nil, err
		}
		fin, op := hdr[0]&0x80 != 0, hdr[0]&0x0f
		if hdr[1]&0x80 != 0 {
			return nil, fmt.Errorf("%w: masked frame from the server", errMalformed)
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(c.br, ext[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(c.br, ext[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(ext[:])
		}
		if n > maxFrame || uint64(len(c.buf))+n > maxFrame {
			return nil, fmt.Errorf("%w: a %d-byte frame", errMalformed, n)
		}
		start := len(c.buf)
		c.buf = grow(c.buf, int(n))
		if _, err := io.ReadFull(c.br, c.buf[start:]); err != nil {
			return nil, err
		}
		switch op {
		case 0x0, 0x1, 0x2: // continuation, text, binary
			if fin {
				return c.buf, nil
			}
		case 0x9: // ping: answer with the same payload
			p := append([]byte(nil), c.buf[start:]...)
			c.buf = c.buf[:start]
			if err := c.writeControl(0xA, p); err != nil {
				return nil, err
			}
		case 0xA: // pong
			c.buf = c.buf[:start]
		case 0x8: // close: echo the code, then stop
			p := c.buf[start:]
			c.closeCode = 1005
			if len(p) >= 2 {
				c.closeCode = int(binary.BigEndian.Uint16(p))
			}
			_ = c.writeControl(0x8, append([]byte(nil), p[:min(len(p), 2)]...))
			return nil, fmt.Errorf("%w: code %d %q", errClosed, c.closeCode, p[min(len(p), 2):])
		default:
			return nil, fmt.Errorf("%w: opcode %d", errMalformed, op)
		}
	}
}

// grow extends b by n bytes, reallocating only when its capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// writeControl sends one masked control frame (a client must mask what it sends).
func (c *wsConn) writeControl(op byte, payload []byte) error {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b := append(c.out[:0], 0x80|op, 0x80|byte(len(payload)))
	b = append(b, mask[:]...)
	for i, x := range payload {
		b = append(b, x^mask[i%4])
	}
	c.out = b
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

func (c *wsConn) close() error { return c.nc.Close() }
