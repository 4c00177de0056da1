package http

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomengine/actors"
)

// Headers Aliyun Live signs its callbacks with (docs/api.md, Callbacks).
const (
	HeaderCallbackTimestamp = "ALI-LIVE-TIMESTAMP"
	HeaderCallbackSignature = "ALI-LIVE-SIGNATURE"
)

// DefaultCallbackMaxSkew is how far a callback's timestamp may be from the server's clock
// (ali.callbackMaxSkew), in either direction.
const DefaultCallbackMaxSkew = 5 * time.Minute

// Reasons a callback was refused, as the reason label of roomengine_callbacks_refused_total.
const (
	// RefusedMissing: a header is absent or empty.
	RefusedMissing = "missing"
	// RefusedStale: the signature is right but its timestamp is more than the maximum
	// skew away from now (a replay, or a clock that is off).
	RefusedStale = "stale"
	// RefusedBadSignature: the signature does not match, or the timestamp is not a
	// non-negative decimal Unix time (so nothing can match it).
	RefusedBadSignature = "bad_signature"
	// RefusedReplay: an exact repeat (timestamp, signature, route and parameters) of a
	// callback already applied: answered 200 as the first one was, and applied no more.
	RefusedReplay = "replay"
)

// MaxCallbackFuture is how far in the future a callback's timestamp may be (a clock a
// little ahead); a callback signed for later than that is refused whatever the skew
// allows, so a captured one cannot be held back and used later.
const MaxCallbackFuture = 30 * time.Second

// CallbackSignature is the ALI-LIVE-SIGNATURE of a callback sent at timestamp (decimal Unix
// seconds): md5hex(rtmpHost + "|" + timestamp + "|" + key), rtmpHost being the push domain.
func CallbackSignature(rtmpHost, timestamp, key string) string {
	sum := md5.Sum([]byte(rtmpHost + "|" + timestamp + "|" + key))
	return hex.EncodeToString(sum[:])
}

// SignCallback sets the two headers Aliyun signs a live callback with, as of now. It is for
// callbacks sent in-process (the mix simulator) and tests. With an empty key (callback auth
// off) it does nothing, so callers may call it unconditionally.
func SignCallback(req *http.Request, rtmpHost, key string, now time.Time) {
	if key == "" {
		return
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(HeaderCallbackTimestamp, ts)
	req.Header.Set(HeaderCallbackSignature, CallbackSignature(rtmpHost, ts, key))
}

// callbackAuth checks the signature of Aliyun's live callbacks. A nil *callbackAuth (no key
// configured) accepts everything.
type callbackAuth struct {
	key      []byte
	rtmpHost string
	maxSkew  time.Duration
	now      func() time.Time
	refused  *prometheus.CounterVec
	log      *slog.Logger

	mu      sync.Mutex
	lastLog time.Time
	quiet   int // refusals not logged since lastLog

	seen      callbackMemory
	firstSeen func(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// callbackRoutes are the /ali/* routes; their refusal series are exported from the start.
var callbackRoutes = []string{"/ali/stream/notify", "/ali/mix/availability/notify", "/ali/mix/status/notify",
	mixCallbackRoute}

func newCallbackAuth(opts Options) *callbackAuth {
	if opts.CallbackAuthKey == "" {
		return nil
	}
	a := &callbackAuth{
		key:       []byte(opts.CallbackAuthKey),
		rtmpHost:  opts.CallbackRtmpHost,
		maxSkew:   opts.CallbackMaxSkew,
		now:       opts.Now,
		log:       opts.Logger,
		firstSeen: opts.FirstSeen,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomengine_callbacks_refused_total",
			Help: "Aliyun live callbacks refused by signature checking, by route and reason.",
		}, []string{"route", "reason"}),
	}
	if a.maxSkew <= 0 {
		a.maxSkew = DefaultCallbackMaxSkew
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(a.refused)
	}
	for _, route := range callbackRoutes {
		for _, reason := range []string{RefusedMissing, RefusedStale, RefusedBadSignature, RefusedReplay} {
			a.refused.WithLabelValues(route, reason)
		}
	}
	return a
}

// check returns "" when r carries a valid, fresh signature, else the refusal reason.
// The signature is compared in constant time; the timestamp is checked after it, so
// "stale" is only reported for callbacks signed with the right key.
func (a *callbackAuth) check(r *http.Request) string {
	ts := strings.TrimSpace(r.Header.Get(HeaderCallbackTimestamp))
	sig := strings.TrimSpace(r.Header.Get(HeaderCallbackSignature))
	if ts == "" || sig == "" {
		return RefusedMissing
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec < 0 || len(sig) != md5.Size*2 {
		return RefusedBadSignature
	}
	// The timestamp is signed exactly as it arrived; md5hex is lower case, and Aliyun's
	// documentation prints both cases, so the received one is lowered first.
	want := CallbackSignature(a.rtmpHost, ts, string(a.key))
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) != 1 {
		return RefusedBadSignature
	}
	skew := a.now().Sub(time.Unix(sec, 0)) // saturates instead of overflowing
	if skew > a.maxSkew || skew < -min(a.maxSkew, MaxCallbackFuture) {
		return RefusedStale
	}
	return ""
}

// replayed reports whether r repeats a callback accepted before, and remembers it if not.
// It is called for correctly signed, fresh callbacks only: a signature's timestamp is in
// the window until maxSkew after it, and it is remembered until then.
func (a *callbackAuth) replayed(route string, p params, r *http.Request) bool {
	ts := strings.TrimSpace(r.Header.Get(HeaderCallbackTimestamp))
	sec, _ := strconv.ParseInt(ts, 10, 64)
	key := callbackKey(route, ts, strings.ToLower(strings.TrimSpace(r.Header.Get(HeaderCallbackSignature))), p)
	until, now := time.Unix(sec, 0).Add(a.maxSkew), a.now()
	if !a.seen.add(key, until, now) {
		return true
	}
	if a.firstSeen == nil {
		return false
	}
	// Another node may have applied it: ask the deployment's memory. When it cannot
	// answer, the callback is applied (every callback is idempotent on its own; only an
	// old one after a newer one is what this guards against).
	first, err := a.firstSeen(r.Context(), "callback:"+hex.EncodeToString(key[:]), max(time.Second, until.Sub(now)))
	if err != nil {
		a.log.Warn("callback replay check unavailable; applied", "route", route, "err", err)
		return false
	}
	return !first
}

// callbackKey identifies one callback: its route, signature and parameters, sorted.
func callbackKey(route, ts, sig string, p params) [sha256.Size]byte {
	names := make([]string, 0, len(p))
	for k := range p {
		names = append(names, k)
	}
	sort.Strings(names)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", route, ts, sig)
	for _, k := range names {
		fmt.Fprintf(h, "%d:%s=%d:%s\n", len(k), k, len(p[k]), p[k])
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// callbackMemory remembers accepted callbacks until their timestamps leave the window. Only
// correctly signed callbacks get here, so its size is what Aliyun sends in maxSkew.
type callbackMemory struct {
	mu    sync.Mutex
	until map[[sha256.Size]byte]time.Time
	sweep time.Time
}

// add remembers key until until and reports false when it was remembered already.
func (m *callbackMemory) add(key [sha256.Size]byte, until, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.until == nil {
		m.until = map[[sha256.Size]byte]time.Time{}
	}
	if now.After(m.sweep) {
		for k, u := range m.until {
			if now.After(u) {
				delete(m.until, k)
			}
		}
		m.sweep = now.Add(10 * time.Second)
	}
	if u, ok := m.until[key]; ok && !now.After(u) {
		return false
	}
	m.until[key] = until
	return true
}

// wrap refuses unsigned, wrongly signed and stale callbacks with 403 before fn runs, so a
// refused callback changes nothing.
func (a *callbackAuth) wrap(route string, fn apiFunc) apiFunc {
	if a == nil {
		return fn
	}
	return func(ctx context.Context, p params, r *http.Request) (any, error) {
		if reason := a.check(r); reason != "" {
			a.refuse(route, reason, r)
			return nil, actors.Errorf(actors.CodeForbidden, "回调签名校验失败: %s", reason)
		}
		if a.replayed(route, p, r) {
			// Answered as the first one was (Aliyun may retry an answered callback), but a
			// captured publish_done sent again after a new publish ends nothing.
			a.refused.WithLabelValues(route, RefusedReplay).Inc()
			return nil, nil
		}
		return fn(ctx, p, r)
	}
}

// refuse counts a refusal and logs it, at most once a second (a flood of forged callbacks
// must not flood the log); the key and the received signature are never logged.
func (a *callbackAuth) refuse(route, reason string, r *http.Request) {
	a.refused.WithLabelValues(route, reason).Inc()
	a.mu.Lock()
	now := time.Now()
	if now.Sub(a.lastLog) < time.Second {
		a.quiet++
		a.mu.Unlock()
		return
	}
	quiet := a.quiet
	a.lastLog, a.quiet = now, 0
	a.mu.Unlock()
	args := []any{"route", route, "reason", reason, "remote", r.RemoteAddr,
		"timestamp", truncate(r.Header.Get(HeaderCallbackTimestamp), 32)}
	if quiet > 0 {
		args = append(args, "alsoRefusedSinceLastLog", quiet)
	}
	a.log.Warn("aliyun callback refused", args...)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
