package gateway

import (
	"strings"
	"testing"
	"time"
)

// FuzzClientBytes sends whatever bytes after the handshake, cut into pieces of any size:
// the gateway's own WebSocket reader (wsconn.go) must never crash on them nor wedge the
// poller that reads every client, so a client that connects afterwards still gets its
// frames. (A panic on the poller's goroutine would end the whole test binary.)
func FuzzClientBytes(f *testing.F) {
	f.Add([]byte{0x89, 0x80, 1, 2, 3, 4}, uint8(0))                                                 // empty masked ping
	f.Add(clientFrame(true, opClose, []byte{3, 232, 'o', 'k'}, false), uint8(2))                    // close 1000
	f.Add(clientFrame(false, opText, []byte("ab"), false), uint8(1))                                // unfinished message
	f.Add(append(clientFrame(false, opText, []byte("a"), false), 0x81, 0x80, 0, 0, 0, 0), uint8(0)) // text inside a message
	f.Add([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4}, uint8(3))
	f.Add([]byte{0x82, 0xfe, 0x10, 0x00, 1, 2, 3, 4}, uint8(7)) // 4 KiB binary header
	f.Add(clientFrame(true, opPing, []byte(strings.Repeat("p", 125)), false), uint8(5))
	f.Add([]byte{0x89, 0x7e, 0, 200}, uint8(0)) // unmasked long ping
	g, srv := startGateway(f, Options{PingInterval: time.Hour})
	addr := strings.TrimPrefix(srv.URL, "http://")
	n := 0
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		c := dialRaw(t, addr, "topic=fz", nil)
		step := int(cut)%32 + 1
		for i := 0; i < len(data); i += step {
			if _, err := c.nc.Write(data[i:min(i+step, len(data))]); err != nil {
				break // the gateway closed the connection: allowed
			}
		}
		_ = c.nc.Close()
		// Every 64th input, a well-behaved client still gets a frame.
		if n++; n%64 != 1 {
			return
		}
		ok := dialRaw(t, addr, "topic=ok", nil)
		waitSubscribers(t, g, "ok", 1)
		pubOf(g).Publish(comment("ok", n))
		if op, p := ok.next(); op != opText || !strings.Contains(string(p), `"topic":"ok"`) {
			t.Fatalf("after the fuzzed client: op %x %q, want the comment", op, p)
		}
		_ = ok.nc.Close()
		waitSubscribers(t, g, "ok", 0)
	})
}
