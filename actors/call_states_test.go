package actors

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

const (
	roomA = "aaaaaaaaaa" // inviter's host room
	roomB = "bbbbbbbbbb" // invitee's host room
)

func mixURL(s string) string { return "http://play/app/" + s }

func hostHostCall() Call {
	return newCall("call-1", "", CallSide{RoomID: roomA, UID: "1", Name: "alice", Type: TypeHost},
		CallSide{RoomID: roomB, UID: "2", Name: "bob", Type: TypeHost}, t0)
}

// callIn builds a host–host call in one of the phases of docs/state-machines.md. A room
// marked ready has had its 17 in the call.
func callIn(phase string) Call {
	c := callInPhase(phase)
	c.Inviter.Announced, c.Invitee.Announced = c.Inviter.Ready, c.Invitee.Ready
	return c
}

func callInPhase(phase string) Call {
	c := hostHostCall()
	switch phase {
	case "waiting":
	case "waiting(A ready)":
		c.Inviter.Ready = true
	case "starting":
		c.Inviter.Ready, c.Invitee.Ready, c.Phase = true, true, PhaseStarting
		for i := range c.Legs {
			c.Legs[i].State, c.Legs[i].Attempt = legStarting, 1
		}
	case "mixed":
		c.Inviter.Ready, c.Invitee.Ready, c.Phase = true, true, PhaseMixed
		for i := range c.Legs {
			c.Legs[i].State, c.Legs[i].Attempt, c.Legs[i].Ran, c.Legs[i].Streams = legStarted, 1, true, []string{c.Legs[i].Main + "_mixed"}
			c.Legs[i].MixID = fmt.Sprintf("m%d", i)
		}
	case "failed":
		c.Inviter.Ready, c.Invitee.Ready, c.Phase = true, true, PhaseFailed
		c.Legs[0].State, c.Legs[0].Attempt, c.Legs[0].Code = legFailed, 1, CodeMixNoSuchStream
		c.Legs[1].State, c.Legs[1].Attempt, c.Legs[1].Ran = legStopped, 2, true
	case "closing":
		c.Inviter.Ready, c.Invitee.Ready, c.Phase, c.Closer = true, true, PhaseClosing, roomA
		c.Legs[0].State, c.Legs[0].Attempt, c.Legs[0].Ran, c.Legs[0].MixID = legStopping, 2, true, "m0"
		c.Legs[1].State, c.Legs[1].Attempt = legStarting, 1 // closed while its Start was in flight
	case "closed":
		c.Phase = PhaseClosed
	default:
		panic(phase)
	}
	return c
}

// summary renders a step's effects compactly: pushes as type@topic, mixes as start/stop:leg
// (a Stop with the mix id it carries, a Start that adopts with "(adopt)").
func summary(st callStep) string {
	var parts []string
	for _, p := range st.pushes {
		parts = append(parts, fmt.Sprintf("%d@%s", p.typ, p.topic[:1]))
	}
	for _, m := range st.mixes {
		verb := "stop"
		if m.start {
			verb = "start"
		}
		part := fmt.Sprintf("%s:%d", verb, m.leg)
		if m.req.MixID != "" {
			part += "(" + m.req.MixID + ")"
		}
		if m.req.Adopt {
			part += "(adopt)"
		}
		parts = append(parts, part)
	}
	for _, f := range st.flags {
		switch {
		case f.mixed != nil:
			parts = append(parts, fmt.Sprintf("mixed=%v@%s", *f.mixed, f.roomID[:1]))
		case f.mixedStatus != nil:
			parts = append(parts, fmt.Sprintf("status=%d@%s", *f.mixedStatus, f.roomID[:1]))
		}
	}
	if st.release {
		parts = append(parts, "release")
	}
	return strings.Join(parts, " ")
}

func TestCallStateTable(t *testing.T) {
	notice := func(code string) evMixResult {
		return evMixResult{notice: MixResultNotice{MainMixStream: roomA, MixStream: roomB, Code: code, Event: "MixResult"}}
	}
	events := []struct {
		name string
		ev   callEvent
	}{
		{"mix-available A", evCallMixReady{roomID: roomA}},
		{"mix-available B", evCallMixReady{roomID: roomB}},
		{"mix-available unknown room", evCallMixReady{roomID: "zzzzzzzzzz"}},
		{"start (after admission)", evCallStart{}},
		{"Start answered OK leg0", evStartAnswered{leg: 0, attempt: 1, streams: []string{"s0"}}},
		{"Start answered OK leg1", evStartAnswered{leg: 1, attempt: 1, streams: []string{"s1"}, id: "id1"}},
		{"Start failed leg0", evStartAnswered{leg: 0, attempt: 1, err: Errorf(CodeMixNoSuchStream, "no stream")}},
		{"Start answer stale", evStartAnswered{leg: 0, attempt: 9}},
		{"Stop answered leg0", evStopAnswered{leg: 0, attempt: 2}},
		{"mix-result Success", notice("Success")},
		{"mix-result InternalError", notice("InternalError")},
		{"close by A", evCallClose{roomID: roomA}},
		{"room B ended", evCallClose{roomID: roomB, roomEnded: true}},
		{"mix callback: failure of A's mix", evMixEvent{event: MixEvent{MainRoom: roomA, Event: "MixStreamFailed", Code: "InternalError", Failed: true, ErrCode: CodeMixInternal}}},
		{"mix callback: other event of mix m1", evMixEvent{event: MixEvent{MixID: "m1", Event: "MixStreamStarted", Code: "Success"}}},
		{"mix callback: unknown mix", evMixEvent{event: MixEvent{MixID: "zz", Event: "MixStreamFailed", Failed: true}}},
	}
	// One row per phase, one cell per event above: next phase | effects.
	table := map[string][]string{
		"waiting": {
			"waiting | 17@a 17@b",
			"waiting | 17@a 17@b",
			"waiting | ",
			"waiting | ",
			"waiting | ", "waiting | ", "waiting | ", "waiting | ", "waiting | ",
			"waiting | 16@a 16@b status=1@a status=1@b",
			"waiting | 16@a 16@b status=0@a status=0@b",
			"closed | 4@a 4@b mixed=false@a mixed=false@b release",
			"closed | 4@a mixed=false@a mixed=false@b release",
			"waiting | 14@a 14@b status=0@a status=0@b", "waiting | ", "waiting | ",
		},
		"waiting(A ready)": {
			"waiting(A ready) | ",
			"starting | 17@a 17@b start:0 start:1",
			"waiting(A ready) | ",
			"waiting(A ready) | ",
			"waiting(A ready) | ", "waiting(A ready) | ", "waiting(A ready) | ", "waiting(A ready) | ", "waiting(A ready) | ",
			"waiting(A ready) | 16@a 16@b status=1@a status=1@b",
			"waiting(A ready) | 16@a 16@b status=0@a status=0@b",
			"closed | 4@a 4@b mixed=false@a mixed=false@b release",
			"closed | 4@a mixed=false@a mixed=false@b release",
			"waiting(A ready) | 14@a 14@b status=0@a status=0@b", "waiting(A ready) | ", "waiting(A ready) | ",
		},
		"starting": {
			"starting | ", "starting | ", "starting | ", "starting | ",
			"starting | ",
			"starting | ",
			"starting | ",
			"starting | ",
			"starting | ",
			"starting | 16@a 16@b status=1@a status=1@b",
			"starting | 16@a 16@b status=0@a status=0@b",
			"closing | 4@a 4@b",
			"closing | 4@a",
			"starting | 14@a 14@b status=0@a status=0@b", "starting | ", "starting | ",
		},
		"mixed": {
			"mixed | ", "mixed | ", "mixed | ", "mixed | ",
			"mixed | ", "mixed | ", "mixed | ", "mixed | ", "mixed | ",
			"mixed | 16@a 16@b status=1@a status=1@b",
			"mixed | 16@a 16@b status=0@a status=0@b",
			"closing | 4@a 4@b stop:0(m0) stop:1(m1)",
			"closing | 4@a stop:0(m0) stop:1(m1)",
			"mixed | 14@a 14@b status=0@a status=0@b", "mixed | 16@a 16@b status=1@a status=1@b", "mixed | ",
		},
		"failed": {
			// A repeated mix-available retries: the stream is (again) available.
			"starting | 17@a 17@b start:0 start:1",
			"starting | 17@a 17@b start:0 start:1",
			"failed | ",
			"failed | ",
			"failed | ", "failed | ", "failed | ", "failed | ", "failed | ",
			"failed | 16@a 16@b status=1@a status=1@b",
			"failed | 16@a 16@b status=0@a status=0@b",
			"closed | 4@a 4@b 15@a 15@b mixed=false@a mixed=false@b release",
			"closed | 4@a 15@a mixed=false@a mixed=false@b release",
			"failed | 14@a 14@b status=0@a status=0@b", "failed | ", "failed | ",
		},
		"closing": {
			"closing | ", "closing | ", "closing | ", "closing | ",
			"closing | ",
			"closing | stop:1(id1)",
			"closing | ",
			"closing | ",
			"closing | ",
			"closing | 16@a 16@b status=1@a status=1@b",
			"closing | 16@a 16@b status=0@a status=0@b",
			"closing | ",
			"closing | ",
			"closing | 14@a 14@b status=0@a status=0@b", "closing | ", "closing | ",
		},
		"closed": {
			"closed | ", "closed | ", "closed | ", "closed | ", "closed | ", "closed | ", "closed | ",
			"closed | ", "closed | ", "closed | ", "closed | ", "closed | ", "closed | ",
			"closed | ", "closed | ", "closed | ",
		},
	}
	phaseName := func(phase string, c Call) string {
		if phase == "waiting(A ready)" && c.Phase == PhaseWaiting {
			return phase
		}
		return c.Phase
	}
	for phase, row := range table {
		if len(row) != len(events) {
			t.Fatalf("%s: %d cells for %d events", phase, len(row), len(events))
		}
		for i, ev := range events {
			t.Run(phase+"/"+ev.name, func(t *testing.T) {
				st := stepCall(callIn(phase), ev.ev, mixURL)
				got := phaseName(phase, st.next) + " | " + summary(st)
				if got != row[i] {
					t.Errorf("got  %q\nwant %q", got, row[i])
				}
			})
		}
	}
}

// Cells whose outcome depends on more than one answer: the legs of a host–host call settle
// together, a failure stops the leg that did start, and a Start answered after close is
// stopped.
func TestCallSettling(t *testing.T) {
	c := callIn("starting")
	st := stepCall(c, evStartAnswered{leg: 0, attempt: 1, streams: []string{"a_b"}}, mixURL)
	st = stepCall(st.next, evStartAnswered{leg: 1, attempt: 1, streams: []string{"b_a"}}, mixURL)
	if got := summary(st); got != "5@a 5@b mixed=true@a mixed=true@b" || st.next.Phase != PhaseMixed {
		t.Fatalf("both Starts OK: %s (%s)", got, st.next.Phase)
	}
	data := st.pushes[0].data.(mixSucceededData)
	if !slices.Equal(data.InviterMixPlayUrls, []string{"http://play/app/a_b"}) || !slices.Equal(data.InviteeMixPlayUrls, []string{"http://play/app/b_a"}) {
		t.Fatalf("type 5 URLs: %+v", data)
	}

	st = stepCall(callIn("starting"), evStartAnswered{leg: 0, attempt: 1, streams: []string{"a_b"}}, mixURL)
	st = stepCall(st.next, evStartAnswered{leg: 1, attempt: 1, err: Errorf(CodeMixInvalidArg, "bad")}, mixURL)
	if got := summary(st); got != "14@a 14@b stop:0" || st.next.Phase != PhaseFailed {
		t.Fatalf("one Start failed: %s (%s)", got, st.next.Phase)
	}
	if f := st.pushes[0].data.(mixFailedData); f.Message.Code != CodeMixInvalidArg {
		t.Fatalf("type 14 code: %+v", f)
	}
	// A later mix-available retries the failed leg only.
	st = stepCall(st.next, evStopAnswered{leg: 0, attempt: 2}, mixURL)
	retry := st.next
	retry.Inviter.Ready = false
	st = stepCall(retry, evCallMixReady{roomID: roomA}, mixURL)
	if got := summary(st); got != "17@a 17@b start:0 start:1" || st.next.Phase != PhaseStarting {
		t.Fatalf("retry after failure: %s", got)
	}

	// Closing while Starts are in flight: each Start that then succeeds is stopped; the call
	// ends once every Stop answered, with 15 because a mix ran.
	st = stepCall(callIn("starting"), evCallClose{roomID: roomA}, mixURL)
	st = stepCall(st.next, evStartAnswered{leg: 0, attempt: 1, streams: []string{"x"}}, mixURL)
	if got := summary(st); got != "stop:0" {
		t.Fatalf("Start answered after close: %s", got)
	}
	// An internal error says nothing about whether the CDN started mixing: stop it too.
	st = stepCall(st.next, evStartAnswered{leg: 1, attempt: 1, err: Errorf(CodeMixInternal, "x")}, mixURL)
	if got := summary(st); got != "stop:1" {
		t.Fatalf("Start failed with an unknown outcome after close: %s", got)
	}
	st = stepCall(st.next, evStopAnswered{leg: 0, attempt: 2}, mixURL)
	st = stepCall(st.next, evStopAnswered{leg: 1, attempt: 2, err: Errorf(CodeMixFailed, "not mixing")}, mixURL)
	if got := summary(st); got != "15@a 15@b mixed=false@a mixed=false@b release" || st.next.Phase != PhaseClosed {
		t.Fatalf("last Stop answered: %s (%s)", got, st.next.Phase)
	}

	// A definite refusal started nothing: no Stop for that leg.
	st = stepCall(callIn("starting"), evCallClose{roomID: roomA}, mixURL)
	st = stepCall(st.next, evStartAnswered{leg: 0, attempt: 1, err: Errorf(CodeMixNoSuchStream, "no stream")}, mixURL)
	st = stepCall(st.next, evStartAnswered{leg: 1, attempt: 1, err: Errorf(CodeMixInvalidArg, "bad")}, mixURL)
	if got := summary(st); got != "mixed=false@a mixed=false@b release" {
		t.Fatalf("both Starts refused after close: %s", got)
	}
}

// A Start that timed out may have started the mix at the CDN: closing the failed call
// stops that leg, and only that one.
func TestUnsureStartIsStoppedOnClose(t *testing.T) {
	st := stepCall(callIn("starting"), evStartAnswered{leg: 0, attempt: 1, err: Errorf(CodeUnavailable, "timeout after 5s")}, mixURL)
	st = stepCall(st.next, evStartAnswered{leg: 1, attempt: 1, err: Errorf(CodeMixNoSuchStream, "no stream")}, mixURL)
	if st.next.Phase != PhaseFailed || !st.next.Legs[0].Unsure || st.next.Legs[1].Unsure {
		t.Fatalf("after two failed Starts: phase %s, legs %+v", st.next.Phase, st.next.Legs)
	}
	st = stepCall(st.next, evCallClose{roomID: roomB}, mixURL)
	if got := summary(st); got != "4@a 4@b stop:0" || st.next.Phase != PhaseClosing {
		t.Fatalf("close of a call with an unsure leg: %s (%s)", got, st.next.Phase)
	}
	st = stepCall(st.next, evStopAnswered{leg: 0, attempt: 2}, mixURL)
	if got := summary(st); got != "mixed=false@a mixed=false@b release" {
		t.Fatalf("Stop answered: %s", got)
	}
}

// MixResult callbacks: a redelivery changes nothing, but a different code for the same
// pair applies, also back to one seen before (Success, failure, Success).
func TestMixResultLastCodePerPair(t *testing.T) {
	notice := func(code string) evMixResult {
		return evMixResult{notice: MixResultNotice{MainMixStream: roomA, MixStream: roomB, Code: code, Event: "MixResult"}}
	}
	c := callIn("mixed")
	var got []string
	for _, code := range []string{"Success", "Success", "MixStreamNotExist", "MixStreamNotExist", "Success"} {
		st := stepCall(c, notice(code), mixURL)
		c = st.next
		got = append(got, summary(st))
	}
	want := []string{
		"16@a 16@b status=1@a status=1@b",
		"",
		"16@a 16@b status=0@a status=0@b",
		"",
		"16@a 16@b status=1@a status=1@b",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("effects %q\nwant    %q", got, want)
	}
	if len(c.Results) != 1 {
		t.Fatalf("results kept: %q", c.Results)
	}
}

// The permutation test: for {mix-available A, mix-available B, Start answers, mix-result
// Success, close}, every order, also with every event delivered twice, ends in the same
// state with each side effect exactly once. The CDN is simulated: Starts are held until the
// "Start answers" event releases them (later Starts are then answered at once), Stops are
// answered at once.
func TestCallPermutations(t *testing.T) {
	base := []string{"readyA", "readyB", "answers", "success", "close"}
	var orders [][]string
	permute(base, 0, func(p []string) { orders = append(orders, slices.Clone(p)) })
	if len(orders) != 120 {
		t.Fatalf("%d orders", len(orders))
	}
	checked := 0
	for _, order := range orders {
		runOrder(t, order)
		checked++
		// Each event delivered twice: once in place, once again at every later position.
		for i := range order {
			for j := i + 1; j <= len(order); j++ {
				dup := slices.Insert(slices.Clone(order), j, order[i])
				runOrder(t, dup)
				checked++
			}
		}
	}
	// Without close the call ends mixed, whatever the order.
	noClose := []string{"readyA", "readyB", "answers", "success"}
	permute(noClose, 0, func(p []string) { runOrder(t, p); checked++ })
	t.Logf("%d orders checked", checked)
}

func permute(a []string, k int, visit func([]string)) {
	if k == len(a) {
		visit(a)
		return
	}
	for i := k; i < len(a); i++ {
		a[k], a[i] = a[i], a[k]
		permute(a, k+1, visit)
		a[k], a[i] = a[i], a[k]
	}
}

func runOrder(t *testing.T, order []string) {
	t.Helper()
	c := hostHostCall()
	var held []mixCall
	answering := false
	starts, stops := map[int]int{}, map[int]int{}
	pushes := map[string]int{}
	mixed := map[string]bool{}
	released := 0
	var queue []callEvent
	apply := func(ev callEvent) {
		queue = append(queue, ev)
		for len(queue) > 0 {
			next := queue[0]
			queue = queue[1:]
			st := stepCall(c, next, mixURL)
			c = st.next
			for _, p := range st.pushes {
				pushes[fmt.Sprintf("%d@%s#%v", p.typ, p.topic, p.data)]++
			}
			for _, f := range st.flags {
				if f.mixed != nil {
					mixed[f.roomID] = *f.mixed
				}
			}
			if st.release {
				released++
			}
			for _, m := range st.mixes {
				if m.start {
					starts[m.leg]++
					if answering {
						queue = append(queue, evStartAnswered{leg: m.leg, attempt: m.attempt, streams: []string{"s"}})
					} else {
						held = append(held, m)
					}
				} else {
					stops[m.leg]++
					queue = append(queue, evStopAnswered{leg: m.leg, attempt: m.attempt})
				}
			}
		}
	}
	for _, name := range order {
		switch name {
		case "readyA":
			apply(evCallMixReady{roomID: roomA})
		case "readyB":
			apply(evCallMixReady{roomID: roomB})
		case "answers":
			answering = true
			for _, m := range held {
				apply(evStartAnswered{leg: m.leg, attempt: m.attempt, streams: []string{"s"}})
			}
			held = nil
		case "success":
			apply(evMixResult{notice: MixResultNotice{MainMixStream: roomA, MixStream: roomB, Code: "Success"}})
		case "close":
			apply(evCallClose{roomID: roomA})
		}
	}
	desc := strings.Join(order, ",")
	count := func(typ int, topic string) int {
		n := 0
		for key, v := range pushes {
			if strings.HasPrefix(key, fmt.Sprintf("%d@%s#", typ, topic)) {
				n += v
			}
		}
		return n
	}
	closed := slices.Contains(order, "close")
	for leg := range 2 {
		if starts[leg] > 1 {
			t.Fatalf("%s: leg %d started %d times", desc, leg, starts[leg])
		}
		if stops[leg] != starts[leg] && closed {
			t.Fatalf("%s: leg %d started %d times, stopped %d times", desc, leg, starts[leg], stops[leg])
		}
	}
	for key, n := range pushes {
		if n != 1 {
			t.Fatalf("%s: push %s sent %d times (%v)", desc, key, n, sortedKeys(pushes))
		}
	}
	if closed {
		ran := starts[0] > 0 && c.Legs[0].Ran
		if c.Phase != PhaseClosed || released != 1 || mixed[roomA] || mixed[roomB] ||
			count(4, roomA) != 1 || count(4, roomB) != 1 || (count(15, roomA) == 1) != ran {
			t.Fatalf("%s: final %s released=%d mixed=%v pushes=%v", desc, c.Phase, released, mixed, sortedKeys(pushes))
		}
		return
	}
	if c.Phase != PhaseMixed || !mixed[roomA] || !mixed[roomB] || starts[0] != 1 || starts[1] != 1 || stops[0]+stops[1] != 0 ||
		count(5, roomA) != 1 || count(5, roomB) != 1 || count(17, roomA) != 2 || count(16, roomB) != 1 {
		t.Fatalf("%s: final %s mixed=%v starts=%v stops=%v pushes=%v", desc, c.Phase, mixed, starts, stops, sortedKeys(pushes))
	}
}

func sortedKeys(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(out)
	return out
}

// Push 17 goes out once per room per call, whatever the order: a room whose stream was
// mix-ready before the accept is announced right after admission (with the Start), and its
// later mix-available callbacks change nothing.
func TestMixAvailableAnnouncedOncePerCall(t *testing.T) {
	c := hostHostCall()
	c.Inviter.Ready, c.Invitee.Ready = true, true // both mix-ready before the call
	st := stepCall(c, evCallStart{}, mixURL)
	if got := summary(st); got != "17@a 17@b 17@a 17@b start:0 start:1" {
		t.Fatalf("admission of two ready rooms: %s", got)
	}
	again := stepCall(st.next, evCallMixReady{roomID: roomA}, mixURL)
	if got := summary(again); got != "" {
		t.Fatalf("mix-available after the announcement: %s", got)
	}

	// One room ready before the call, the other not: that one is announced at admission,
	// the other when its callback comes — and then the mix starts.
	c = hostHostCall()
	c.Inviter.Ready = true
	st = stepCall(c, evCallStart{}, mixURL)
	if got := summary(st); got != "17@a 17@b" {
		t.Fatalf("admission with A ready: %s", got)
	}
	st = stepCall(st.next, evCallMixReady{roomID: roomA}, mixURL)
	if got := summary(st); got != "" {
		t.Fatalf("A's repeated mix-available: %s", got)
	}
	st = stepCall(st.next, evCallMixReady{roomID: roomB}, mixURL)
	if got := summary(st); got != "17@a 17@b start:0 start:1" {
		t.Fatalf("B's mix-available: %s", got)
	}
}

// The id a Start answered is stored with its leg (durably: it is in the snapshot) and
// handed to the Stop; an unsure Start has none, and its retry asks the driver to adopt a
// mix it may have created.
func TestMixIDCarriedToStop(t *testing.T) {
	for name, tc := range map[string]struct {
		answer    evStartAnswered
		then      callEvent
		wantMixes string
	}{
		"started: close stops it by id": {answer: evStartAnswered{leg: 0, attempt: 1, id: "mix-0"},
			then: evCallClose{roomID: roomA}, wantMixes: "stop:0(mix-0) stop:1(mix-1)"},
		"unsure: close stops it without an id": {answer: evStartAnswered{leg: 0, attempt: 1, err: Errorf(CodeUnavailable, "timeout")},
			then: evCallClose{roomID: roomA}, wantMixes: "stop:0"}, // leg 1 was stopped (by id) when the Start failed
		"unsure: the retry adopts": {answer: evStartAnswered{leg: 0, attempt: 1, err: Errorf(CodeUnavailable, "timeout")},
			then: evCallMixReady{roomID: roomA}, wantMixes: "start:0(adopt) start:1"},
		"refused: the retry creates": {answer: evStartAnswered{leg: 0, attempt: 1, err: Errorf(CodeMixNoSuchStream, "no")},
			then: evCallMixReady{roomID: roomA}, wantMixes: "start:0 start:1"},
	} {
		t.Run(name, func(t *testing.T) {
			c := callIn("starting")
			c = stepCall(c, evStartAnswered{leg: 1, attempt: 1, id: "mix-1"}, mixURL).next
			st := stepCall(c, tc.answer, mixURL)
			if !st.changed || st.next.Legs[1].MixID != "mix-1" || st.next.Legs[0].MixID != tc.answer.id {
				t.Fatalf("legs %+v", st.next.Legs)
			}
			st = stepCall(st.next, tc.then, mixURL)
			var mixes []string
			for _, part := range strings.Fields(summary(st)) {
				if strings.HasPrefix(part, "st") {
					mixes = append(mixes, part)
				}
			}
			if got := strings.Join(mixes, " "); got != tc.wantMixes {
				t.Fatalf("mixes %q, want %q", got, tc.wantMixes)
			}
		})
	}
}
