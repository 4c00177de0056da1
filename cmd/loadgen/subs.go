package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// subscriber is one WebSocket client of a room topic. It reads continuously and counts the
// frames it gets; the frame text is scanned for seq (to spot gaps) and for the push type
// (comments are type 6), without a full JSON decode so the reader stays cheap.
type subscriber struct {
	ws       *websocket.Conn
	frames   atomic.Uint64 // every frame
	comments atomic.Uint64 // frames carrying a comment push (type 6)
	gaps     atomic.Uint64 // times seq did not follow the previous frame's
	lastSeq  uint64
	err      atomic.Pointer[error] // why reading stopped, when not asked to
}

// subscribers is the set of subscribers of one run.
type subscribers struct {
	list   []*subscriber
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	seqKey     = []byte(`"seq":`)
	commentKey = []byte(`"type":6,"time":`)
)

// connectSubscribers opens n WebSocket connections to ws://ADDR/ws?topic=topic, subscriber
// i on addrs[i mod len(addrs)], a bounded number at a time, and starts their readers.
func connectSubscribers(ctx context.Context, addrs []string, topic string, n int) (*subscribers, error) {
	client := &http.Client{
		Transport: &http.Transport{DialContext: loopbackDialer().DialContext, MaxIdleConnsPerHost: 1},
		Timeout:   10 * time.Second,
	}
	rctx, cancel := context.WithCancel(context.Background())
	s := &subscribers{list: make([]*subscriber, n), cancel: cancel}

	sem := make(chan struct{}, 32)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			defer dcancel()
			u := "ws://" + addrs[nodeOf(i, len(addrs))] + "/ws?topic=" + url.QueryEscape(topic)
			ws, _, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: client, CompressionMode: websocket.CompressionDisabled})
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("subscriber %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			ws.SetReadLimit(1 << 20)
			s.list[i] = &subscriber{ws: ws}
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
	var buf bytes.Buffer
	for {
		_, r, err := sub.ws.Reader(ctx)
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			if ctx.Err() == nil {
				sub.err.Store(&err)
			}
			return
		}
		sub.count(buf.Bytes())
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
			var ce websocket.CloseError
			if st.brokenErr == "" || errors.As(*p, &ce) {
				st.brokenErr = (*p).Error()
			}
		}
	}
	return st
}

// close stops the readers and closes every connection without the close handshake (the
// server notices the TCP close at once).
func (s *subscribers) close() {
	s.cancel()
	for _, sub := range s.list {
		if sub != nil {
			_ = sub.ws.CloseNow()
		}
	}
	s.wg.Wait()
}
