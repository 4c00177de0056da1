package http

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
)

// Aliyun sends its MixResult callback with unencoded spaces in the query
// ("GET /ali/mix/status/notify?...&Message=mix success HTTP/1.1"), which net/http rejects
// with 400 before any handler runs; the old server needed an nginx rewrite. SpaceTolerant
// wraps a listener so each connection mends request lines before net/http reads them: the
// spaces between the method and the final " HTTP/x.y" become %20. It follows HTTP/1.1
// framing (Content-Length bodies) across keep-alive requests, and steps aside for chunked
// bodies and upgraded connections (WebSocket), whose bytes are not request lines.

// maxRequestLine bounds what is buffered while looking for the end of a line; longer lines
// are passed on untouched for net/http to refuse.
const maxRequestLine = 64 << 10

// SpaceTolerant returns a listener whose connections accept unencoded spaces in request
// lines.
func SpaceTolerant(ln net.Listener) net.Listener { return spaceListener{ln} }

type spaceListener struct{ net.Listener }

func (l spaceListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &spaceConn{Conn: c, in: bufio.NewReaderSize(c, 4096)}, nil
}

type framing int

const (
	atRequestLine framing = iota
	inHeaders
	inBody
	passThrough // chunked body or upgraded connection: no more request lines to mend
)

type spaceConn struct {
	net.Conn
	in      *bufio.Reader
	out     []byte // mended bytes not yet handed to the reader
	state   framing
	bodyLen int64
	chunked bool
	upgrade bool
}

func (c *spaceConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// fill moves the next piece of the stream to out, mending it if it is a request line.
func (c *spaceConn) fill() error {
	switch c.state {
	case passThrough:
		return c.copyAvailable(-1)
	case inBody:
		return c.copyAvailable(c.bodyLen)
	}
	line, err := c.in.ReadSlice('\n')
	if err == bufio.ErrBufferFull || (err == nil && len(line) > maxRequestLine) {
		// An absurdly long line: hand it over as it is and stop interpreting.
		c.out = append(c.out[:0], line...)
		c.state = passThrough
		return nil
	}
	if err != nil {
		if len(line) > 0 {
			c.out = append(c.out[:0], line...)
			return nil
		}
		return err
	}
	if c.state == atRequestLine {
		c.out = mendRequestLine(append(c.out[:0], line...))
		if len(bytes.TrimSpace(line)) > 0 { // blank lines before a request are allowed
			c.state, c.bodyLen, c.chunked, c.upgrade = inHeaders, 0, false, false
		}
		return nil
	}
	c.out = append(c.out[:0], line...)
	c.header(bytes.TrimRight(line, "\r\n"))
	return nil
}

// header tracks the framing headers; an empty line ends the headers.
func (c *spaceConn) header(h []byte) {
	if len(h) == 0 {
		switch {
		case c.upgrade || c.chunked:
			c.state = passThrough
		case c.bodyLen > 0:
			c.state = inBody
		default:
			c.state = atRequestLine
		}
		return
	}
	name, value, ok := bytes.Cut(h, []byte(":"))
	if !ok {
		return
	}
	value = bytes.TrimSpace(value)
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n > 0 {
			c.bodyLen = n
		}
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		c.chunked = !bytes.EqualFold(value, []byte("identity"))
	case bytes.EqualFold(name, []byte("Upgrade")):
		c.upgrade = true
	}
}

// copyAvailable passes on up to limit bytes of body (limit < 0: no limit).
func (c *spaceConn) copyAvailable(limit int64) error {
	n := c.in.Buffered()
	if n == 0 {
		n = 1 // block for at least one byte
	}
	if limit >= 0 && int64(n) > limit {
		n = int(limit)
	}
	if cap(c.out) < n {
		c.out = make([]byte, n)
	}
	c.out = c.out[:n]
	got, err := c.in.Read(c.out)
	c.out = c.out[:got]
	if limit >= 0 {
		c.bodyLen -= int64(got)
		if c.bodyLen == 0 {
			c.state = atRequestLine
		}
	}
	if got > 0 {
		return nil
	}
	return err
}

// mendRequestLine percent-encodes the spaces inside the request target of
// "METHOD target HTTP/x.y\r\n". Lines that do not look like that are returned unchanged.
func mendRequestLine(line []byte) []byte {
	body := bytes.TrimRight(line, "\r\n")
	end := line[len(body):]
	first := bytes.IndexByte(body, ' ')
	last := bytes.LastIndexByte(body, ' ')
	if first < 0 || last <= first || !bytes.HasPrefix(body[last+1:], []byte("HTTP/")) {
		return line
	}
	target := body[first+1 : last]
	if bytes.IndexByte(target, ' ') < 0 {
		return line
	}
	mended := make([]byte, 0, len(line)+2*bytes.Count(target, []byte(" ")))
	mended = append(mended, body[:first+1]...)
	mended = append(mended, bytes.ReplaceAll(target, []byte(" "), []byte("%20"))...)
	mended = append(mended, body[last:]...)
	return append(mended, end...)
}
