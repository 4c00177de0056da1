package actors

import (
	"encoding/json"
	"fmt"
)

// This file is the wire format of the messages that cross nodes in a cluster: a request for
// a room or a call that another node owns, and its answer. Inside a node the same messages
// travel as plain Go values (no encoding cost in single-node mode); between nodes each is
// one JSON envelope naming the event and carrying its fields. Every event a room or call
// accepts from outside its own actor has an entry in wireEvents, and wire_test.go round-trips
// each of them, because an event that cannot be encoded would only fail once it crossed.

// Peer request kinds.
const (
	PeerRoom     = "room"     // a roomRequest: ID is the room
	PeerCall     = "call"     // a callRequest: ID is the call
	PeerRoomCall = "roomcall" // a roomCallRequest: ID is a room, the event is for its call
)

// PeerRequest is one message from another node for an entity this node is believed to own.
type PeerRequest struct {
	Kind     string          `json:"kind"`
	ID       string          `json:"id"`
	Callback bool            `json:"callback,omitempty"`
	From     string          `json:"from,omitempty"`
	Event    string          `json:"event"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Peer reply statuses.
const (
	PeerOK    = "ok"    // handled here; the fields below are the answer
	PeerMoved = "moved" // this node does not own the entity (Owner names who does, if known)
	PeerRetry = "retry" // this node is leaving or not a member: ask the placement again
)

// PeerReply is the answer to a PeerRequest.
type PeerReply struct {
	Status  string `json:"status"`
	Owner   *Owner `json:"owner,omitempty"`
	Room    *Room  `json:"room,omitempty"`
	Call    *Call  `json:"call,omitempty"`
	User    *User  `json:"user,omitempty"`
	Users   []User `json:"users,omitempty"`
	Result  string `json:"result,omitempty"` // which result field is the answer's result
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Result kinds of a room's answer.
const (
	resultRoom  = "room"
	resultUser  = "user"
	resultUsers = "users"
)

// wireEvent encodes and decodes one event type.
type wireEvent struct {
	encode func(ev any) (any, bool)
	decode func(data []byte) (any, error)
}

// Wire shapes of events whose fields are unexported in the state machines.
type (
	wireUserEv struct {
		User  User   `json:"user"`
		Known bool   `json:"known"`
		Text  string `json:"text,omitempty"`
	}
	wireUIDEv    struct{ UID string }
	wireCallIDEv struct{ CallID, Peer string }
	wireJoinCall struct {
		CallID    string
		HostRooms []string
	}
	wireCallFlags struct {
		CallID      string
		Mixed       *bool
		MixedStatus *int
	}
	wireAnnounce struct {
		CallID     string
		Topic, Tag string
		Importance int
		Type       int
		// Data is the push's JSON as text: a JSON string survives any encoder of the
		// envelope (one that escapes & < > included) byte for byte.
		Data string
	}
	wireNotice    struct{ Notice MixResultNotice }
	wireRoomIDEv  struct{ RoomID string }
	wireCallClose struct {
		RoomID    string
		RoomEnded bool
	}
	wireMixAnswer struct {
		Leg, Attempt int
		Streams      []string
		ID           string
		Code         int
		Message      string
	}
)

// simple registers an event with no fields.
func simple[T any](v T) wireEvent {
	return wireEvent{
		encode: func(ev any) (any, bool) { _, ok := ev.(T); return struct{}{}, ok },
		decode: func([]byte) (any, error) { return v, nil },
	}
}

// shaped registers an event through its wire shape W.
func shaped[T, W any](to func(T) W, from func(W) T) wireEvent {
	return wireEvent{
		encode: func(ev any) (any, bool) {
			e, ok := ev.(T)
			if !ok {
				return nil, false
			}
			return to(e), true
		},
		decode: func(data []byte) (any, error) {
			var w W
			if err := json.Unmarshal(data, &w); err != nil {
				return nil, err
			}
			return from(w), nil
		},
	}
}

func errorOf(code int, message string) *Error {
	if code == 0 {
		return nil
	}
	return &Error{Code: code, Message: message}
}

func wireCodeOf(e *Error) (int, string) {
	if e == nil {
		return 0, ""
	}
	return e.Code, e.Message
}

var wireEvents = map[string]wireEvent{
	"play": shaped(func(e evPlay) wireUserEv { return wireUserEv{User: e.member, Known: e.userKnown} },
		func(w wireUserEv) evPlay { return evPlay{member: w.User, userKnown: w.Known} }),
	"comment": shaped(func(e evComment) wireUserEv { return wireUserEv{User: e.user, Known: e.userKnown, Text: e.text} },
		func(w wireUserEv) evComment { return evComment{user: w.User, userKnown: w.Known, text: w.Text} }),
	"like": shaped(func(e evLike) wireUserEv { return wireUserEv{User: e.user, Known: e.userKnown} },
		func(w wireUserEv) evLike { return evLike{user: w.User, userKnown: w.Known} }),
	"audienceLeave": shaped(func(e evAudienceLeave) wireUIDEv { return wireUIDEv{UID: e.uid} },
		func(w wireUIDEv) evAudienceLeave { return evAudienceLeave{uid: w.UID} }),
	"leave":         simple(evLeave{}),
	"publish":       simple(evPublish{}),
	"publishDone":   simple(evPublishDone{}),
	"mixAvailable":  simple(evMixAvailable{}),
	"queryAudience": simple(queryAudience{}),
	"queryRoom":     simple(queryRoom{}),
	"queryCall":     simple(queryCall{}),
	"roomMixResult": shaped(func(e evRoomMixResult) wireNotice { return wireNotice{Notice: e.notice} },
		func(w wireNotice) evRoomMixResult { return evRoomMixResult{notice: w.Notice} }),
	"joinCall": shaped(func(e evJoinCall) wireJoinCall { return wireJoinCall{CallID: e.callID, HostRooms: e.hostRooms} },
		func(w wireJoinCall) evJoinCall { return evJoinCall{callID: w.CallID, hostRooms: w.HostRooms} }),
	"leaveCall": shaped(func(e evLeaveCall) wireCallIDEv { return wireCallIDEv{CallID: e.callID, Peer: e.peer} },
		func(w wireCallIDEv) evLeaveCall { return evLeaveCall{callID: w.CallID, peer: w.Peer} }),
	"callFlags": shaped(func(e evCallFlags) wireCallFlags {
		return wireCallFlags{CallID: e.callID, Mixed: e.mixed, MixedStatus: e.mixedStatus}
	}, func(w wireCallFlags) evCallFlags {
		return evCallFlags{callID: w.CallID, mixed: w.Mixed, mixedStatus: w.MixedStatus}
	}),
	"announceCall": shaped(func(e evAnnounceCall) wireAnnounce {
		data, err := MarshalJSON(e.push.data)
		if err != nil {
			panic("actors: encode push data: " + err.Error()) // plain structs of strings and numbers
		}
		return wireAnnounce{CallID: e.callID, Topic: e.push.topic, Tag: e.push.tag, Importance: e.push.importance,
			Type: e.push.typ, Data: string(data)}
	}, func(w wireAnnounce) evAnnounceCall {
		return evAnnounceCall{callID: w.CallID, push: outPush{topic: w.Topic, tag: w.Tag, importance: w.Importance,
			typ: w.Type, data: json.RawMessage(w.Data)}}
	}),
	"callMixReady": shaped(func(e evCallMixReady) wireRoomIDEv { return wireRoomIDEv{RoomID: e.roomID} },
		func(w wireRoomIDEv) evCallMixReady { return evCallMixReady{roomID: w.RoomID} }),
	"mixResult": shaped(func(e evMixResult) wireNotice { return wireNotice{Notice: e.notice} },
		func(w wireNotice) evMixResult { return evMixResult{notice: w.Notice} }),
	"mixEvent": shaped(func(e evMixEvent) MixEvent { return e.event },
		func(w MixEvent) evMixEvent { return evMixEvent{event: w} }),
	"callClose": shaped(func(e evCallClose) wireCallClose { return wireCallClose{RoomID: e.roomID, RoomEnded: e.roomEnded} },
		func(w wireCallClose) evCallClose { return evCallClose{roomID: w.RoomID, roomEnded: w.RoomEnded} }),
	"startAnswered": shaped(func(e evStartAnswered) wireMixAnswer {
		code, msg := wireCodeOf(e.err)
		return wireMixAnswer{Leg: e.leg, Attempt: e.attempt, Streams: e.streams, ID: e.id, Code: code, Message: msg}
	}, func(w wireMixAnswer) evStartAnswered {
		return evStartAnswered{leg: w.Leg, attempt: w.Attempt, streams: w.Streams, id: w.ID, err: errorOf(w.Code, w.Message)}
	}),
	"stopAnswered": shaped(func(e evStopAnswered) wireMixAnswer {
		code, msg := wireCodeOf(e.err)
		return wireMixAnswer{Leg: e.leg, Attempt: e.attempt, Code: code, Message: msg}
	}, func(w wireMixAnswer) evStopAnswered {
		return evStopAnswered{leg: w.Leg, attempt: w.Attempt, err: errorOf(w.Code, w.Message)}
	}),
}

// encodeEvent names ev and encodes its fields.
func encodeEvent(ev any) (string, json.RawMessage, error) {
	for name, w := range wireEvents {
		if shape, ok := w.encode(ev); ok {
			data, err := json.Marshal(shape)
			return name, data, err
		}
	}
	return "", nil, fmt.Errorf("actors: event %T cannot cross nodes", ev)
}

func decodeEvent(name string, data []byte) (any, error) {
	w, ok := wireEvents[name]
	if !ok {
		return nil, fmt.Errorf("actors: unknown event %q from a peer", name)
	}
	if len(data) == 0 {
		data = []byte("{}")
	}
	return w.decode(data)
}

// peerRequestOf encodes a request for the node that owns its entity.
func peerRequestOf(msg entityRequest) (PeerRequest, error) {
	req, ev := msg.peer()
	name, data, err := encodeEvent(ev)
	req.Event, req.Data = name, data
	return req, err
}

func (m roomRequest) peer() (PeerRequest, any) {
	return PeerRequest{Kind: PeerRoom, ID: m.roomID, Callback: m.callback}, m.ev
}

func (m callRequest) peer() (PeerRequest, any) {
	return PeerRequest{Kind: PeerCall, ID: m.callID, From: m.from}, m.ev
}

func (m roomCallRequest) peer() (PeerRequest, any) {
	return PeerRequest{Kind: PeerRoomCall, ID: m.roomID}, m.ev
}

// localMessage decodes a peer's request into the message the local registries take. It is
// marked remote, so this node answers it itself and never forwards it again.
func localMessage(req PeerRequest) (entityRequest, error) {
	ev, err := decodeEvent(req.Event, req.Data)
	if err != nil {
		return nil, err
	}
	rev, forRoom := ev.(roomEvent)
	cev, forCall := ev.(callEvent)
	switch {
	case req.Kind == PeerRoom && forRoom:
		return roomRequest{roomID: req.ID, ev: rev, callback: req.Callback, remote: true}, nil
	case req.Kind == PeerCall && forCall:
		return callRequest{callID: req.ID, ev: cev, from: req.From, remote: true}, nil
	case req.Kind == PeerRoomCall && forCall:
		return roomCallRequest{roomID: req.ID, ev: cev, remote: true}, nil
	case req.Kind == PeerRoom || req.Kind == PeerCall || req.Kind == PeerRoomCall:
		return nil, fmt.Errorf("actors: event %q is not for a %s", req.Event, req.Kind)
	}
	return nil, fmt.Errorf("actors: unknown peer request kind %q", req.Kind)
}

// peerReplyOf encodes a local answer for the peer that asked.
func peerReplyOf(answer any) PeerReply {
	switch a := answer.(type) {
	case roomReply:
		rep := PeerReply{Status: PeerOK}
		rep.Code, rep.Message = wireCodeOf(a.err)
		if a.room.ID != "" {
			room := a.room
			rep.Room = &room
		}
		switch r := a.result.(type) {
		case Room:
			rep.Result, rep.Room = resultRoom, &r
		case User:
			rep.Result, rep.User = resultUser, &r
		case []User:
			rep.Result, rep.Users = resultUsers, r
		}
		return rep
	case callReply:
		rep := PeerReply{Status: PeerOK}
		rep.Code, rep.Message = wireCodeOf(a.err)
		if a.call.ID != "" {
			c := a.call
			rep.Call = &c
		}
		return rep
	case movedReply:
		return PeerReply{Status: PeerMoved, Owner: a.owner}
	}
	return PeerReply{Status: PeerRetry}
}

// answerOf decodes a peer's answer into the reply the original asker waits for.
func answerOf(kind string, rep PeerReply) any {
	err := errorOf(rep.Code, rep.Message)
	if kind != PeerRoom {
		var c Call
		if rep.Call != nil {
			c = *rep.Call
		}
		return callReply{call: c, err: err}
	}
	var reply roomReply
	reply.err = err
	if rep.Room != nil {
		reply.room = *rep.Room
	}
	switch rep.Result {
	case resultRoom:
		reply.result = reply.room
	case resultUser:
		if rep.User != nil {
			reply.result = *rep.User
		}
	case resultUsers:
		users := rep.Users
		if users == nil {
			users = []User{}
		}
		reply.result = users
	}
	return reply
}
