// Command ceiling is the minimal fan-out server the big-room benchmarks measure roomengine
// against, as a bare net/http handler is the ceiling of a request: it serves only the routes
// the load generator's comment scenario uses (docs/benchmarks.md, Big rooms), keeps no
// state beyond the subscribers and a seq per topic, and does the least a push server must:
// each comment or like becomes one hand-written WebSocket text frame, appended to its
// topic's pending bytes, and every 10 ms the pending bytes of each topic are written to each
// of its subscribers in one write (a few writer goroutines share the sockets). It answers a
// comment as soon as the frame is appended. It does not shed, replay, ping or authenticate.
//
//	ceiling -addr 127.0.0.1:4000
//
// Only a loopback address is accepted. Not for production: it exists to be measured.
package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// flushEvery is how long frames collect before they are written out.
const flushEvery = 10 * time.Millisecond

// writeTimeout bounds one write to one subscriber; a subscriber that cannot take it is cut.
const writeTimeout = 5 * time.Second

func main() {
	addr := flag.String("addr", "127.0.0.1:4000", "listen address (loopback only)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "ceiling: -addr %q: want a loopback host:port\n", *addr)
		os.Exit(2)
	}
	s := newServer()
	go s.flushLoop(nil)
	if err := http.ListenAndServe(*addr, s.routes()); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

// server is the whole state: topics with their subscribers, pending frames and seq.
type server struct {
	mu     sync.Mutex
	topics map[string]*topic
	nextID atomic.Uint64
	conns  prometheus.Gauge
	sent   prometheus.Counter
	reg    *prometheus.Registry
}

type topic struct {
	name    string
	seq     uint64
	subs    map[net.Conn]struct{}
	pending []byte // whole frames not yet written
}

func newServer() *server {
	reg := prometheus.NewRegistry()
	s := &server{
		topics: make(map[string]*topic),
		reg:    reg,
		// The names are roomengine's, so the load generator reads both servers alike.
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomengine_ws_connections", Help: "subscribed WebSockets"}),
		sent:  prometheus.NewCounter(prometheus.CounterOpts{Name: "roomengine_ws_frames_sent_total", Help: "frames written"}),
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomengine_push_dropped_total", Help: "never: the ceiling does not shed"}, []string{"reason"})
	dropped.WithLabelValues("queue_full_shed")
	reg.MustRegister(s.conns, s.sent, dropped, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	return s
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { ok(w, nil) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, _ *http.Request) {
		ok(w, map[string]string{"id": strconv.FormatUint(s.nextID.Add(1), 10)})
	})
	mux.HandleFunc("POST /live/create", func(w http.ResponseWriter, _ *http.Request) {
		ok(w, map[string]string{"roomId": "room" + strconv.FormatUint(s.nextID.Add(1), 10)})
	})
	mux.HandleFunc("GET /ali/stream/notify", func(w http.ResponseWriter, _ *http.Request) { ok(w, nil) })
	mux.HandleFunc("POST /live/comment", func(w http.ResponseWriter, r *http.Request) { s.push(w, r, 6, 8) })
	mux.HandleFunc("POST /live/like", func(w http.ResponseWriter, r *http.Request) { s.push(w, r, 7, 9) })
	mux.HandleFunc("GET /ws", s.subscribe)
	return mux
}

func ok(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    any    `json:"data,omitempty"`
	}{200, "ok", data})
	_, _ = w.Write(b)
}

// push appends the frame of a comment (type 6) or like (type 7) to its topic.
func (s *server) push(w http.ResponseWriter, r *http.Request, typ, importance int) {
	var in struct {
		UID     string `json:"uid"`
		RoomID  string `json:"roomId"`
		Comment string `json:"comment"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<10)).Decode(&in); err != nil || in.RoomID == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	data := struct {
		UID     string `json:"uid"`
		Name    string `json:"name"`
		Comment string `json:"comment,omitempty"`
	}{in.UID, "viewer", in.Comment}
	body, _ := json.Marshal(data)
	now := time.Now().UnixMilli()
	s.mu.Lock()
	t := s.topic(in.RoomID)
	t.seq++
	var msg []byte
	msg = append(msg, `{"topic":`...)
	msg = strconv.AppendQuote(msg, t.name)
	msg = append(msg, `,"seq":`...)
	msg = strconv.AppendUint(msg, t.seq, 10)
	msg = append(msg, `,"tag":`...)
	msg = strconv.AppendQuote(msg, t.name)
	msg = append(msg, `,"importance":`...)
	msg = strconv.AppendInt(msg, int64(importance), 10)
	msg = append(msg, `,"message":{"data":`...)
	msg = append(msg, body...)
	msg = append(msg, `,"type":`...)
	msg = strconv.AppendInt(msg, int64(typ), 10)
	msg = append(msg, `,"time":`...)
	msg = strconv.AppendInt(msg, now, 10)
	msg = append(msg, `}}`...)
	t.pending = appendFrame(t.pending, msg)
	s.mu.Unlock()
	ok(w, nil)
}

// topic returns the named topic, created if needed; s.mu is held.
func (s *server) topic(name string) *topic {
	t := s.topics[name]
	if t == nil {
		t = &topic{name: name, subs: make(map[net.Conn]struct{})}
		s.topics[name] = t
	}
	return t
}

// appendFrame appends one unmasked, final text frame carrying payload.
func appendFrame(b, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x81, byte(n))
	case n < 1<<16:
		b = append(b, 0x81, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x81, 127)
		for i := 7; i >= 0; i-- {
			b = append(b, byte(uint64(n)>>(8*i)))
		}
	}
	return append(b, payload...)
}

// flushLoop writes each topic's pending frames to its subscribers every flushEvery, until
// stop is closed (never, for nil).
func (s *server) flushLoop(stop <-chan struct{}) {
	workers := runtime.GOMAXPROCS(0)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	var conns []net.Conn
	for {
		select {
		case <-tick.C:
		case <-stop:
			return
		}
		type batch struct {
			data  []byte
			conns []net.Conn
		}
		var batches []batch
		s.mu.Lock()
		for _, t := range s.topics {
			if len(t.pending) == 0 {
				continue
			}
			conns = conns[:0]
			for c := range t.subs {
				conns = append(conns, c)
			}
			batches = append(batches, batch{t.pending, append([]net.Conn(nil), conns...)})
			t.pending = nil
		}
		s.mu.Unlock()
		for _, b := range batches {
			var wg sync.WaitGroup
			per := (len(b.conns) + workers - 1) / workers
			for i := 0; i < len(b.conns); i += per {
				part := b.conns[i:min(i+per, len(b.conns))]
				wg.Go(func() {
					for _, c := range part {
						_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
						if _, err := c.Write(b.data); err != nil {
							_ = c.Close() // its reader unsubscribes it
							continue
						}
						s.sent.Add(float64(countFrames(b.data)))
					}
				})
			}
			wg.Wait()
		}
	}
}

// countFrames counts the frames in a pending buffer (for the frames-sent counter).
func countFrames(b []byte) int {
	n := 0
	for len(b) >= 2 {
		l, h := int(b[1]&0x7f), 2
		switch l {
		case 126:
			l, h = int(b[2])<<8|int(b[3]), 4
		case 127:
			l, h = 0, 10
			for i := 2; i < 10; i++ {
				l = l<<8 | int(b[i])
			}
		}
		b = b[h+l:]
		n++
	}
	return n
}

// subscribe upgrades GET /ws?topic=… by hand and keeps the socket until the client leaves.
func (s *server) subscribe(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("topic")
	key := r.Header.Get("Sec-WebSocket-Key")
	if name == "" || key == "" {
		http.Error(w, "want a WebSocket upgrade with a topic", http.StatusBadRequest)
		return
	}
	hj, okHJ := w.(http.Hijacker)
	if !okHJ {
		http.Error(w, "no hijack", http.StatusInternalServerError)
		return
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	s.mu.Lock()
	t := s.topic(name)
	t.subs[nc] = struct{}{}
	s.mu.Unlock()
	s.conns.Inc()
	if _, err := nc.Write([]byte(resp)); err == nil {
		readUntilGone(brw.Reader, nc)
	}
	s.mu.Lock()
	delete(t.subs, nc)
	s.mu.Unlock()
	s.conns.Dec()
	_ = nc.Close()
}

// readUntilGone discards what the client sends until it goes away. The ceiling answers no
// ping and no close: the generator needs neither.
func readUntilGone(br *bufio.Reader, nc net.Conn) {
	if n := br.Buffered(); n > 0 {
		_, _ = br.Discard(n)
	}
	var buf [256]byte
	for {
		if _, err := nc.Read(buf[:]); err != nil {
			return
		}
	}
}
