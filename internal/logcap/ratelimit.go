package logcap

import (
	"sync"
	"time"
)

// maxKeys bounds the warnings tracked at once. Messages are constants of the code, so the
// bound is only ever reached by a bug; the table then starts over.
const maxKeys = 4096

// limiter counts warnings per key in fixed windows of opts.Every.
type limiter struct {
	opts Options
	mu   sync.Mutex
	keys map[string]*window
}

type window struct {
	start      time.Time
	written    int
	suppressed int // dropped since the last one written
}

func newLimiter(opts Options) *limiter {
	return &limiter{opts: opts, keys: map[string]*window{}}
}

// allow reports whether a warning with key may be written now, and how many with the same
// key were dropped before it (to be noted on it).
func (l *limiter) allow(key string) (bool, int) {
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.keys[key]
	if w == nil {
		if len(l.keys) >= maxKeys {
			clear(l.keys)
		}
		w = &window{start: now}
		l.keys[key] = w
	}
	if now.Sub(w.start) >= l.opts.Every {
		w.start, w.written = now, 0
	}
	if w.written >= l.opts.Burst {
		w.suppressed++
		return false, 0
	}
	w.written++
	n := w.suppressed
	w.suppressed = 0
	return true, n
}
