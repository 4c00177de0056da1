package console

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"roomengine/actors"
)

// State is the answer of GET /console/api/state: everything the page shows.
type State struct {
	Time time.Time `json:"time"`
	// CSRF is the token a cookie-signed POST sends back in X-CSRF-Token (empty for bearer
	// requests, which need none).
	CSRF       string      `json:"csrf,omitempty"`
	Rooms      []RoomRow   `json:"rooms"`
	RoomsTotal int         `json:"roomsTotal"` // live rooms, also those beyond MaxRooms
	Calls      []CallRow   `json:"calls"`
	Push       *PushStats  `json:"push,omitempty"`
	Breakers   []Breaker   `json:"breakers"`
	Cluster    ClusterView `json:"cluster"`
	// Errors names the parts that could not be read this time (the rest is still shown).
	Errors []string `json:"errors,omitempty"`
}

// RoomRow is one live room.
type RoomRow struct {
	ID          string `json:"id"`
	UID         string `json:"uid"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      int    `json:"status"`
	StatusText  string `json:"statusText"`
	Type        int    `json:"type"`
	Publishing  bool   `json:"publishing"`
	MixReady    bool   `json:"mixReady"`
	Mixed       bool   `json:"mixed"`
	// Audience is how many users joined through /live/play (-1: could not be read).
	Audience int `json:"audience"`
	// Subscribers is how many WebSocket connections follow the room's topic.
	Subscribers int       `json:"subscribers"`
	CallID      string    `json:"callId,omitempty"`
	Owner       string    `json:"owner,omitempty"` // in a cluster: the node acting for it
	CreateTime  time.Time `json:"createTime"`
}

// CallRow is one co-streaming call with its mix legs.
type CallRow struct {
	ID         string          `json:"id"`
	Phase      string          `json:"phase"`
	Layout     string          `json:"layout"`
	Inviter    actors.CallSide `json:"inviter"`
	Invitee    actors.CallSide `json:"invitee"`
	Legs       []LegRow        `json:"legs"`
	CreateTime time.Time       `json:"createTime"`
}

// LegRow is one CDN mix of a call: main is the host room the partner is mixed into.
type LegRow struct {
	Main    string `json:"main"`
	Mix     string `json:"mix"`
	State   string `json:"state"` // "" (not started), starting, started, failed, stopping, stopped
	Attempt int    `json:"attempt"`
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// PushStats are the WebSocket gateway's counters since the start.
type PushStats struct {
	Connections int               `json:"connections"`
	Topics      int               `json:"topics"`
	Published   uint64            `json:"published"`
	FramesSent  uint64            `json:"framesSent"`
	Dropped     map[string]uint64 `json:"dropped"`     // frames, by reason
	Disconnects map[string]uint64 `json:"disconnects"` // connections, by cause
}

// StatusText names a room status.
func StatusText(status int) string {
	switch status {
	case actors.StatusCreated:
		return "created"
	case actors.StatusPublishing:
		return "publishing"
	case actors.StatusEnded:
		return "ended"
	case actors.StatusCostream:
		return "co-stream"
	}
	return "unknown"
}

// audienceWorkers is how many rooms are asked for their audience at once.
const audienceWorkers = 4

// Snapshot gathers the state. A part that cannot be read is named in Errors; the others
// are still filled in.
func (h *Handler) Snapshot(ctx context.Context) State {
	st := State{Time: h.opts.Now(), Rooms: []RoomRow{}, Calls: []CallRow{}, Breakers: []Breaker{}, Cluster: SingleNode}
	rooms, err := h.opts.Domain.Rooms(ctx)
	if err != nil {
		h.log.Warn("console: rooms not read", "err", err)
		st.Errors = append(st.Errors, "rooms: "+shortError(err))
	}
	st.RoomsTotal = len(rooms)
	if len(rooms) > h.opts.MaxRooms {
		rooms = rooms[:h.opts.MaxRooms]
	}
	for _, r := range rooms {
		row := RoomRow{ID: r.ID, UID: r.UID, Name: r.Name, Description: r.Description, Status: r.Status,
			StatusText: StatusText(r.Status), Type: r.Type, Publishing: r.Publishing || r.Status == actors.StatusPublishing,
			MixReady: r.IsMixReady, Mixed: r.IsMixed, CallID: r.CallID, CreateTime: r.CreateTime, Audience: -1}
		if h.opts.Push != nil {
			row.Subscribers = h.opts.Push.Subscribers(r.ID)
		}
		st.Rooms = append(st.Rooms, row)
	}
	h.fillAudience(ctx, st.Rooms)

	calls, err := h.opts.Domain.Calls(ctx)
	if err != nil {
		h.log.Warn("console: calls not read", "err", err)
		st.Errors = append(st.Errors, "calls: "+shortError(err))
	}
	for _, c := range calls {
		row := CallRow{ID: c.ID, Phase: c.Phase, Layout: c.Layout, Inviter: c.Inviter, Invitee: c.Invitee,
			CreateTime: c.CreateTime, Legs: make([]LegRow, 0, len(c.Legs))}
		for _, l := range c.Legs {
			row.Legs = append(row.Legs, LegRow{Main: l.Main, Mix: l.Mix, State: l.State, Attempt: l.Attempt,
				Code: l.Code, Message: l.Message})
		}
		st.Calls = append(st.Calls, row)
	}

	if h.opts.Push != nil {
		s := h.opts.Push.Stats()
		st.Push = &PushStats{Connections: s.Connections, Topics: s.Topics, Published: s.Published,
			FramesSent: s.FramesSent, Dropped: s.Dropped, Disconnects: s.Disconnects}
	}
	if h.opts.Breakers != nil {
		st.Breakers = append(st.Breakers, h.opts.Breakers()...)
	}
	if h.opts.Cluster != nil {
		ids := make([]string, len(st.Rooms))
		for i, r := range st.Rooms {
			ids[i] = r.ID
		}
		view, err := h.opts.Cluster.ClusterView(ctx, ids)
		if err != nil {
			h.log.Warn("console: cluster view not read", "err", err)
			st.Errors = append(st.Errors, "cluster: "+shortError(err))
			view = ClusterView{Mode: "cluster (unavailable)"}
		}
		if view.Members == nil {
			view.Members = []Member{}
		}
		st.Cluster = view
		for i := range st.Rooms {
			st.Rooms[i].Owner = view.Owners[st.Rooms[i].ID]
		}
		st.Cluster.Owners = nil // shown in the rooms table
	}
	return st
}

// fillAudience asks each room for its audience, a few at a time.
func (h *Handler) fillAudience(ctx context.Context, rows []RoomRow) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(audienceWorkers, len(rows)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if members, err := h.opts.Domain.Audience(ctx, rows[i].ID); err == nil {
					rows[i].Audience = len(members)
				}
			}
		}()
	}
	for i := range rows {
		next <- i
	}
	close(next)
	wg.Wait()
}

// shortError is an error as an operator may see it: an engine error's code and message,
// without the internal cause.
func shortError(err error) string {
	var e *actors.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "unavailable"
}

func (h *Handler) state(w http.ResponseWriter, r *http.Request, cred credentials) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	st := h.Snapshot(ctx)
	if cred.session != "" {
		st.CSRF = h.keys.csrfToken(cred.session)
	}
	writeJSON(w, http.StatusOK, st)
}

// endRoom ends a room as its host's /live/leave would: push 8, audience cleared.
func (h *Handler) endRoom(w http.ResponseWriter, r *http.Request, _ credentials) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	if err := h.opts.Domain.Leave(ctx, id); err != nil {
		h.writeDomainError(w, r, err)
		return
	}
	h.log.Info("console: room ended by an operator", "room", id, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "room": id})
}

// closeCall closes a call as /videocall/close would, on behalf of its inviter's room (or
// the invitee's, if that one is gone).
func (h *Handler) closeCall(w http.ResponseWriter, r *http.Request, _ credentials) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	calls, err := h.opts.Domain.Calls(ctx)
	if err != nil {
		h.writeDomainError(w, r, err)
		return
	}
	for _, c := range calls {
		if c.ID != id {
			continue
		}
		for _, room := range []string{c.Inviter.RoomID, c.Invitee.RoomID} {
			if room == "" {
				continue
			}
			err = h.opts.Domain.CloseCall(ctx, room, "")
			if err == nil {
				h.log.Info("console: call closed by an operator", "call", id, "room", room, "remote", r.RemoteAddr)
				writeJSON(w, http.StatusOK, map[string]any{"ok": true, "call": id})
				return
			}
			// CloseCall answers 2002 for a room that is gone: try the other side.
			if !actors.HasCode(err, actors.CodeNoSuchUser) && !actors.HasCode(err, actors.CodeNoSuchRoom) {
				break
			}
		}
		if err == nil {
			err = actors.Errorf(actors.CodeNoSuchRoom, "the call's rooms are gone")
		}
		h.writeDomainError(w, r, err)
		return
	}
	writeJSON(w, http.StatusNotFound, apiError{Error: "no such call: " + id})
}
