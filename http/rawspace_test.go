package http

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveRaw serves h on a loopback listener, with or without the space-tolerant wrapper.
func serveRaw(t *testing.T, h http.Handler, tolerant bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tolerant {
		ln = SpaceTolerant(ln)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// rawRequests writes raw bytes on one connection and reads as many responses.
func rawRequests(t *testing.T, addr, raw string, n int) []*http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var out []*http.Response
	for range n {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", len(out)+1, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		res.Header.Set("X-Body", string(body))
		out = append(out, res)
	}
	return out
}

// echo answers with the decoded Message parameter and the request body.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	_, _ = io.WriteString(w, r.URL.Query().Get("Message")+"|"+string(body))
})

const aliyunLine = "GET /ali/mix/status/notify?MainMixStream=a&Event=MixResult&Code=InternalError&Message=mix stream not exist, retry later HTTP/1.1\r\nHost: x\r\n\r\n"

func TestUnencodedSpacesOverRawTCP(t *testing.T) {
	// Plain net/http refuses the line Aliyun sends ...
	plain := rawRequests(t, serveRaw(t, echo, false), aliyunLine, 1)
	if plain[0].StatusCode != http.StatusBadRequest {
		t.Fatalf("plain net/http answered %d; the wrapper would be unnecessary", plain[0].StatusCode)
	}
	// ... the wrapped listener accepts it and the handler sees the message with its spaces,
	// also for keep-alive requests after a request with a body, and a normal request.
	addr := serveRaw(t, echo, true)
	raw := aliyunLine +
		"POST /x?Message=a b HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nbody with s" +
		"GET /x?Message=second one HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /x?Message=plain HTTP/1.1\r\nHost: x\r\n\r\n"
	res := rawRequests(t, addr, raw, 4)
	want := []string{"mix stream not exist, retry later|", "a b|body with s", "second one|", "plain|"}
	for i, r := range res {
		if r.StatusCode != 200 || r.Header.Get("X-Body") != want[i] {
			t.Fatalf("request %d: %d %q, want %q", i+1, r.StatusCode, r.Header.Get("X-Body"), want[i])
		}
	}
}

func TestMendRequestLine(t *testing.T) {
	cases := map[string]string{
		"GET /a?b=c d HTTP/1.1\r\n":    "GET /a?b=c%20d HTTP/1.1\r\n",
		"GET /a?b=c  d e HTTP/1.0\n":   "GET /a?b=c%20%20d%20e HTTP/1.0\n",
		"GET /plain HTTP/1.1\r\n":      "GET /plain HTTP/1.1\r\n",
		"not a request line\r\n":       "not a request line\r\n",
		"GET /a b\r\n":                 "GET /a b\r\n",
		"PRI * HTTP/2.0\r\n":           "PRI * HTTP/2.0\r\n",
		"GET /x?m=HTTP/1 2 HTTP/1.1\n": "GET /x?m=HTTP/1%202 HTTP/1.1\n",
	}
	for in, want := range cases {
		if got := string(mendRequestLine([]byte(in))); got != want {
			t.Errorf("mend(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSpaceTolerantConn(f *testing.F) {
	f.Add(aliyunLine)
	f.Add("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		c := &spaceConn{in: bufio.NewReader(strings.NewReader(raw))}
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		// Mending only ever replaces spaces by %20: removing them gives the input back.
		if strings.ReplaceAll(string(out), "%20", " ") != strings.ReplaceAll(raw, "%20", " ") {
			t.Fatalf("stream changed beyond spaces:\n in %q\nout %q", raw, out)
		}
	})
}

// After an upgrade request, the listeners' wrappers hand over the socket under them
// (UnwrapConn, for the WebSocket gateway) — but not while the mender still holds bytes of
// the stream, which would be lost.
func TestUnwrapConnAfterUpgrade(t *testing.T) {
	for _, extra := range []string{"", "early bytes"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		limit := NewConnLimit(10)
		wrapped := limit.Listener(SpaceTolerant(ln))
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		req := "GET /ws?topic=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
		if _, err := client.Write([]byte(req + extra)); err != nil {
			t.Fatal(err)
		}
		sc, err := wrapped.Accept()
		if err != nil {
			t.Fatal(err)
		}
		_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len(req)) // what net/http would read of the request
		for got := 0; got < len(req); {
			n, err := sc.Read(buf[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
		type unwrapper interface{ UnwrapConn() net.Conn }
		mender := sc.(unwrapper).UnwrapConn()
		if limit.Open() != 0 {
			t.Errorf("a handed-over socket still counts: %d open", limit.Open())
		}
		sock := mender.(unwrapper).UnwrapConn()
		if _, isTCP := sock.(*net.TCPConn); isTCP != (extra == "") {
			t.Errorf("extra %q: handed over %T", extra, sock)
		}
		_ = client.Close()
		_ = sc.Close()
		_ = ln.Close()
	}
}
