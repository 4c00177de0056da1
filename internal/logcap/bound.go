// Package logcap keeps what clients send from flooding the log. Its handler sits in front
// of any slog.Handler and
//   - bounds every attribute value (strings, errors and their wrapped chains, anything
//     printed) and the message to MaxValue bytes: a longer one is cut at a character
//     boundary and its length noted, "1234567…(80000 bytes)", as the API answers cut
//     the messages that quote client input;
//   - rate-limits repeated warnings: of the WARN and ERROR records with one message from one
//     logger, at most Burst are written per Every; the next one written after a quiet spell
//     says how many were left out (suppressed=N).
//
// Wrap is idempotent, so every package that logs client input can wrap the logger it is
// given, and the process wraps its root logger once for everything else.
package logcap

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"
)

// Defaults of Options.
const (
	DefaultMaxValue = 512
	DefaultEvery    = time.Second
	DefaultBurst    = 10
)

// Options tune the handler; zero values take the defaults.
type Options struct {
	MaxValue int           // bytes of one attribute value or message (default 512)
	Every    time.Duration // rate-limit window of repeated warnings (default 1s)
	Burst    int           // identical warnings written per window (default 10)
	Now      func() time.Time
}

// Handler bounds values and rate-limits repeated warnings; see the package comment.
type Handler struct {
	next   slog.Handler
	opts   Options
	scope  string // the groups and attributes added by WithAttrs/WithGroup, for the rate key
	limits *limiter
}

// New wraps next. A next that is already a *Handler is returned as it is.
func New(next slog.Handler, opts Options) slog.Handler {
	if h, ok := next.(*Handler); ok {
		return h
	}
	if opts.MaxValue <= 0 {
		opts.MaxValue = DefaultMaxValue
	}
	if opts.Every <= 0 {
		opts.Every = DefaultEvery
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{next: next, opts: opts, limits: newLimiter(opts)}
}

// Wrap returns l with its handler wrapped by New with the default options (l itself when it
// is already wrapped); a nil l wraps slog.Default().
func Wrap(l *slog.Logger) *slog.Logger {
	if l == nil {
		l = slog.Default()
	}
	if _, ok := l.Handler().(*Handler); ok {
		return l
	}
	return slog.New(New(l.Handler(), Options{}))
}

// Enabled defers to the wrapped handler.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle writes r with every value bounded, unless r is a warning repeated too often.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	suppressed := 0
	if r.Level >= slog.LevelWarn {
		ok, n := h.limits.allow(h.scope + "\x00" + strconv.Itoa(int(r.Level)) + "\x00" + Cut(r.Message, h.opts.MaxValue))
		if !ok {
			return nil
		}
		suppressed = n
	}
	out := slog.NewRecord(r.Time, r.Level, Cut(r.Message, h.opts.MaxValue), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.bound(a))
		return true
	})
	if suppressed > 0 {
		out.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, out)
}

// WithAttrs bounds attrs once, here.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	bounded := make([]slog.Attr, len(attrs))
	scope := h.scope
	for i, a := range attrs {
		bounded[i] = h.bound(a)
		scope += "\x00" + bounded[i].String()
	}
	return &Handler{next: h.next.WithAttrs(bounded), opts: h.opts, scope: scope, limits: h.limits}
}

// WithGroup opens a group in the wrapped handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), opts: h.opts, scope: h.scope + "\x00[" + name, limits: h.limits}
}

// bound returns a with its value at most MaxValue bytes long once printed.
func (h *Handler) bound(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); len(s) > h.opts.MaxValue {
			a.Value = slog.StringValue(Cut(s, h.opts.MaxValue))
		}
	case slog.KindGroup:
		group := a.Value.Group()
		bounded := make([]slog.Attr, len(group))
		for i, g := range group {
			bounded[i] = h.bound(g)
		}
		a.Value = slog.GroupValue(bounded...)
	case slog.KindAny:
		if t, ok := a.Value.Any().(Trusted); ok {
			a.Value = slog.StringValue(string(t))
			break
		}
		// An error prints its whole chain, which may wrap the client's input; anything else
		// is printed once to learn its length, and replaced by its cut text when too long.
		var s string
		if err, ok := a.Value.Any().(error); ok {
			s = err.Error()
			a.Value = slog.StringValue(Cut(s, h.opts.MaxValue))
			break
		}
		if s = fmt.Sprint(a.Value.Any()); len(s) > h.opts.MaxValue {
			a.Value = slog.StringValue(Cut(s, h.opts.MaxValue))
		}
	}
	return a
}

// Trusted marks a value the server made itself and that must stay whole, such as a
// stack trace: slog.Any("stack", logcap.Trusted(debug.Stack())). It is written uncut.
type Trusted string

// Cut returns s when it has at most max bytes, else its first max bytes (at a character
// boundary) and a note of its whole length: "abc…(80000 bytes)".
func Cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
