package actors

import "time"

// This file is the room state machine of docs/state-machines.md, written as a pure function:
// (room, event, now) → (room', effects, reply). It does no I/O and knows nothing of actors, so
// the same code runs in the room actor and in table-driven tests without goroutines.

// RoomConfig holds the timings of a room's life and where its mix readiness comes from.
type RoomConfig struct {
	NoPublishTimeout time.Duration
	TopicDeleteDelay time.Duration
	// MixReadyOnPublish makes a room ready to be mixed (isMixReady, and the call's readiness
	// input) once its stream publishes, as the Live API's CreateMixStream needs (mix:
	// aliyun-live). Otherwise readiness is Aliyun's mix-available callback (mix: aliyun,
	// simulator), and that callback is the only source of it.
	MixReadyOnPublish bool
}

// Events a room reacts to. Commands carry what the room needs to know about the world (the
// acting user, already resolved by the user registry).
type (
	evCreate struct {
		room Room // the initial snapshot: ID, UID, Name, Description, Type, Status, PushURL
	}
	evPlay struct {
		member    User
		userKnown bool
	}
	evAudienceLeave struct{ uid string }
	evLeave         struct{}
	evComment       struct {
		user      User
		userKnown bool
		text      string
	}
	evLike struct {
		user      User
		userKnown bool
	}
	evPublish        struct{}
	evPublishDone    struct{}
	evMixAvailable   struct{}
	evNoPublishDue   struct{}
	evTopicDeleteDue struct{}
	// evJoinCall puts the room in a call; a room is in at most one call.
	evJoinCall struct {
		callID    string
		hostRooms []string
	}
	// evLeaveCall takes the room out of its call; a co-stream room made for the call ends.
	// peer is the call's other room when the call ran (empty when an admission failed).
	evLeaveCall struct{ callID, peer string }
	// evCallFlags sets the mix flags the call decides (nil = unchanged).
	evCallFlags struct {
		callID      string
		mixed       *bool
		mixedStatus *int
	}
	// evAnnounceCall has the room push its call's "accepted" message (type 2) if it is still
	// live and in that call; otherwise it is refused (2003) and the admission is undone.
	evAnnounceCall struct {
		callID string
		push   outPush
	}
	// queryRoom reads the room; it changes nothing.
	queryRoom struct{}
	// evRoomMixResult is a MixResult callback for a room that is in no call.
	evRoomMixResult struct{ notice MixResultNotice }
)

// outPush is a push message the room sends (to its own topic unless topic is set).
type outPush struct {
	topic      string
	tag        string
	importance int
	typ        int
	data       any
}

// roomStep is the outcome of one event.
type roomStep struct {
	next   Room
	exists bool // the room exists after the step (an ended room still exists as a tombstone)
	// Durable effects, performed before anything else; if they fail the step is discarded.
	save           bool // persist next
	remove         bool // delete the snapshot and audience
	audienceAdd    *User
	audienceRemove string
	// In-memory and outbound effects, performed only after the durable ones succeeded.
	clearAudience bool
	pushes        []outPush
	createTopic   bool
	deleteTopic   bool
	stop          bool // the room is gone for good: the actor may stop
	// notifyCall is an event for the call the room is in (mix-ready, or the room ended).
	notifyCall *callRequest
	// The answer to a command: err, or result (nil result means an empty success).
	err    *Error
	result any
}

// stepRoom applies ev to the room. exists is false before creation and after removal.
// isMember tells whether a uid is in the audience (the audience set lives in the actor).
func stepRoom(cfg RoomConfig, r Room, exists bool, isMember func(string) bool, ev roomEvent, now time.Time) roomStep {
	st := roomStep{next: r, exists: exists}
	live := exists && !r.Ended()

	switch e := ev.(type) {
	case evCreate:
		if exists {
			st.err = Errorf(CodeBadState, "房间%s已存在", r.ID)
			return st
		}
		st.next = e.room
		st.next.NoPublishDeadline = now.Add(cfg.NoPublishTimeout)
		st.exists, st.save, st.createTopic = true, true, true
		st.result = st.next

	case evPlay:
		switch {
		case !live:
			st.err = ErrNoSuchRoom(r.ID)
		case !e.userKnown:
			st.err = ErrNoSuchUser(e.member.ID)
		default:
			if !isMember(e.member.ID) {
				m := e.member
				st.audienceAdd = &m
			}
			st.result = e.member
		}

	case evAudienceLeave:
		// Leaving a room one is not in (or that is gone) is a success: the client's goal holds.
		if live && isMember(e.uid) {
			st.audienceRemove = e.uid
		}

	case evLeave:
		if !live {
			st.err = ErrNoSuchRoom(r.ID)
			return st
		}
		st = endRoom(cfg, st, now)

	case evComment:
		switch {
		case !live:
			st.err = ErrNoSuchRoom(r.ID)
		case !e.userKnown:
			st.err = ErrNoSuchUser(e.user.ID)
		default:
			st.pushes = []outPush{{tag: r.ID, importance: 8, typ: 6,
				data: commentData{UID: e.user.ID, Name: e.user.Name, Comment: e.text}}}
		}

	case evLike:
		switch {
		case !live:
			st.err = ErrNoSuchRoom(r.ID)
		case !e.userKnown:
			st.err = ErrNoSuchUser(e.user.ID)
		default:
			st.pushes = []outPush{{tag: r.ID, importance: 9, typ: 7,
				data: likeData{UID: e.user.ID, Name: e.user.Name}}}
		}

	case evPublish:
		if live && cfg.MixReadyOnPublish {
			// In this mode a publish is the room's readiness input too (a repeat tells the
			// call again: after a failed Start, that is what retries it).
			st = mixReady(st)
		}
		// Repeated publish notifications change nothing else and push nothing.
		if !live || r.Publishing {
			return st
		}
		st.next.Publishing = true
		if r.Status == StatusCreated {
			st.next.Status = StatusPublishing
		}
		st.next.NoPublishDeadline = time.Time{}
		st.save = true
		st.pushes = streamPushes(r, 9)

	case evPublishDone:
		// publish_done for a room that is not publishing (repeated, or arriving before its
		// publish) is ignored, so the no-publish deadline is not pushed back by duplicates.
		if !live || !r.Publishing {
			return st
		}
		st.next.Publishing = false
		if r.Status == StatusPublishing {
			st.next.Status = StatusCreated
		}
		st.next.NoPublishDeadline = now.Add(cfg.NoPublishTimeout)
		st.save = true
		st.pushes = streamPushes(r, 10)

	case evMixAvailable:
		// Readiness from publish: the mix-available callback is accepted and changes nothing.
		if !live || cfg.MixReadyOnPublish {
			return st
		}
		st = mixReady(st)

	case evJoinCall:
		switch {
		case !live:
			st.err = ErrNoSuchRoom(r.ID)
		case r.CallID == e.callID:
			st.result = r // repeated join: already in
		case r.CallID != "":
			st.err = ErrInCall(r.ID)
		default:
			st.next.CallID, st.next.CallHostRooms = e.callID, e.hostRooms
			st.next.EndedCallPeer = ""
			st.save, st.result = true, st.next
		}

	case evLeaveCall:
		if !live || r.CallID != e.callID {
			return st
		}
		st.next.CallID, st.next.CallHostRooms = "", nil
		st.next.IsMixed, st.next.MixedStatus = false, 0
		st.next.EndedCallPeer = e.peer
		st.save = true
		if r.Status == StatusCostream {
			st = endRoom(cfg, st, now) // the room existed only for the call: it ends with it
		}

	case evRoomMixResult:
		key := mixResultKey(e.notice)
		if !live || r.LastMixResult == key || r.fromEndedCall(e.notice) {
			return st
		}
		st.next.LastMixResult, st.save = key, true
		st.next.MixedStatus = mixedStatusOf(e.notice.Code)
		if r.Type == TypeHost {
			st.pushes = []outPush{{topic: r.ID, tag: r.ID, importance: 5, typ: 16, data: mixStatusOf(e.notice)}}
		}

	case evAnnounceCall:
		// Only the room's own topic: a call announces to the rooms it holds, nowhere else.
		if !live || r.CallID != e.callID || e.push.topic != r.ID {
			st.err = ErrNoSuchRoom(r.ID)
			return st
		}
		st.pushes = []outPush{e.push}

	case evCallFlags:
		if !live || r.CallID != e.callID {
			return st
		}
		if e.mixed != nil && *e.mixed != r.IsMixed {
			st.next.IsMixed, st.save = *e.mixed, true
		}
		if e.mixedStatus != nil && *e.mixedStatus != r.MixedStatus {
			st.next.MixedStatus, st.save = *e.mixedStatus, true
		}

	case evNoPublishDue:
		// A timer may fire late, early (fake clocks) or after the deadline was cleared by a
		// publish: only a deadline that is set and reached ends the room.
		if !live || r.NoPublishDeadline.IsZero() || now.Before(r.NoPublishDeadline) {
			return st
		}
		st.pushes = []outPush{{topic: r.ID, tag: r.ID, importance: 5, typ: 8, data: roomEndedData{RoomID: r.ID}}}
		st.remove, st.clearAudience, st.deleteTopic, st.stop = true, true, true, true
		st.exists = false
		if r.CallID != "" {
			st.notifyCall = &callRequest{callID: r.CallID, ev: evCallClose{roomID: r.ID, roomEnded: true}, from: r.ID}
		}

	case evTopicDeleteDue:
		if !exists || !r.Ended() || r.TopicDeleteDeadline.IsZero() || now.Before(r.TopicDeleteDeadline) {
			return st
		}
		st.remove, st.deleteTopic, st.stop = true, true, true
		st.exists = false
	}
	return st
}

// mixReady is the room's readiness input (mix-available, or publish with
// MixReadyOnPublish): isMixReady is set, and the call the room is in is told.
func mixReady(st roomStep) roomStep {
	r := st.next
	if r.CallID != "" {
		// The call dedupes repeats itself; telling it every time heals a lost notice.
		st.notifyCall = &callRequest{callID: r.CallID, ev: evCallMixReady{roomID: r.ID}, from: r.ID}
	}
	if !r.IsMixReady {
		st.next.IsMixReady, st.save = true, true
	}
	return st
}

// endRoom is the host leaving: the room ends at once for clients, and its snapshot stays as
// a tombstone that carries the topic-deletion deadline across restarts.
func endRoom(cfg RoomConfig, st roomStep, now time.Time) roomStep {
	r := st.next
	st.next.Status = StatusEnded
	st.next.Publishing = false
	st.next.NoPublishDeadline = time.Time{}
	st.next.TopicDeleteDeadline = now.Add(cfg.TopicDeleteDelay)
	st.save, st.clearAudience = true, true
	st.pushes = []outPush{{topic: r.ID, tag: r.ID, importance: 5, typ: 8, data: roomEndedData{RoomID: r.ID}}}
	if r.CallID != "" {
		st.notifyCall = &callRequest{callID: r.CallID, ev: evCallClose{roomID: r.ID, roomEnded: true}, from: r.ID}
	}
	return st
}

// streamPushes are the publish (9) / publish_done (10) pushes: to every host room of the
// room's call, or to the room itself when it is in none.
func streamPushes(r Room, typ int) []outPush {
	data := streamData{UID: r.UID, Name: r.Name, RoomID: r.ID}
	topics := r.CallHostRooms
	if r.CallID == "" || len(topics) == 0 {
		topics = []string{r.ID}
	}
	out := make([]outPush, 0, len(topics))
	for _, t := range topics {
		out = append(out, outPush{topic: t, tag: t, importance: 5, typ: typ, data: data})
	}
	return out
}
