package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"roomengine/actors"
	"roomengine/push"
)

// testFrame mirrors the wire format so tests check it from the client's side.
type testFrame struct {
	Topic      string          `json:"topic"`
	Seq        uint64          `json:"seq"`
	Tag        string          `json:"tag"`
	Importance int             `json:"importance"`
	Message    json.RawMessage `json:"message"`
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func startGateway(t testing.TB, opts Options) (*Gateway, *httptest.Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.SeqOrigin == nil {
		opts.SeqOrigin = zeroOrigin // seqs 1, 2, 3… keep the tests readable
	}
	g := New(opts)
	srv := httptest.NewServer(g)
	t.Cleanup(func() { stopGateway(t, g, srv) })
	return g, srv
}

func zeroOrigin() uint64 { return 0 }

func stopGateway(t testing.TB, g *Gateway, srv *httptest.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	srv.Close()
}

func wsURL(srv *httptest.Server, query string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws?" + query
}

func dialWith(t testing.TB, srv *httptest.Server, query string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL(srv, query), opts)
	if err != nil {
		t.Fatalf("dial %s: %v", query, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func dial(t testing.TB, srv *httptest.Server, query string) *websocket.Conn {
	t.Helper()
	return dialWith(t, srv, query, nil)
}

func readFrame(t testing.TB, c *websocket.Conn) testFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("got a %v frame, want text", typ)
	}
	var f testFrame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %q is not JSON: %v", b, err)
	}
	return f
}

// readSeqs reads n frames and returns their seqs in arrival order.
func readSeqs(t testing.TB, c *websocket.Conn, n int) []uint64 {
	t.Helper()
	out := make([]uint64, 0, n)
	for range n {
		out = append(out, readFrame(t, c).Seq)
	}
	return out
}

// waitUntil polls a condition that some other goroutine makes true; it is how tests wait
// for the server side (a subscription, a closed connection) without timing guesses.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitSubscribers(t testing.TB, g *Gateway, topic string, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d subscribers on %s", n, topic), func() bool {
		return g.Subscribers(topic) == n
	})
}

func newPush(topic, tag string, importance, typ int, data string) actors.Push {
	return actors.Push{
		Topic:      topic,
		Tag:        tag,
		Importance: importance,
		Type:       typ,
		Body:       fmt.Appendf(nil, `{"data":%s,"type":%d,"time":1700000000000}`, data, typ),
	}
}

func comment(topic string, n int) actors.Push {
	return newPush(topic, topic, 8, 6, fmt.Sprintf(`{"uid":"1","name":"a","comment":"c%d"}`, n))
}

// pinnedSendBuffers pins the kernel send buffer of every accepted socket. Left alone, the
// kernel grows it to megabytes for a client that does not read; pinned, it holds a couple
// of hundred KiB at most, so one frame of a MiB is certain to block the writer. (Pinning
// the client's receive buffer too would also work but makes draining it crawl, one tiny
// window per delayed ACK.)
type pinnedSendBuffers struct{ net.Listener }

func (l pinnedSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// pubOf is the publisher of g's default feed (a push.Memory): what the room actors of a
// single node publish to.
func pubOf(g *Gateway) actors.Publisher { return g.Feed().(*push.Memory) }

// clockOrigin is the memory feed's default origin, for tests that need real lives.
func clockOrigin() uint64 { return uint64(time.Now().UnixMicro()) }
