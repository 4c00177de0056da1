package actors

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Debug lines of the actors (log.level: debug): each event a room or call actor applied,
// with the state it left and the push types it sent. They cost nothing at other levels.

// debugOn reports whether log's handler takes DEBUG lines.
func debugOn(log *slog.Logger) bool { return log.Enabled(context.Background(), slog.LevelDebug) }

// eventName is an event's type without the package ("evPlay", "evCallClose").
func eventName(ev any) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", ev), "actors.")
}

func (a *roomActor) debugStep(ev roomEvent, st roomStep) {
	if !debugOn(a.deps.log) {
		return
	}
	types := make([]int, 0, len(st.pushes))
	for _, p := range st.pushes {
		types = append(types, p.typ)
	}
	a.deps.log.Debug("room event", "room", st.next.ID, "event", eventName(ev), "status", st.next.Status,
		"exists", st.exists, "ended", st.next.Ended(), "pushes", types, "err", errString(st.err))
}

func (a *callActor) debugStep(ev callEvent, st callStep) {
	if !debugOn(a.deps.log) {
		return
	}
	types := make([]int, 0, len(st.pushes))
	for _, p := range st.pushes {
		types = append(types, p.typ)
	}
	a.deps.log.Debug("call event", "call", st.next.ID, "event", eventName(ev), "phase", st.next.Phase,
		"pushes", types, "mixes", len(st.mixes), "release", st.release)
}

func errString(err *Error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
