package http

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"time"
)

// Aliyun sends its MixResult callback with unencoded spaces in the query
// ("GET /ali/mix/status/notify?...&Message=mix success HTTP/1.1"), which net/http rejects
// with 400 before any handler runs; the old server needed an nginx rewrite. SpaceTolerant
// wraps a listener so each connection mends request lines before net/http reads them: the
// spaces between the method and the final " HTTP/x.y" become %20. It follows HTTP/1.1
// framing (Content-Length bodies) across keep-alive requests, and steps aside for chunked
// bodies and upgraded connections (WebSocket), whose bytes are not request lines.

// maxRequestLine is the longest request line accepted, CRLF not counted: a longer one is
// answered 414 here and the connection closed. A header line may be longer; past this
// length it is passed on uninterpreted (net/http bounds the whole header at 1 MB).
const maxRequestLine = 64 << 10

// readBufferSize is each connection's read buffer. A line longer than that is collected
// in a separate buffer, which is dropped again afterwards so that an idle connection keeps
// only this much.
const readBufferSize = 4096

// drainLimit and drainTimeout bound how much of a refused request is read (and discarded)
// before the connection is closed, so the client sees the 414 instead of a reset.
const (
	drainLimit   = 1 << 20
	drainTimeout = time.Second
)

// SpaceTolerant returns a listener whose connections accept unencoded spaces in request
// lines.
func SpaceTolerant(ln net.Listener) net.Listener { return spaceListener{ln} }

type spaceListener struct{ net.Listener }

func (l spaceListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &spaceConn{Conn: c, in: bufio.NewReaderSize(c, readBufferSize)}, nil
}

type framing int

const (
	atRequestLine framing = iota
	inHeaders
	inLongHeader // the rest of a header line over maxRequestLine, passed on as it is
	inBody
	passThrough // chunked body or upgraded connection: no more request lines to mend
	refused     // a request line over maxRequestLine was answered 414: reads end
)

type spaceConn struct {
	net.Conn
	in      *bufio.Reader
	out     []byte // mended bytes not yet handed to the reader
	long    []byte // a line longer than the read buffer, being collected
	state   framing
	bodyLen int64
	chunked bool
	upgrade bool
}

// UnwrapConn hands over the socket itself once the stream is an upgraded connection with
// nothing buffered here: the WebSocket gateway then reads and writes it directly, and this
// wrapper (with its read buffer) is let go. nil while the wrapper still holds bytes.
func (c *spaceConn) UnwrapConn() net.Conn {
	if c.state != passThrough || c.in.Buffered() > 0 || len(c.out) > 0 {
		return nil
	}
	return c.Conn
}

func (c *spaceConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 && cap(c.out) > readBufferSize {
		c.out = nil // a long line's buffer is not kept by an idle connection
	}
	return n, nil
}

// fill moves the next piece of the stream to out, mending it if it is a request line.
func (c *spaceConn) fill() error {
	switch c.state {
	case passThrough:
		return c.copyAvailable(-1)
	case inBody:
		return c.copyAvailable(c.bodyLen)
	case refused:
		return io.EOF
	case inLongHeader:
		chunk, err := c.in.ReadSlice('\n')
		if err == nil {
			c.state = inHeaders
		}
		if len(chunk) > 0 {
			c.out = append(c.out[:0], chunk...)
			return nil
		}
		return err
	}
	line, tooLong, err := c.readLine()
	if err != nil {
		return err
	}
	defer c.dropLong()
	if tooLong {
		if c.state == atRequestLine {
			c.refuseLongLine()
			return io.EOF
		}
		// A header line that long says nothing about framing: pass it on as it is.
		c.out = append(c.out[:0], line...)
		if line[len(line)-1] != '\n' {
			c.state = inLongHeader
		}
		return nil
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

// readLine returns the next line with its '\n'. A line longer than the read buffer is
// collected in c.long; one over maxRequestLine (CRLF not counted) is returned as far as
// read, with tooLong set. On an error the part of the line read so far stays in c.long and
// the next call goes on from there: net/http interrupts its background read of an idle
// connection with a read deadline in the past, and the line being read must not be handed
// on in two halves, the first one unmended.
func (c *spaceConn) readLine() (line []byte, tooLong bool, err error) {
	for {
		chunk, err := c.in.ReadSlice('\n')
		switch {
		case err == nil && c.long == nil:
			return chunk, lineLength(chunk) > maxRequestLine, nil // the usual case: no copy
		case err == nil:
			c.long = append(c.long, chunk...)
			return c.long, lineLength(c.long) > maxRequestLine, nil
		case err == bufio.ErrBufferFull:
			c.long = append(c.long, chunk...)
			if len(c.long) > maxRequestLine+2 {
				return c.long, true, nil
			}
		default:
			c.long = append(c.long, chunk...)
			return nil, false, err
		}
	}
}

// lineLength is the length of a line without its line ending.
func lineLength(line []byte) int {
	return len(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")))
}

// dropLong lets go of a long line's buffer once it has been handed on.
func (c *spaceConn) dropLong() { c.long = nil }

// refuseLongLine answers a request line over maxRequestLine with 414 in the API's envelope
// and ends the connection. The rest of the request is read first (within drainLimit and
// drainTimeout), so that closing does not reset the connection before the client has read
// the answer.
func (c *spaceConn) refuseLongLine() {
	c.state = refused
	body := `{"code":414,"message":"请求行过长（最多` + strconv.Itoa(maxRequestLine) + `字节）"}`
	_, _ = io.WriteString(c.Conn, "HTTP/1.1 414 URI Too Long\r\nContent-Type: application/json; charset=utf-8\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
	_ = c.Conn.SetReadDeadline(time.Now().Add(drainTimeout))
	tail := make([]byte, 0, 4)
	for drained := 0; drained < drainLimit; {
		b, err := c.in.ReadByte()
		if err != nil {
			return
		}
		drained++
		// The request ends at its first empty line ("\n\n" or "\n\r\n").
		tail = append(tail, b)
		if len(tail) > 3 {
			tail = tail[1:]
		}
		if bytes.HasSuffix(tail, []byte("\n\n")) || bytes.HasSuffix(tail, []byte("\n\r\n")) {
			return
		}
	}
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
