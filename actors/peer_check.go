package actors

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A peer's request is checked as strictly as a client's request to the public API before
// it reaches a room or a call: a signed request proves which cluster sent it, not that the
// node that sent it (or its bug) sent something sane. A request that fails is answered
// HTTP 400 and changes nothing.

// Limits of a peer's request, the public API's where it has one.
const (
	peerMaxID      = 128  // room, call, user ids and stream names
	peerMaxName    = 128  // a user's name (the API's name limit)
	peerMaxText    = 2000 // a comment (the API's comment limit)
	peerMaxField   = 512  // any other text field (a mix notice's message, a tag)
	peerMaxList    = 8    // rooms of a call, streams of a mix
	peerMaxPush    = 16 << 10
	pushAcceptedTy = 2 // the type of the push a call has its room announce
	pushAcceptedIm = 4 // and its importance
)

// CheckPeerRequest reports why req may not be served, or nil.
func CheckPeerRequest(req PeerRequest) error {
	switch req.Kind {
	case PeerRoom, PeerCall, PeerRoomCall:
	default:
		return fmt.Errorf("unknown kind %q", capText(req.Kind))
	}
	if err := checkID("id", req.ID, true); err != nil {
		return err
	}
	if err := checkID("from", req.From, false); err != nil {
		return err
	}
	if req.From != "" && req.Kind != PeerCall {
		return fmt.Errorf("from is only for a call")
	}
	ev, err := decodeEvent(req.Event, req.Data)
	if err != nil {
		return fmt.Errorf("event %q: %v", capText(req.Event), err)
	}
	// A room's event for a call, or a call's for a room, is refused here, not in the actor.
	if _, forRoom := ev.(roomEvent); forRoom != (req.Kind == PeerRoom) {
		return fmt.Errorf("event %q is not for a %s", capText(req.Event), req.Kind)
	}
	return checkPeerEvent(req, ev)
}

func checkPeerEvent(req PeerRequest, ev any) error {
	switch e := ev.(type) {
	case evPlay:
		return checkUser(e.member)
	case evComment:
		if err := checkUser(e.user); err != nil {
			return err
		}
		return checkText("text", e.text, peerMaxText)
	case evLike:
		return checkUser(e.user)
	case evAudienceLeave:
		return checkID("uid", e.uid, true)
	case evJoinCall:
		if len(e.hostRooms) > peerMaxList {
			return fmt.Errorf("too many rooms")
		}
		for _, r := range e.hostRooms {
			if err := checkID("hostRooms", r, true); err != nil {
				return err
			}
		}
		return checkID("callId", e.callID, true)
	case evLeaveCall:
		if err := checkID("callId", e.callID, true); err != nil {
			return err
		}
		return checkID("peer", e.peer, false)
	case evCallFlags:
		return checkID("callId", e.callID, true)
	case evAnnounceCall:
		return checkAnnounce(req, e)
	case evCallMixReady:
		return checkID("roomId", e.roomID, true)
	case evCallClose:
		return checkID("roomId", e.roomID, false)
	case evRoomMixResult:
		return checkStrings(e.notice)
	case evMixResult:
		return checkStrings(e.notice)
	case evMixEvent:
		return checkStrings(e.event)
	case evStartAnswered:
		if len(e.streams) > peerMaxList {
			return fmt.Errorf("too many streams")
		}
		for _, s := range e.streams {
			if err := checkID("streams", s, true); err != nil {
				return err
			}
		}
		if e.err != nil {
			return checkText("message", e.err.Message, peerMaxField)
		}
		return checkText("id", e.id, peerMaxField)
	case evStopAnswered:
		if e.err != nil {
			return checkText("message", e.err.Message, peerMaxField)
		}
	}
	return nil
}

// checkAnnounce confines the one push a peer may ask a room to send: the "accepted"
// message of the room's own call, to the room's own topic.
func checkAnnounce(req PeerRequest, e evAnnounceCall) error {
	if req.Kind != PeerRoom {
		return fmt.Errorf("announceCall is for a room")
	}
	if err := checkID("callId", e.callID, true); err != nil {
		return err
	}
	p := e.push
	if p.topic != req.ID {
		return fmt.Errorf("announceCall may push only to the room's own topic")
	}
	if p.typ != pushAcceptedTy || p.importance != pushAcceptedIm {
		return fmt.Errorf("announceCall pushes only the accepted message")
	}
	if err := checkID("tag", p.tag, true); err != nil {
		return err
	}
	raw, ok := p.data.(json.RawMessage)
	if !ok || len(raw) > peerMaxPush || !json.Valid(raw) {
		return fmt.Errorf("announceCall data is not a JSON object of at most %d bytes", peerMaxPush)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return fmt.Errorf("announceCall data is not a JSON object")
	}
	return nil
}

func checkUser(u User) error {
	if err := checkID("uid", u.ID, true); err != nil {
		return err
	}
	return checkText("name", u.Name, peerMaxName)
}

// checkStrings checks every text field of a notice (structs of strings, ints and bools).
func checkStrings(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, f := range m {
		if s, ok := f.(string); ok {
			if err := checkText(k, s, peerMaxField); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkID refuses an id that is too long, or has spaces or control characters.
func checkID(name, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("%s is missing", name)
		}
		return nil
	}
	if len(v) > peerMaxID || !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool {
		return unicode.IsControl(r) || unicode.IsSpace(r)
	}) >= 0 {
		return fmt.Errorf("%s is not a valid id", name)
	}
	return nil
}

// checkText refuses text longer than limit characters, not UTF-8, or with control
// characters other than tab and newline (as the API does).
func checkText(name, v string, limit int) error {
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > limit {
		return fmt.Errorf("%s is longer than %d characters or not UTF-8", name, limit)
	}
	if strings.IndexFunc(v, func(r rune) bool { return r != '\t' && r != '\n' && unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%s has control characters", name)
	}
	return nil
}

// capText shortens a value quoted in an error.
func capText(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	return strings.ToValidUTF8(s, "?")
}
