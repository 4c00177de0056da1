package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// rawConn is a minimal keep-alive HTTP/1.1 client over one TCP connection, used for the
// measured requests. net/http's client costs tens of microseconds of CPU per request (a
// read and a write goroutine per connection, header maps, channel hand-offs); the load
// generator shares the machine with the server, so every microsecond it spends is taken
// from the server being measured. This one writes a request built in a reused buffer and
// parses the status line, Content-Length / chunked bodies and Connection: close, which is
// all the API answers need. -client std switches back to net/http for comparison.
type rawConn struct {
	addr    string // loopback host:port, checked by the dialer too
	host    string // Host header
	conn    net.Conn
	br      *bufio.Reader
	req     []byte
	timeout time.Duration
}

func newRawConn(addr string) *rawConn {
	return &rawConn{addr: addr, host: addr, timeout: 15 * time.Second}
}

func (c *rawConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// roundTrip sends one request and reads the answer's body into out (reset first). It
// returns the HTTP status. Any error closes the connection; the next call redials.
func (c *rawConn) roundTrip(ctx context.Context, method, path, contentType string, body []byte, out *bytes.Buffer) (int, error) {
	if c.conn == nil {
		conn, err := loopbackDialer().DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return 0, err
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetDeadline(deadline)

	r := append(c.req[:0], method...)
	r = append(r, ' ')
	r = append(r, path...)
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, c.host...)
	r = append(r, "\r\nUser-Agent: roomengine-loadgen\r\n"...)
	if contentType != "" {
		r = append(r, "Content-Type: "...)
		r = append(r, contentType...)
		r = append(r, "\r\n"...)
	}
	if body != nil || method == "POST" {
		r = append(r, "Content-Length: "...)
		r = strconv.AppendInt(r, int64(len(body)), 10)
		r = append(r, "\r\n"...)
	}
	r = append(r, "\r\n"...)
	r = append(r, body...)
	c.req = r
	if _, err := c.conn.Write(r); err != nil {
		c.close()
		return 0, err
	}
	status, keep, err := readResponse(c.br, out)
	if err != nil || !keep {
		c.close()
	}
	return status, err
}

var (
	errMalformed = errors.New("malformed HTTP answer")
	crlf         = []byte("\r\n")
)

// readResponse reads one HTTP/1.1 answer. keep reports whether the connection can carry
// another request.
func readResponse(br *bufio.Reader, out *bytes.Buffer) (status int, keep bool, err error) {
	out.Reset()
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	keep = line[7] == '1' // HTTP/1.1 keeps alive unless told otherwise
	length, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return status, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return status, false, fmt.Errorf("%w: header %q", errMalformed, line)
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return status, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	switch {
	case chunked:
		err = readChunked(br, out)
	case length >= 0:
		out.Grow(length)
		_, err = io.CopyN(out, br, int64(length))
	case status == 204 || status == 304 || status/100 == 1:
	default: // no length: the body runs to the end of the connection
		_, err = out.ReadFrom(br)
		keep = false
	}
	if err != nil {
		return status, false, err
	}
	return status, keep, nil
}

func readChunked(br *bufio.Reader, out *bytes.Buffer) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if size == 0 {
			for { // trailers, up to the empty line
				line, err = br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := io.CopyN(out, br, size); err != nil {
			return err
		}
		var end [2]byte
		if _, err := io.ReadFull(br, end[:]); err != nil {
			return err
		}
		if !bytes.Equal(end[:], crlf) {
			return fmt.Errorf("%w: chunk not followed by CRLF", errMalformed)
		}
	}
}
