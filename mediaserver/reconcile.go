package mediaserver

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"roomengine/actors"
)

// Engine is what the reconciliation needs of the room engine.
type Engine interface {
	Rooms(ctx context.Context) ([]actors.Room, error)
	StreamPublishDone(ctx context.Context, roomID string) error
}

// Reconciler compares the media servers' stream lists with the rooms the engine believes
// publishing, every Interval:
//   - a room publishing for the engine whose stream no server lists, twice in a row (a
//     stream that has just started may not be listed yet), gets the publish_done it missed
//     (status 0, push 10, the no-publish deadline re-armed), as if the hook had come;
//   - a stream for no known room (nor a known room's mix) is reported: OnUnknown, and a log
//     line the first time it is seen.
//
// A poll that fails changes nothing: a room is only given up when every server answered.
type Reconciler struct {
	Engine       Engine
	Listers      []Lister
	App          string
	TemplateName string
	Interval     time.Duration
	Timeout      time.Duration
	Logger       *slog.Logger
	// OnUnknown is told the number of unknown streams after each complete poll.
	OnUnknown func(n int)
	// OnApplied is told each publish_done the reconciliation applied.
	OnApplied func(roomID string)
	// OnPoll is told the end of each poll, complete or not.
	OnPoll func(complete bool)

	missing map[string]int  // room → consecutive polls without its stream
	unknown map[string]bool // streams reported already
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// Start polls until Stop.
func (r *Reconciler) Start() {
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.Interval)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.Once(context.Background())
			}
		}
	}()
}

// Stop ends the polling and waits for a poll in progress.
func (r *Reconciler) Stop() {
	if r.stop == nil {
		return
	}
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

// Once runs one poll.
func (r *Reconciler) Once(ctx context.Context) {
	if r.missing == nil {
		r.missing, r.unknown = map[string]int{}, map[string]bool{}
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = r.Interval
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	complete := false
	if r.OnPoll != nil {
		defer func() { r.OnPoll(complete) }()
	}
	live := map[string]bool{}
	for _, l := range r.Listers {
		streams, err := l.Streams(ctx, r.App)
		if err != nil {
			r.Logger.Warn("stream list not read; nothing reconciled this time", "server", l.Name(), "err", err)
			return
		}
		for s := range streams {
			live[s] = true
		}
	}
	rooms, err := r.Engine.Rooms(ctx)
	if err != nil {
		r.Logger.Warn("rooms not read; nothing reconciled this time", "err", err)
		return
	}
	known := make(map[string]bool, len(rooms))
	for _, room := range rooms {
		known[room.ID] = true
		if !room.Publishing || live[room.ID] {
			delete(r.missing, room.ID)
			continue
		}
		r.missing[room.ID]++
		if r.missing[room.ID] < 2 {
			continue
		}
		delete(r.missing, room.ID)
		r.Logger.Warn("room publishing without a stream on the media server: applying the missed publish_done", "room", room.ID)
		if err := r.Engine.StreamPublishDone(ctx, room.ID); err != nil {
			r.Logger.Warn("missed publish_done not applied", "room", room.ID, "err", err)
			continue
		}
		if r.OnApplied != nil {
			r.OnApplied(room.ID)
		}
	}
	for id := range r.missing {
		if !known[id] {
			delete(r.missing, id)
		}
	}
	unknown := 0
	for s := range live {
		base := s
		if r.TemplateName != "" {
			base = strings.TrimSuffix(s, r.TemplateName)
		}
		if known[s] || known[base] {
			delete(r.unknown, s)
			continue
		}
		unknown++
		if !r.unknown[s] {
			r.unknown[s] = true
			r.Logger.Warn("stream publishing for no known room", "stream", s)
		}
	}
	for s := range r.unknown {
		if !live[s] {
			delete(r.unknown, s)
		}
	}
	if r.OnUnknown != nil {
		r.OnUnknown(unknown)
	}
	complete = true
}
