package actors

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	testCfg = RoomConfig{NoPublishTimeout: 180 * time.Second, TopicDeleteDelay: 60 * time.Second}
	// publishCfg takes mix readiness from publish (mix: aliyun-live).
	publishCfg = RoomConfig{NoPublishTimeout: 180 * time.Second, TopicDeleteDelay: 60 * time.Second, MixReadyOnPublish: true}
	t0         = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
)

// roomIn builds a room in one of the states of the table in docs/state-machines.md.
func roomIn(state string) (Room, bool) {
	base := Room{ID: "abcdef0123", UID: "1", Name: "alice", Type: TypeHost, CreateTime: t0,
		NoPublishDeadline: t0.Add(testCfg.NoPublishTimeout)}
	switch state {
	case "none":
		return Room{ID: base.ID}, false
	case "created":
		return base, true
	case "publishing":
		base.Status, base.Publishing, base.NoPublishDeadline = StatusPublishing, true, time.Time{}
		return base, true
	case "costream":
		base.Status, base.Type = StatusCostream, TypeViewer
		return base, true
	case "costream-publishing":
		base.Status, base.Type, base.Publishing, base.NoPublishDeadline = StatusCostream, TypeViewer, true, time.Time{}
		return base, true
	case "ended":
		base.Status, base.NoPublishDeadline, base.TopicDeleteDeadline = StatusEnded, time.Time{}, t0.Add(testCfg.TopicDeleteDelay)
		return base, true
	}
	panic("unknown state " + state)
}

// stateOf names the state a room is in after a step.
func stateOf(r Room, exists bool) string {
	switch {
	case !exists:
		return "none"
	case r.Status == StatusEnded:
		return "ended"
	case r.Status == StatusCostream && r.Publishing:
		return "costream-publishing"
	case r.Status == StatusCostream:
		return "costream"
	case r.Publishing:
		return "publishing"
	}
	return "created"
}

// expect is one cell: the next state, the durable effect, the push types and the error code.
type expect struct {
	next    string
	durable string // "", "save", "remove", "add", "rm"
	pushes  []int
	err     int
	topic   string // "", "create", "delete"
}

func TestRoomStateTable(t *testing.T) {
	member := User{ID: "7", Name: "carol"}
	newcomer := User{ID: "8", Name: "dave"}
	events := []struct {
		name string
		ev   roomEvent
		at   time.Duration // time since t0 when the event happens
		cfg  *RoomConfig   // nil: testCfg (readiness from mix-available)
	}{
		{"create", evCreate{room: Room{ID: "abcdef0123", UID: "1", Name: "alice", Type: TypeHost, CreateTime: t0}}, 0, nil},
		{"play(new viewer)", evPlay{member: newcomer, userKnown: true}, time.Second, nil},
		{"play(member again)", evPlay{member: member, userKnown: true}, time.Second, nil},
		{"play(unknown user)", evPlay{member: User{ID: "999"}}, time.Second, nil},
		{"audience-leave(member)", evAudienceLeave{uid: member.ID}, time.Second, nil},
		{"audience-leave(stranger)", evAudienceLeave{uid: newcomer.ID}, time.Second, nil},
		{"leave", evLeave{}, time.Second, nil},
		{"comment", evComment{user: member, userKnown: true, text: "hi"}, time.Second, nil},
		{"comment(unknown user)", evComment{user: User{ID: "999"}, text: "hi"}, time.Second, nil},
		{"like", evLike{user: member, userKnown: true}, time.Second, nil},
		{"publish", evPublish{}, time.Second, nil},
		{"publish_done", evPublishDone{}, time.Second, nil},
		{"mix-available", evMixAvailable{}, time.Second, nil},
		{"no-publish-due(early)", evNoPublishDue{}, time.Minute, nil},
		{"no-publish-due", evNoPublishDue{}, testCfg.NoPublishTimeout, nil},
		{"topic-delete-due(early)", evTopicDeleteDue{}, time.Second, nil},
		{"topic-delete-due", evTopicDeleteDue{}, testCfg.TopicDeleteDelay, nil},
		{"mix-result outside a call", evRoomMixResult{notice: MixResultNotice{MainMixStream: "abcdef0123", MixStream: "x", Code: "Success"}}, time.Second, nil},
		// Readiness from publish: a publish also makes the room mix-ready (saved), even a
		// repeat; mix-available changes nothing.
		{"publish (ready on publish)", evPublish{}, time.Second, &publishCfg},
		{"mix-available (ready on publish)", evMixAvailable{}, time.Second, &publishCfg},
	}
	none := expect{next: "none", err: CodeNoSuchRoom}
	noneQuiet := expect{next: "none"}
	ended := expect{next: "ended", err: CodeNoSuchRoom}
	endedQuiet := expect{next: "ended"}
	// One row per state, one column per event above, in the same order.
	table := map[string][]expect{
		"none": {
			{next: "created", durable: "save", topic: "create"},
			none, none, none, noneQuiet, noneQuiet, none, none, none, none,
			noneQuiet, noneQuiet, noneQuiet, noneQuiet, noneQuiet, noneQuiet, noneQuiet,
			noneQuiet,
			noneQuiet, noneQuiet,
		},
		"created": {
			{next: "created", err: CodeBadState},
			{next: "created", durable: "add"},
			{next: "created"},
			{next: "created", err: CodeNoSuchUser},
			{next: "created", durable: "rm"},
			{next: "created"},
			{next: "ended", durable: "save", pushes: []int{8}},
			{next: "created", pushes: []int{6}},
			{next: "created", err: CodeNoSuchUser},
			{next: "created", pushes: []int{7}},
			{next: "publishing", durable: "save", pushes: []int{9}},
			{next: "created"},
			{next: "created", durable: "save"},
			{next: "created"},
			{next: "none", durable: "remove", pushes: []int{8}, topic: "delete"},
			{next: "created"},
			{next: "created"},
			{next: "created", durable: "save", pushes: []int{16}},
			{next: "publishing", durable: "save", pushes: []int{9}},
			{next: "created"},
		},
		"publishing": {
			{next: "publishing", err: CodeBadState},
			{next: "publishing", durable: "add"},
			{next: "publishing"},
			{next: "publishing", err: CodeNoSuchUser},
			{next: "publishing", durable: "rm"},
			{next: "publishing"},
			{next: "ended", durable: "save", pushes: []int{8}},
			{next: "publishing", pushes: []int{6}},
			{next: "publishing", err: CodeNoSuchUser},
			{next: "publishing", pushes: []int{7}},
			{next: "publishing"},
			{next: "created", durable: "save", pushes: []int{10}},
			{next: "publishing", durable: "save"},
			{next: "publishing"},
			{next: "publishing"},
			{next: "publishing"},
			{next: "publishing"},
			{next: "publishing", durable: "save", pushes: []int{16}},
			{next: "publishing", durable: "save"},
			{next: "publishing"},
		},
		"costream": {
			{next: "costream", err: CodeBadState},
			{next: "costream", durable: "add"},
			{next: "costream"},
			{next: "costream", err: CodeNoSuchUser},
			{next: "costream", durable: "rm"},
			{next: "costream"},
			{next: "ended", durable: "save", pushes: []int{8}},
			{next: "costream", pushes: []int{6}},
			{next: "costream", err: CodeNoSuchUser},
			{next: "costream", pushes: []int{7}},
			{next: "costream-publishing", durable: "save", pushes: []int{9}},
			{next: "costream"},
			{next: "costream", durable: "save"},
			{next: "costream"},
			{next: "none", durable: "remove", pushes: []int{8}, topic: "delete"},
			{next: "costream"},
			{next: "costream"},
			{next: "costream", durable: "save"},
			{next: "costream-publishing", durable: "save", pushes: []int{9}},
			{next: "costream"},
		},
		"costream-publishing": {
			{next: "costream-publishing", err: CodeBadState},
			{next: "costream-publishing", durable: "add"},
			{next: "costream-publishing"},
			{next: "costream-publishing", err: CodeNoSuchUser},
			{next: "costream-publishing", durable: "rm"},
			{next: "costream-publishing"},
			{next: "ended", durable: "save", pushes: []int{8}},
			{next: "costream-publishing", pushes: []int{6}},
			{next: "costream-publishing", err: CodeNoSuchUser},
			{next: "costream-publishing", pushes: []int{7}},
			{next: "costream-publishing"},
			{next: "costream", durable: "save", pushes: []int{10}},
			{next: "costream-publishing", durable: "save"},
			{next: "costream-publishing"},
			{next: "costream-publishing"},
			{next: "costream-publishing"},
			{next: "costream-publishing"},
			{next: "costream-publishing", durable: "save"},
			{next: "costream-publishing", durable: "save"},
			{next: "costream-publishing"},
		},
		"ended": {
			{next: "ended", err: CodeBadState},
			ended, ended, ended, endedQuiet, endedQuiet, ended, ended, ended, ended,
			endedQuiet, endedQuiet, endedQuiet, endedQuiet, endedQuiet, endedQuiet,
			{next: "none", durable: "remove", topic: "delete"},
			endedQuiet,
			endedQuiet, endedQuiet,
		},
	}
	for state, row := range table {
		if len(row) != len(events) {
			t.Fatalf("state %s: %d cells for %d events", state, len(row), len(events))
		}
		for i, ev := range events {
			want := row[i]
			t.Run(fmt.Sprintf("%s/%s", state, ev.name), func(t *testing.T) {
				r, exists := roomIn(state)
				isMember := func(uid string) bool { return uid == member.ID }
				cfg := testCfg
				if ev.cfg != nil {
					cfg = *ev.cfg
				}
				st := stepRoom(cfg, r, exists, isMember, ev.ev, t0.Add(ev.at))
				checkStep(t, st, want)
				if want.err == 0 && want.next != "none" && want.next != "ended" &&
					st.next.IsMixReady != (ev.name == "mix-available" || ev.name == "publish (ready on publish)") {
					t.Errorf("isMixReady = %v", st.next.IsMixReady)
				}
			})
		}
	}
}

func checkStep(t *testing.T, st roomStep, want expect) {
	t.Helper()
	gotErr := 0
	if st.err != nil {
		gotErr = st.err.Code
	}
	if gotErr != want.err {
		t.Fatalf("error code = %d, want %d (%v)", gotErr, want.err, st.err)
	}
	if st.err != nil {
		if st.save || st.remove || st.audienceAdd != nil || st.audienceRemove != "" || len(st.pushes) > 0 {
			t.Fatalf("a refused event has effects: %+v", st)
		}
		return
	}
	if got := stateOf(st.next, st.exists); got != want.next {
		t.Errorf("next state = %s, want %s", got, want.next)
	}
	durable := ""
	switch {
	case st.remove:
		durable = "remove"
	case st.save:
		durable = "save"
	case st.audienceAdd != nil:
		durable = "add"
	case st.audienceRemove != "":
		durable = "rm"
	}
	if durable != want.durable {
		t.Errorf("durable effect = %q, want %q", durable, want.durable)
	}
	var types []int
	for _, p := range st.pushes {
		types = append(types, p.typ)
	}
	if !slices.Equal(types, want.pushes) {
		t.Errorf("pushes = %v, want %v", types, want.pushes)
	}
	topic := ""
	if st.createTopic {
		topic = "create"
	}
	if st.deleteTopic {
		topic = "delete"
	}
	if topic != want.topic {
		t.Errorf("topic effect = %q, want %q", topic, want.topic)
	}
}

func TestRoomDeadlines(t *testing.T) {
	noMembers := func(string) bool { return false }
	r, _ := roomIn("none")
	st := stepRoom(testCfg, r, false, noMembers, evCreate{room: Room{ID: "x", Type: TypeHost}}, t0)
	if want := t0.Add(testCfg.NoPublishTimeout); !st.next.NoPublishDeadline.Equal(want) {
		t.Fatalf("create: no-publish deadline %v, want %v", st.next.NoPublishDeadline, want)
	}
	st = stepRoom(testCfg, st.next, true, noMembers, evPublish{}, t0.Add(10*time.Second))
	if !st.next.NoPublishDeadline.IsZero() || st.next.Status != StatusPublishing {
		t.Fatalf("publish must clear the deadline and set status 1: %+v", st.next)
	}
	// publish_done re-arms from the time it happens, not from creation.
	st = stepRoom(testCfg, st.next, true, noMembers, evPublishDone{}, t0.Add(100*time.Second))
	if want := t0.Add(100*time.Second + testCfg.NoPublishTimeout); !st.next.NoPublishDeadline.Equal(want) {
		t.Fatalf("publish_done: deadline %v, want %v", st.next.NoPublishDeadline, want)
	}
	// A duplicate publish_done must not push the deadline further.
	again := stepRoom(testCfg, st.next, true, noMembers, evPublishDone{}, t0.Add(150*time.Second))
	if !again.next.NoPublishDeadline.Equal(st.next.NoPublishDeadline) || again.save || len(again.pushes) > 0 {
		t.Fatalf("duplicate publish_done changed the room: %+v", again)
	}
	// The expiry racing a publish: the publish lands first, so the stale timer does nothing.
	pub := stepRoom(testCfg, st.next, true, noMembers, evPublish{}, st.next.NoPublishDeadline.Add(-time.Millisecond))
	late := stepRoom(testCfg, pub.next, true, noMembers, evNoPublishDue{}, st.next.NoPublishDeadline)
	if !late.exists || late.remove || len(late.pushes) > 0 {
		t.Fatalf("expiry after a publish ended the room: %+v", late)
	}
	// Leave sets the topic deletion deadline and clears the audience.
	left := stepRoom(testCfg, pub.next, true, noMembers, evLeave{}, t0.Add(200*time.Second))
	if want := t0.Add(200*time.Second + testCfg.TopicDeleteDelay); !left.next.TopicDeleteDeadline.Equal(want) || !left.clearAudience {
		t.Fatalf("leave: %+v", left)
	}
	// Leave twice: the second is refused with 2003 and changes nothing.
	twice := stepRoom(testCfg, left.next, true, noMembers, evLeave{}, t0.Add(201*time.Second))
	if twice.err == nil || twice.err.Code != CodeNoSuchRoom || len(twice.pushes) > 0 {
		t.Fatalf("second leave: %+v", twice)
	}
}

func TestRoomMixResultOutsideACall(t *testing.T) {
	r, _ := roomIn("publishing")
	n := MixResultNotice{MainMixStream: r.ID, MixStream: "bbbbbbbbbb", Code: "Success", Event: "MixResult"}
	st := stepRoom(testCfg, r, true, func(string) bool { return false }, evRoomMixResult{notice: n}, t0)
	if st.next.MixedStatus != 1 || !st.save || len(st.pushes) != 1 {
		t.Fatalf("first MixResult: %+v", st)
	}
	again := stepRoom(testCfg, st.next, true, func(string) bool { return false }, evRoomMixResult{notice: n}, t0)
	if again.save || len(again.pushes) != 0 {
		t.Fatalf("a repeated MixResult changed the room: %+v", again)
	}
	n.Code = "MainStreamNotExist"
	failed := stepRoom(testCfg, st.next, true, func(string) bool { return false }, evRoomMixResult{notice: n}, t0)
	if failed.next.MixedStatus != 0 || len(failed.pushes) != 1 {
		t.Fatalf("a failing MixResult: %+v", failed)
	}
}

// A MixResult that arrives after the room's call ended is about the mix that was stopped:
// it changes nothing, so close-then-Success ends where Success-then-close does (mixedStatus 0).
// A MixResult for another pair still applies, and joining a new call forgets the old peer.
func TestRoomMixResultAfterItsCallEnded(t *testing.T) {
	r, _ := roomIn("publishing")
	r.CallID, r.CallHostRooms, r.IsMixed, r.MixedStatus = "C", []string{r.ID, "bbbbbbbbbb"}, true, 1
	no := func(string) bool { return false }
	left := stepRoom(testCfg, r, true, no, evLeaveCall{callID: "C", peer: "bbbbbbbbbb"}, t0)
	if left.next.MixedStatus != 0 || left.next.IsMixed || left.next.EndedCallPeer != "bbbbbbbbbb" {
		t.Fatalf("after leaving the call: %+v", left.next)
	}
	for _, n := range []MixResultNotice{
		{MainMixStream: r.ID, MixStream: "bbbbbbbbbb", Code: "Success"},
		{MainMixStream: "bbbbbbbbbb", MixStream: r.ID, Code: "Success"},
	} {
		late := stepRoom(testCfg, left.next, true, no, evRoomMixResult{notice: n}, t0)
		if late.save || len(late.pushes) != 0 || late.next.MixedStatus != 0 {
			t.Fatalf("late MixResult %+v of the ended call changed the room: %+v", n, late)
		}
	}
	other := stepRoom(testCfg, left.next, true, no, evRoomMixResult{notice: MixResultNotice{MainMixStream: r.ID, MixStream: "cccccccccc", Code: "Success"}}, t0)
	if other.next.MixedStatus != 1 || len(other.pushes) != 1 {
		t.Fatalf("MixResult of another pair: %+v", other)
	}
	joined := stepRoom(testCfg, left.next, true, no, evJoinCall{callID: "D"}, t0)
	if joined.next.EndedCallPeer != "" {
		t.Fatalf("joining a new call kept the old peer: %+v", joined.next)
	}
}

// TestRoomInCallTable walks the room events that concern calls, for a host room and a
// co-stream room in call C (host rooms of C: the host room and "hostroom02").
func TestRoomInCallTable(t *testing.T) {
	inCall := func(state string) Room {
		r, _ := roomIn(state)
		r.CallID, r.CallHostRooms = "C", []string{r.ID, "hostroom02"}
		r.IsMixed, r.MixedStatus = true, 1
		return r
	}
	yes, one := true, 1
	no := func(string) bool { return false }
	type want struct {
		err      int
		callID   string
		save     bool
		ended    bool
		topics   string // push types @ topics
		notify   string // event type sent to the call
		isMixed  bool
		mixedSet int
	}
	cases := []struct {
		name  string
		state string
		ev    roomEvent
		want  want
		cfg   *RoomConfig // nil: testCfg
	}{
		{"join the same call again", "publishing", evJoinCall{callID: "C"}, want{callID: "C", isMixed: true, mixedSet: 1}, nil},
		{"join another call", "publishing", evJoinCall{callID: "D"}, want{err: CodeInCall, callID: "C", isMixed: true, mixedSet: 1}, nil},
		{"leave another call", "publishing", evLeaveCall{callID: "D"}, want{callID: "C", isMixed: true, mixedSet: 1}, nil},
		{"host room leaves its call", "publishing", evLeaveCall{callID: "C"}, want{save: true}, nil},
		{"co-stream room leaves its call: it ends", "costream", evLeaveCall{callID: "C"}, want{save: true, ended: true, topics: "8@abcdef0123"}, nil},
		{"flags of another call", "publishing", evCallFlags{callID: "D", mixed: new(bool), mixedStatus: new(int)}, want{callID: "C", isMixed: true, mixedSet: 1}, nil},
		{"flags of its call", "publishing", evCallFlags{callID: "C", mixed: new(bool), mixedStatus: new(int)}, want{callID: "C", save: true}, nil},
		{"same flags again", "publishing", evCallFlags{callID: "C", mixed: &yes, mixedStatus: &one}, want{callID: "C", isMixed: true, mixedSet: 1}, nil},
		{"publish goes to every host room", "created", evPublish{}, want{callID: "C", save: true, isMixed: true, mixedSet: 1, topics: "9@abcdef0123 9@hostroom02"}, nil},
		{"publish_done goes to every host room", "publishing", evPublishDone{}, want{callID: "C", save: true, isMixed: true, mixedSet: 1, topics: "10@abcdef0123 10@hostroom02"}, nil},
		{"mix-available tells the call", "publishing", evMixAvailable{}, want{callID: "C", save: true, isMixed: true, mixedSet: 1, notify: "actors.evCallMixReady"}, nil},
		{"ready on publish: publish tells the call", "created", evPublish{}, want{callID: "C", save: true, isMixed: true, mixedSet: 1, topics: "9@abcdef0123 9@hostroom02", notify: "actors.evCallMixReady"}, &publishCfg},
		{"ready on publish: a repeated publish tells the call again", "publishing", evPublish{}, want{callID: "C", save: true, isMixed: true, mixedSet: 1, notify: "actors.evCallMixReady"}, &publishCfg},
		{"ready on publish: mix-available does not", "publishing", evMixAvailable{}, want{callID: "C", isMixed: true, mixedSet: 1}, &publishCfg},
		{"announce its call's accept (push 2)", "publishing", evAnnounceCall{callID: "C", push: outPush{topic: "abcdef0123", tag: "1", importance: 4, typ: 2}}, want{callID: "C", isMixed: true, mixedSet: 1, topics: "2@abcdef0123"}, nil},
		{"announce on a room that ended first", "ended", evAnnounceCall{callID: "C", push: outPush{topic: "abcdef0123", typ: 2}}, want{err: CodeNoSuchRoom, callID: "C", isMixed: true, mixedSet: 1}, nil},
		{"announce another call's accept", "publishing", evAnnounceCall{callID: "D", push: outPush{topic: "abcdef0123", typ: 2}}, want{err: CodeNoSuchRoom, callID: "C", isMixed: true, mixedSet: 1}, nil},
		{"announce its call's accept to another room's topic", "publishing", evAnnounceCall{callID: "C", push: outPush{topic: "elsewhere", tag: "1", importance: 4, typ: 2}}, want{err: CodeNoSuchRoom, callID: "C", isMixed: true, mixedSet: 1}, nil},
		{"leave ends the room and tells the call", "publishing", evLeave{}, want{callID: "C", save: true, ended: true, isMixed: true, mixedSet: 1, topics: "8@abcdef0123", notify: "actors.evCallClose"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := stepRoom(*cmp.Or(c.cfg, &testCfg), inCall(c.state), true, no, c.ev, t0.Add(time.Second))
			got := want{callID: st.next.CallID, save: st.save, ended: st.next.Ended(),
				isMixed: st.next.IsMixed, mixedSet: st.next.MixedStatus}
			if st.err != nil {
				got = want{err: st.err.Code, callID: "C", isMixed: true, mixedSet: 1}
			}
			var topics []string
			for _, p := range st.pushes {
				topics = append(topics, fmt.Sprintf("%d@%s", p.typ, cmp.Or(p.topic, st.next.ID)))
			}
			got.topics = strings.Join(topics, " ")
			if st.notifyCall != nil {
				if st.notifyCall.callID != "C" {
					t.Fatalf("notice to call %q", st.notifyCall.callID)
				}
				got.notify = fmt.Sprintf("%T", st.notifyCall.ev)
			}
			if got != c.want {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}
