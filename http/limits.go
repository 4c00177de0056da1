package http

import (
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// perIPLimiter is the http.rateLimit of docs/api.md (Security): a token bucket per client address. Aliyun's
// callbacks and the operational endpoints are exempt (callbacks have their own signature
// check, and a refused callback is retried by Aliyun, which only adds load).
type perIPLimiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	peers map[string]*peer
	swept time.Time
}

type peer struct {
	lim  *rate.Limiter
	seen time.Time
}

// peerIdle is how long an address may stay silent before its bucket is forgotten, which
// keeps the map bounded by the addresses active in the last few minutes.
const peerIdle = 3 * time.Minute

func newPerIPLimiter(perSecond float64, burst int) *perIPLimiter {
	if burst < 1 {
		burst = max(1, int(perSecond))
	}
	return &perIPLimiter{limit: rate.Limit(perSecond), burst: burst, peers: map[string]*peer{}}
}

func (l *perIPLimiter) allow(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > peerIdle {
		for k, p := range l.peers {
			if now.Sub(p.seen) > peerIdle {
				delete(l.peers, k)
			}
		}
		l.swept = now
	}
	p := l.peers[addr]
	if p == nil {
		p = &peer{lim: rate.NewLimiter(l.limit, l.burst)}
		l.peers[addr] = p
	}
	p.seen = now
	return p.lim.AllowN(now, 1)
}

func exemptFromLimit(path string) bool {
	return strings.HasPrefix(path, "/ali/") || strings.HasPrefix(path, "/media/") || path == "/healthz" || path == "/readyz" || path == "/metrics"
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limitAndCORS applies the per-IP rate limit and, when origins are configured, CORS.
func (h *Handler) limitAndCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.cors(w, r) {
			return
		}
		if h.limiter != nil && !exemptFromLimit(r.URL.Path) && !h.limiter.allow(clientIP(r), h.opts.Now()) {
			// HTTP 200 like every API answer (docs/api.md, Conventions: old clients read code, and only 401,
			// 403 and 413 set the status); /ws is no API route and a WebSocket client needs a
			// non-101 status anyway, so it gets 429.
			status := http.StatusOK
			if r.URL.Path == "/ws" {
				status = http.StatusTooManyRequests
			}
			w.Header().Set("Retry-After", strconv.Itoa(1))
			writeEnvelope(w, status, envelope{Code: http.StatusTooManyRequests, Message: "请求过于频繁，请稍后重试"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cors sets the CORS headers for an allowed Origin and answers preflight requests itself
// (it returns true then). With no configured origins it does nothing: CORS stays off.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if len(h.opts.CORSOrigins) == 0 || origin == "" {
		return false
	}
	wildcard := slices.Contains(h.opts.CORSOrigins, "*")
	if !wildcard && !slices.Contains(h.opts.CORSOrigins, origin) {
		return false
	}
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", origin)
	hd.Add("Vary", "Origin")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	hd.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}
