package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// subscriber is one WebSocket client of a room topic. It reads continuously and counts the
// frames it gets; the frame text is scanned for seq (to spot gaps), for the push type
// (comments are type 6) and for the send time an open-loop comment carries, without a JSON
// decode or any allocation, so the reader stays cheap.
type subscriber struct {
	ws       *wsConn
	frames   atomic.Uint64 // every frame
	comments atomic.Uint64 // frames carrying a comment push (type 6)
	gaps     atomic.Uint64 // times seq did not follow the previous frame's
	lastSeq  uint64
	err      atomic.Pointer[error] // why reading stopped, when not asked to
	// delivery, when set, records comment→frame latency of comments sent from
	// measureFrom (unix ns) on.
	delivery    *atomicHist
	measureFrom *atomic.Int64
}

// subscribers is the set of subscribers of one run.
type subscribers struct {
	list   []*subscriber
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// delivery is every subscriber's comment→frame latency (open loop); measureFrom is the
	// unix time (ns) from which comments count, 0 before the measured window is known.
	delivery    atomicHist
	measureFrom atomic.Int64
}

var (
	seqKey     = []byte(`"seq":`)
	commentKey = []byte(`"type":6,"time":`)
	// sentKey starts the send time (unix ns) an open-loop comment carries in its text.
	sentKey = []byte(sentMarker)
)

// subsPerAddr is how many subscribers share one local source address. The server bounds
// the connections per client address (http.ws.maxConnsPerAddr, 256 by default), and real
// viewers come from many addresses: subscribers are spread over 127.0.x.y, which the
// loopback interface answers for the whole 127.0.0.0/8.
const subsPerAddr = 200

// sourceAddr is the local address of subscriber i when the server is on IPv4 loopback
// (127.0.1.1, 127.0.1.2, …, 200 subscribers each), else nil (any).
func sourceAddr(server string, i int) net.Addr {
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || ip.To4() == nil {
		return nil
	}
	k := i / subsPerAddr
	return &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+k/250), byte(1+k%250))}
}

// connectSubscribers opens n WebSocket connections to ws://ADDR/ws?topic=topic, subscriber
// i on addrs[i mod len(addrs)], a bounded number at a time, and starts their readers.
func connectSubscribers(ctx context.Context, addrs []string, topic string, n int) (*subscribers, error) {
	rctx, cancel := context.WithCancel(context.Background())
	s := &subscribers{list: make([]*subscriber, n), cancel: cancel}

	sem := make(chan struct{}, 32)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for i := range n {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			defer dcancel()
			addr := addrs[nodeOf(i, len(addrs))]
			ws, err := dialWS(dctx, addr, "/ws?topic="+url.QueryEscape(topic), sourceAddr(addr, i))
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("subscriber %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			s.list[i] = &subscriber{ws: ws, delivery: &s.delivery, measureFrom: &s.measureFrom}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		s.close()
		return nil, firstErr
	}
	for _, sub := range s.list {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sub.read(rctx)
		}()
	}
	return s, nil
}

func (sub *subscriber) read(ctx context.Context) {
	for {
		frame, err := sub.ws.next()
		if err != nil {
			if ctx.Err() == nil {
				sub.err.Store(&err)
			}
			return
		}
		sub.count(frame)
	}
}

func (sub *subscriber) count(frame []byte) {
	if i := bytes.Index(frame, seqKey); i >= 0 {
		rest := frame[i+len(seqKey):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if seq, err := strconv.ParseUint(string(rest[:j]), 10, 64); err == nil {
			if sub.lastSeq != 0 && seq != sub.lastSeq+1 {
				sub.gaps.Add(1)
			}
			sub.lastSeq = seq
		}
	}
	if bytes.Contains(frame, commentKey) {
		sub.comments.Add(1)
		if sub.delivery != nil {
			sub.recordDelivery(frame)
		}
	}
	sub.frames.Add(1)
}

// total is the number of frames received by all subscribers so far.
func (s *subscribers) total() (frames, comments uint64) {
	for _, sub := range s.list {
		frames += sub.frames.Load()
		comments += sub.comments.Load()
	}
	return frames, comments
}

// waitFor waits until every subscriber has at least want comment frames, or until no
// frame has arrived for idle, or until limit. It returns how long it waited.
func (s *subscribers) waitFor(want uint64, idle, limit time.Duration) time.Duration {
	start := time.Now()
	_, last := s.total()
	lastChange := start
	for {
		done := true
		for _, sub := range s.list {
			if sub.comments.Load() < want {
				done = false
				break
			}
		}
		if done {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
		_, now := s.total()
		if now != last {
			last, lastChange = now, time.Now()
		}
		if time.Since(lastChange) > idle || time.Since(start) > limit {
			return time.Since(start)
		}
	}
}

// subStats summarises what the subscribers got.
type subStats struct {
	minComments, maxComments uint64
	gaps                     uint64
	broken                   int    // subscribers whose connection ended early
	brokenErr                string // one such reason
}

func (s *subscribers) stats() subStats {
	st := subStats{}
	for i, sub := range s.list {
		c := sub.comments.Load()
		if i == 0 || c < st.minComments {
			st.minComments = c
		}
		st.maxComments = max(st.maxComments, c)
		st.gaps += sub.gaps.Load()
		if p := sub.err.Load(); p != nil {
			st.broken++
			if st.brokenErr == "" || errors.Is(*p, errClosed) {
				st.brokenErr = (*p).Error()
			}
		}
	}
	return st
}

// recordDelivery reads the send time an open-loop comment carries and records how long
// the frame took, if the comment was sent in the measured window.
func (sub *subscriber) recordDelivery(frame []byte) {
	i := bytes.Index(frame, sentKey)
	if i < 0 {
		return
	}
	var sent int64
	for _, b := range frame[i+len(sentKey):] {
		if b < '0' || b > '9' {
			break
		}
		sent = sent*10 + int64(b-'0')
	}
	if from := sub.measureFrom.Load(); from == 0 || sent < from {
		return
	}
	sub.delivery.record(time.Duration(time.Now().UnixNano() - sent))
}

// closeCodes counts the subscribers the server closed, by close code.
func (s *subscribers) closeCodes() map[string]int {
	out := map[string]int{}
	for _, sub := range s.list {
		if sub != nil && sub.ws.closeCode != 0 && sub.err.Load() != nil {
			out[strconv.Itoa(sub.ws.closeCode)]++
		}
	}
	return out
}

// close stops the readers and closes every connection without the close handshake (the
// server notices the TCP close at once).
func (s *subscribers) close() {
	s.cancel()
	for _, sub := range s.list {
		if sub != nil {
			_ = sub.ws.close()
		}
	}
	s.wg.Wait()
}
