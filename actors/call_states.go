package actors

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// This file is the co-streaming call state machine of docs/state-machines.md: a pure function
// (call, event) → (call', effects). The call actor performs the effects; Start and Stop run
// off its mailbox and come back as evStartAnswered / evStopAnswered.

// DefaultLayout is the mix layout (MixTemplate) of a call whose invitation named none.
const DefaultLayout = "picture_in_picture"

// Call phases.
const (
	PhaseWaiting  = "waiting"  // accepted; waiting for both rooms' mix streams
	PhaseStarting = "starting" // Start sent for every host side, answers pending
	PhaseMixed    = "mixed"    // every host side's Start succeeded
	PhaseFailed   = "failed"   // a Start failed; a later mix-available (even a repeat) retries
	PhaseClosing  = "closing"  // closed by a client or a room's end; Stops pending
	PhaseClosed   = "closed"   // over: rooms released, snapshot deleted
)

// Mix leg states.
const (
	legIdle     = ""
	legStarting = "starting"
	legStarted  = "started"
	legFailed   = "failed"
	legStopping = "stopping"
	legStopped  = "stopped"
)

// CallSide is one participant of a call.
type CallSide struct {
	RoomID string `json:"roomId"`
	UID    string `json:"uid"`
	Name   string `json:"name"`
	Type   int    `json:"type"` // 1 viewer (in a co-stream room made for the call), 2 host
	Ready  bool   `json:"ready"`
	// Announced is true once push 17 went out for this room in this call.
	Announced bool `json:"announced,omitempty"`
}

// MixLeg is one CDN mix: one per host side (docs/aliyun.md, What each driver sends), main = that host's room.
type MixLeg struct {
	Main    string   `json:"main"`
	Mix     string   `json:"mix"`
	State   string   `json:"state"`
	Attempt int      `json:"attempt"` // tags each Start/Stop so stale answers are ignored
	Streams []string `json:"streams,omitempty"`
	Code    int      `json:"code,omitempty"`
	Message string   `json:"message,omitempty"`
	// Ran is true once this leg's Start succeeded; a Stop is owed for it.
	Ran bool `json:"ran,omitempty"`
	// Unsure is true when the last Start failed without a definite refusal (a timeout, an
	// outage, an internal error): the CDN may be mixing anyway, so closing the call stops
	// this leg too rather than leave a mix running that nobody owns.
	Unsure bool `json:"unsure,omitempty"`
	// MixID is the id the last successful Start answered (the Live API's MixStreamId), so a
	// Stop after a restart, or from another node, deletes that mix. Empty for drivers
	// without ids and for an unsure Start (the driver then finds the mix itself).
	MixID string `json:"mixId,omitempty"`
}

// Call is the durable snapshot of a co-streaming call.
type Call struct {
	ID      string   `json:"id"`
	Layout  string   `json:"layout"`
	Inviter CallSide `json:"inviter"`
	Invitee CallSide `json:"invitee"`
	Phase   string   `json:"phase"`
	Legs    []MixLeg `json:"legs"`
	// Results hold the last MixResult code applied per (main, mix) pair, as main|mix|code:
	// a redelivery of it is a no-op, a different code (Success after a failure) applies.
	Results []string `json:"results,omitempty"`
	// Closer is the room whose close ended the call (the roomId of pushes 4 and 15).
	Closer string `json:"closer,omitempty"`
	// EndedRoom is a room whose end closed the call: it gets no more pushes.
	EndedRoom  string    `json:"endedRoom,omitempty"`
	CreateTime time.Time `json:"createTime"`
}

// hostRooms are the rooms of the call that are host rooms: call-wide pushes go there.
func (c *Call) hostRooms() []string {
	var out []string
	for _, s := range []CallSide{c.Inviter, c.Invitee} {
		if s.Type == TypeHost {
			out = append(out, s.RoomID)
		}
	}
	return out
}

// liveHostRooms are the host rooms minus one that ended.
func (c *Call) liveHostRooms() []string {
	return slices.DeleteFunc(c.hostRooms(), func(r string) bool { return r == c.EndedRoom })
}

func (c *Call) side(roomID string) *CallSide {
	switch roomID {
	case c.Inviter.RoomID:
		return &c.Inviter
	case c.Invitee.RoomID:
		return &c.Invitee
	}
	return nil
}

// newCall builds an accepted call and its legs: inviterType 2 → Start(main=inviter,
// mix=invitee); inviteeType 2 → Start(main=invitee, mix=inviter).
func newCall(id, layout string, inviter, invitee CallSide, now time.Time) Call {
	if layout == "" {
		layout = DefaultLayout
	}
	c := Call{ID: id, Layout: layout, Inviter: inviter, Invitee: invitee, Phase: PhaseWaiting, CreateTime: now}
	if inviter.Type == TypeHost {
		c.Legs = append(c.Legs, MixLeg{Main: inviter.RoomID, Mix: invitee.RoomID})
	}
	if invitee.Type == TypeHost {
		c.Legs = append(c.Legs, MixLeg{Main: invitee.RoomID, Mix: inviter.RoomID})
	}
	return c
}

// Call events.
type (
	evCallMixReady  struct{ roomID string }
	evStartAnswered struct {
		leg, attempt int
		streams      []string
		id           string // MixStarted.ID
		err          *Error
	}
	evStopAnswered struct {
		leg, attempt int
		err          *Error
	}
	evMixResult struct{ notice MixResultNotice }
	// evMixEvent is a Live API mix callback (/ali/mix/callback) for one of the call's mixes.
	evMixEvent struct{ event MixEvent }
	// evCallStart starts the mix right after admission if both rooms were already ready.
	evCallStart struct{}
	// evCallClose ends the call: from /videocall/close (roomEnded false) or because one of
	// its rooms ended (roomEnded true: that room gets no more pushes).
	evCallClose struct {
		roomID    string
		roomEnded bool
	}
)

// Call effects, performed by the actor in this order after the snapshot is saved.
type (
	callPush struct {
		topic, tag      string
		importance, typ int
		data            any
	}
	mixCall struct {
		leg, attempt int
		start        bool
		req          MixRequest
	}
	// roomFlag updates a room's mix flags (isMixed, mixedStatus) while it is in the call.
	roomFlag struct {
		roomID      string
		mixed       *bool
		mixedStatus *int
	}
)

type callStep struct {
	next    Call
	changed bool // save the snapshot
	pushes  []callPush
	mixes   []mixCall
	flags   []roomFlag
	// release frees the rooms from the call (co-stream rooms end) and deletes the call.
	release bool
	mixURL  func(string) string
}

// stepCall applies ev to the call. mixURL turns a mix stream name into its play URL.
func stepCall(c Call, ev callEvent, mixURL func(stream string) string) callStep {
	st := callStep{next: cloneCall(c), mixURL: mixURL}
	n := &st.next
	if n.Phase == PhaseClosed {
		return st
	}
	switch e := ev.(type) {
	case evCallMixReady:
		s := n.side(e.roomID)
		if s == nil {
			return st
		}
		// A repeat is a redelivery, except after a failed Start: then it means the stream is
		// available (again) and the mix is retried.
		if (s.Announced && n.Phase != PhaseFailed) || n.Phase == PhaseClosing {
			return st
		}
		s.Ready, st.changed = true, true
		announce(&st, s)
		if n.Phase == PhaseWaiting || n.Phase == PhaseFailed {
			startIfReady(&st)
		}

	case evCallStart:
		// Right after admission: a room whose stream was mix-ready before the call gets its
		// 17 now, so every call announces each room once whatever the order.
		for _, s := range []*CallSide{&n.Inviter, &n.Invitee} {
			if s.Ready && !s.Announced {
				st.changed = true
				announce(&st, s)
			}
		}
		if n.Phase == PhaseWaiting {
			startIfReady(&st)
		}

	case evStartAnswered:
		leg := n.answeredLeg(e.leg, e.attempt, legStarting)
		if leg == nil {
			return st // stale or duplicate answer
		}
		st.changed = true
		if e.err != nil {
			leg.State, leg.Code, leg.Message = legFailed, e.err.Code, e.err.Message
			leg.Unsure = startOutcomeUnknown(e.err)
		} else {
			leg.State, leg.Streams, leg.Ran, leg.MixID = legStarted, e.streams, true, e.id
		}
		switch n.Phase {
		case PhaseStarting:
			settleStart(&st)
		case PhaseClosing:
			if e.err == nil || leg.Unsure {
				stopLeg(&st, e.leg) // closed while Start was in flight: Stop after Start
			}
			finishClose(&st)
		}

	case evStopAnswered:
		leg := n.answeredLeg(e.leg, e.attempt, legStopping)
		if leg == nil {
			return st
		}
		// A Stop that failed for good is recorded; the call still ends (the actor already
		// retried it with backoff).
		leg.State, leg.Unsure, st.changed = legStopped, false, true
		if e.err != nil {
			leg.Code, leg.Message = e.err.Code, e.err.Message
		}
		if n.Phase == PhaseClosing {
			finishClose(&st)
		}

	case evMixResult:
		applyMixResult(&st, e.notice, 16, mixStatusOf(e.notice))

	case evMixEvent:
		leg := n.legOf(e.event)
		if leg == nil {
			return st
		}
		// As a MixResult of the leg's pair: a repeat changes nothing; a recognised failure
		// is push 14 (mixedStatus 0), anything else push 16.
		notice := MixResultNotice{MainMixStream: leg.Main, MixStream: leg.Mix, MixTemplate: n.Layout,
			Event: e.event.Event, Code: e.event.Code, Message: e.event.Message}
		if !e.event.Failed {
			applyMixResult(&st, notice, 16, mixStatusOf(notice))
			break
		}
		notice.Code = "failed:" + cmp.Or(notice.Code, notice.Event) // never Success: mixedStatus 0
		applyMixResult(&st, notice, 14, mixFailedData{mixParties: parties(n),
			Message: mixError{Code: cmp.Or(e.event.ErrCode, CodeMixFailed), Message: e.event.Message}})

	case evCallClose:
		if n.Phase == PhaseClosing {
			return st // closing already
		}
		n.Closer, n.Phase, st.changed = e.roomID, PhaseClosing, true
		if e.roomEnded {
			n.EndedRoom = e.roomID
		}
		data := closeData(n, e.roomID)
		for _, topic := range n.liveHostRooms() {
			st.pushes = append(st.pushes, callPush{topic: topic, tag: topic, importance: 5, typ: 4, data: data})
		}
		for i, leg := range n.Legs {
			if leg.State == legStarted || (leg.State == legFailed && leg.Unsure) {
				stopLeg(&st, i)
			}
		}
		finishClose(&st)
	}
	return st
}

// applyMixResult records a MixResult-like notice of a (main, mix) pair; unless it repeats
// the pair's last code, it sets mixedStatus on both rooms (1 on Success) and pushes typ with
// data to each live host room.
func applyMixResult(st *callStep, notice MixResultNotice, typ int, data any) {
	n := &st.next
	if !n.recordResult(notice) {
		return
	}
	st.changed = true
	status := mixedStatusOf(notice.Code)
	for _, r := range []string{n.Inviter.RoomID, n.Invitee.RoomID} {
		st.flags = append(st.flags, roomFlag{roomID: r, mixedStatus: &status})
	}
	for _, topic := range n.liveHostRooms() {
		st.pushes = append(st.pushes, callPush{topic: topic, tag: topic, importance: 5, typ: typ, data: data})
	}
}

// legOf is the leg a mix callback is about: by its MixStreamId, else by its main room.
func (c *Call) legOf(ev MixEvent) *MixLeg {
	for i := range c.Legs {
		if (ev.MixID != "" && c.Legs[i].MixID == ev.MixID) || (ev.MixID == "" && c.Legs[i].Main == ev.MainRoom) {
			return &c.Legs[i]
		}
	}
	return nil
}

// answeredLeg is the leg an answer is for, or nil when the answer is stale or repeated: the
// leg is not waiting for it (state) or a later attempt was made since.
func (c *Call) answeredLeg(i, attempt int, state string) *MixLeg {
	if i < 0 || i >= len(c.Legs) || c.Legs[i].State != state || c.Legs[i].Attempt != attempt {
		return nil
	}
	return &c.Legs[i]
}

// startOutcomeUnknown reports whether a failed Start may still have started the mix: only
// Aliyun's definite refusals (InvalidArgument, NoSuchStream) say it did not.
func startOutcomeUnknown(err *Error) bool {
	return err.Code != CodeMixInvalidArg && err.Code != CodeMixNoSuchStream
}

// recordResult keeps n's code as the last one of its (main, mix) pair and reports whether it
// differs from the one recorded before.
func (c *Call) recordResult(n MixResultNotice) bool {
	key := mixResultKey(n)
	pair := key[:len(key)-len(n.Code)]
	for i, r := range c.Results {
		if strings.HasPrefix(r, pair) {
			if r == key {
				return false
			}
			c.Results[i] = key
			return true
		}
	}
	c.Results = append(c.Results, key)
	return true
}

// announce pushes 17 (the room's mix stream is available) to the call's live host rooms.
func announce(st *callStep, s *CallSide) {
	s.Announced = true
	for _, topic := range st.next.liveHostRooms() {
		st.pushes = append(st.pushes, callPush{topic: topic, tag: topic, importance: 5, typ: 17,
			data: mixAvailableData{RoomID: s.RoomID, Type: s.Type}})
	}
}

// startIfReady sends Start for every leg not running yet once both rooms are mix-ready.
func startIfReady(st *callStep) {
	n := &st.next
	if !n.Inviter.Ready || !n.Invitee.Ready || len(n.Legs) == 0 {
		return
	}
	n.Phase, st.changed = PhaseStarting, true
	for i := range n.Legs {
		leg := &n.Legs[i]
		if leg.State == legStarted {
			continue
		}
		// After an unsure Start the mix may exist: the driver adopts it rather than make a second.
		adopt := leg.Unsure
		leg.State, leg.Code, leg.Message, leg.Unsure, leg.MixID = legStarting, 0, "", false, ""
		leg.Attempt++
		st.mixes = append(st.mixes, mixCall{leg: i, attempt: leg.Attempt, start: true,
			req: MixRequest{MainStream: leg.Main, MixStream: leg.Mix, Template: n.Layout, Adopt: adopt}})
	}
}

// settleStart decides the outcome once every leg's Start has answered.
func settleStart(st *callStep) {
	n := &st.next
	var failed *MixLeg
	for i := range n.Legs {
		switch n.Legs[i].State {
		case legStarting:
			return // still waiting
		case legFailed:
			if failed == nil {
				failed = &n.Legs[i]
			}
		}
	}
	if failed == nil {
		n.Phase = PhaseMixed
		mixed := true
		for _, r := range []string{n.Inviter.RoomID, n.Invitee.RoomID} {
			st.flags = append(st.flags, roomFlag{roomID: r, mixed: &mixed})
		}
		data := mixSucceededData{mixParties: parties(n),
			InviterMixPlayUrls: mixURLs(st, n.Inviter.RoomID), InviteeMixPlayUrls: mixURLs(st, n.Invitee.RoomID)}
		for _, topic := range n.liveHostRooms() {
			st.pushes = append(st.pushes, callPush{topic: topic, tag: topic, importance: 5, typ: 5, data: data})
		}
		return
	}
	n.Phase = PhaseFailed
	data := mixFailedData{mixParties: parties(n), Message: mixError{Code: failed.Code, Message: failed.Message}}
	for _, topic := range n.liveHostRooms() {
		st.pushes = append(st.pushes, callPush{topic: topic, tag: topic, importance: 5, typ: 14, data: data})
	}
	// A half-started mix is not left running: stop the legs that did start.
	for i := range n.Legs {
		if n.Legs[i].State == legStarted {
			stopLeg(st, i)
		}
	}
}

func stopLeg(st *callStep, i int) {
	leg := &st.next.Legs[i]
	leg.State = legStopping
	leg.Attempt++
	st.mixes = append(st.mixes, mixCall{leg: i, attempt: leg.Attempt,
		req: MixRequest{MainStream: leg.Main, MixStream: leg.Mix, MixID: leg.MixID}})
}

// finishClose ends a closing call once no Start or Stop is outstanding: push 15 if a mix
// ran, clear isMixed, release the rooms.
func finishClose(st *callStep) {
	n := &st.next
	ran := false
	for _, leg := range n.Legs {
		if leg.State == legStarting || leg.State == legStopping {
			return
		}
		ran = ran || leg.Ran
	}
	n.Phase, st.changed, st.release = PhaseClosed, true, true
	if ran {
		data := closeData(n, n.Closer)
		for _, topic := range n.liveHostRooms() {
			st.pushes = append(st.pushes, callPush{topic: topic, tag: topic, importance: 5, typ: 15, data: data})
		}
	}
	mixed := false
	for _, r := range []string{n.Inviter.RoomID, n.Invitee.RoomID} {
		st.flags = append(st.flags, roomFlag{roomID: r, mixed: &mixed})
	}
}

// mixURLs are the play URLs of the mix whose main stream is main ([] when that side is a
// viewer, who has no mix of its own).
func mixURLs(st *callStep, main string) []string {
	urls := []string{}
	for _, leg := range st.next.Legs {
		if leg.Main == main {
			for _, s := range leg.Streams {
				urls = append(urls, st.mixURL(s))
			}
		}
	}
	return urls
}

func cloneCall(c Call) Call {
	c.Legs = slices.Clone(c.Legs)
	c.Results = slices.Clone(c.Results)
	return c
}

// Push payloads of calls (key spelling as the old server sent them).
type (
	mixAvailableData struct {
		RoomID string `json:"roomId"`
		Type   int    `json:"type"`
	}
	mixStatusData struct {
		MainMixRoomID string `json:"mainMixRoomId"`
		MixRoomID     string `json:"mixRoomId"`
		MixType       string `json:"mixType"`
		MixTemplate   string `json:"mixTemplate"`
		Event         string `json:"event"`
		Message       string `json:"message"`
		Code          string `json:"code"`
	}
	callEndedData struct {
		RoomID         string `json:"roomId"`
		UID            string `json:"uid"`
		Name           string `json:"name"`
		NotifiedRoomID string `json:"notifiedRoomId"`
		NotifiedUID    string `json:"notifiedUid"`
		NotifiedName   string `json:"notifiedName"`
	}
	mixParties struct {
		InviterRoomid string `json:"inviterRoomid"`
		InviteeRoomid string `json:"inviteeRoomid"`
		InviterUID    string `json:"inviterUid"`
		InviterName   string `json:"inviterName"`
		InviteeUID    string `json:"inviteeUid"`
		InviteeName   string `json:"inviteeName"`
		InviterType   int    `json:"inviterType"`
		InviteeType   int    `json:"inviteeType"`
	}
	mixSucceededData struct {
		mixParties
		InviterMixPlayUrls []string `json:"inviterMixPlayUrls"`
		InviteeMixPlayUrls []string `json:"inviteeMixPlayUrls"`
	}
	mixError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	mixFailedData struct {
		mixParties
		Message mixError `json:"message"`
	}
)

// mixResultKey identifies a MixResult callback, so a repeat is recognised.
func mixResultKey(n MixResultNotice) string {
	return n.MainMixStream + "|" + n.MixStream + "|" + n.Code
}

// mixedStatusOf is the mixedStatus a MixResult code sets: 1 on Success, else 0.
func mixedStatusOf(code string) int {
	if code == "Success" {
		return 1
	}
	return 0
}

// mixStatusOf is the body of push 16.
func mixStatusOf(n MixResultNotice) mixStatusData {
	return mixStatusData{MainMixRoomID: n.MainMixStream, MixRoomID: n.MixStream, MixType: n.MixType,
		MixTemplate: n.MixTemplate, Event: n.Event, Message: n.Message, Code: n.Code}
}

func parties(c *Call) mixParties {
	return mixParties{InviterRoomid: c.Inviter.RoomID, InviteeRoomid: c.Invitee.RoomID,
		InviterUID: c.Inviter.UID, InviterName: c.Inviter.Name, InviteeUID: c.Invitee.UID, InviteeName: c.Invitee.Name,
		InviterType: c.Inviter.Type, InviteeType: c.Invitee.Type}
}

// closeData is the body of pushes 4 and 15: the closing room and the other one.
func closeData(c *Call, closer string) callEndedData {
	me, other := c.Inviter, c.Invitee
	if closer == c.Invitee.RoomID {
		me, other = c.Invitee, c.Inviter
	}
	return callEndedData{RoomID: me.RoomID, UID: me.UID, Name: me.Name,
		NotifiedRoomID: other.RoomID, NotifiedUID: other.UID, NotifiedName: other.Name}
}
