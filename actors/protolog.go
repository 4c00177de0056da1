package actors

import (
	"context"
	"fmt"
	"log/slog"
)

// protoactor logs the messages it could not deliver ("[DeadLetter]") with the message
// itself as an attribute: a late room reply printed that way carries the room's push URL
// with its auth_key, and other messages carry user names and comments. What protoactor
// logs goes through typesOnly, which keeps every attribute that is a plain value and
// replaces a Go value (a message, a PID) with its type: enough to tell what was dropped,
// nothing of what it said.
type typesOnly struct{ next slog.Handler }

func (h typesOnly) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h typesOnly) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(typeOfAny(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h typesOnly) WithAttrs(attrs []slog.Attr) slog.Handler {
	safe := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		safe[i] = typeOfAny(a)
	}
	return typesOnly{h.next.WithAttrs(safe)}
}

func (h typesOnly) WithGroup(name string) slog.Handler { return typesOnly{h.next.WithGroup(name)} }

func typeOfAny(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, fmt.Sprintf("%T", err))
		}
		return slog.String(a.Key, fmt.Sprintf("%T", v.Any()))
	case slog.KindGroup:
		g := v.Group()
		safe := make([]any, len(g))
		for i, x := range g {
			safe[i] = typeOfAny(x)
		}
		return slog.Group(a.Key, safe...)
	}
	return a
}
