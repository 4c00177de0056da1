package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fifty viewers accept an invitation to the same host room at once: exactly one call is
// admitted, the 49 others get 3020, and they leave no room, call or message behind.
func TestConcurrentAcceptsForOneRoom(t *testing.T) {
	h := newHarness(t, nil, nil)
	host := mustLogin(t, h.eng, "host")
	room, _ := h.eng.CreateRoom(bg, host.ID, "")
	const n = 50
	viewers := make([]User, n)
	for i := range viewers {
		viewers[i] = mustLogin(t, h.eng, fmt.Sprint("viewer", i))
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i, v := range viewers {
		wg.Go(func() {
			_, err := h.eng.Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: host.ID,
				InviteeUID: v.ID, InviterType: TypeHost, InviteeType: TypeViewer})
			codes[i] = codeOf(err)
		})
	}
	wg.Wait()
	wins, busy := 0, 0
	for _, c := range codes {
		switch c {
		case CodeOK:
			wins++
		case CodeInCall:
			busy++
		default:
			t.Errorf("unexpected code %d", c)
		}
	}
	if wins != 1 || busy != n-1 {
		t.Fatalf("%d admitted, %d refused with 3020; want 1 and %d", wins, busy, n-1)
	}
	rooms := listAll(t, h.eng)
	if len(rooms) != 2 {
		t.Fatalf("%d rooms exist, want the host's and one co-stream room: %+v", len(rooms), rooms)
	}
	calls, _ := h.store.LoadCalls(bg)
	if len(calls) != 1 {
		t.Fatalf("%d calls stored, want 1", len(calls))
	}
	accepted := 0
	for _, typ := range h.pub.types(room.ID) {
		if typ == 2 {
			accepted++
		}
	}
	if accepted != 1 {
		t.Fatalf("%d type-2 pushes, want 1", accepted)
	}
	// The loser's rooms are free: after the call ends a new accept is admitted.
	if err := h.eng.CloseCall(bg, room.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: host.ID,
		InviteeUID: viewers[0].ID, InviterType: TypeHost, InviteeType: TypeViewer}); err != nil {
		t.Fatalf("accept after the call ended: %v", err)
	}
}

// Two host rooms, both mix-ready: the mix starts on each host side, and a close stops both.
func TestHostHostCallThroughActors(t *testing.T) {
	h := newHarness(t, nil, nil)
	alice, bob := mustLogin(t, h.eng, "alice"), mustLogin(t, h.eng, "bob")
	a, _ := h.eng.CreateRoom(bg, alice.ID, "")
	b, _ := h.eng.CreateRoom(bg, bob.ID, "")
	_ = h.eng.MixAvailable(bg, a.ID)
	res, err := h.eng.Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: alice.ID, InviteeUID: bob.ID,
		InviterType: TypeHost, InviteeType: TypeHost, Layout: "side_by_side"})
	if err != nil {
		t.Fatal(err)
	}
	if res.InviterRoomID != a.ID || res.InviteeRoomID != b.ID || res.RtmpURL != b.PushURL {
		t.Fatalf("feedback result %+v", res)
	}
	if err := h.eng.Invite(bg, InviteRequest{InviterUID: alice.ID, InviteeUID: bob.ID, LiveRoomID: a.ID, InviterType: TypeHost}); codeOf(err) != CodeInCall {
		t.Fatalf("invite while in a call: %v", err)
	}
	_ = h.eng.MixAvailable(bg, b.ID)
	waitFor(t, "both Starts", func() bool { s, _ := h.mixer.counts(); return s == 2 })
	waitFor(t, "isMixed", func() bool {
		r, _ := h.eng.Room(bg, a.ID)
		q, _ := h.eng.Room(bg, b.ID)
		return r.IsMixed && q.IsMixed
	})
	call, ok, _ := h.eng.Call(bg, a.ID)
	if !ok || call.Phase != PhaseMixed || call.Layout != "side_by_side" {
		t.Fatalf("call: %+v", call)
	}
	if err := h.eng.CloseCall(bg, a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both Stops", func() bool { _, s := h.mixer.counts(); return s == 2 })
	waitFor(t, "call released", func() bool { _, ok, _ := h.eng.Call(bg, a.ID); return !ok })
	waitFor(t, "isMixed cleared", func() bool { r, _ := h.eng.Room(bg, a.ID); return !r.IsMixed && r.CallID == "" })
	if _, ok := h.store.call(call.ID); ok {
		t.Fatal("ended call still stored")
	}
}

// While the CDN's breaker is open, commands that need the CDN fail fast with 503 and leave
// nothing behind; everything else keeps working, and they succeed once it closes.
func TestBreakerOpenFailsCoStreamingFast(t *testing.T) {
	var breakerOpen atomic.Bool
	h := newHarnessWith(t, nil, nil, func(c *EngineConfig) {
		c.MixerReady = func() error {
			if breakerOpen.Load() {
				return errors.New("circuit breaker open")
			}
			return nil
		}
	})
	eng, pub, mixer := h.eng, h.pub, h.mixer
	alice, bob := mustLogin(t, eng, "alice"), mustLogin(t, eng, "bob")
	a, _ := eng.CreateRoom(bg, alice.ID, "")
	b, _ := eng.CreateRoom(bg, bob.ID, "")
	accept := FeedbackRequest{Status: FeedbackAccept, InviterUID: alice.ID, InviteeUID: bob.ID, InviterType: TypeHost, InviteeType: TypeHost}

	breakerOpen.Store(true)
	if _, err := eng.Feedback(bg, accept); codeOf(err) != CodeUnavailable {
		t.Fatalf("accept with the breaker open: %v", err)
	}
	if _, busy, _ := eng.Call(bg, a.ID); busy {
		t.Fatal("a refused accept left a call")
	}
	if err := eng.Comment(bg, a.ID, bob.ID, "still works"); err != nil {
		t.Fatalf("comment with the breaker open: %v", err)
	}
	breakerOpen.Store(false)
	if _, err := eng.Feedback(bg, accept); err != nil {
		t.Fatal(err)
	}
	_ = eng.MixAvailable(bg, a.ID)
	_ = eng.MixAvailable(bg, b.ID)
	waitFor(t, "mixed", func() bool { c, _, _ := eng.Call(bg, a.ID); return c.Phase == PhaseMixed })

	breakerOpen.Store(true)
	if err := eng.CloseCall(bg, a.ID, b.ID); codeOf(err) != CodeUnavailable {
		t.Fatalf("close of a mixed call with the breaker open: %v", err)
	}
	if c, _, _ := eng.Call(bg, a.ID); c.Phase != PhaseMixed {
		t.Fatalf("a refused close changed the call: %s", c.Phase)
	}
	if types := pub.types(a.ID); slices.Contains(types, 4) {
		t.Fatalf("a refused close pushed type 4: %v", types)
	}
	breakerOpen.Store(false)
	if err := eng.CloseCall(bg, a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stopped", func() bool { _, stops := mixer.counts(); return stops == 2 })
}

// A Start that fails reaches every host room as type 14 with the mapped code.
func TestStartFailurePushesMixFailed(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.mixer.fail = Errorf(CodeMixNoSuchStream, "NoSuchStream: stream not found")
	alice, bob := mustLogin(t, h.eng, "alice"), mustLogin(t, h.eng, "bob")
	a, _ := h.eng.CreateRoom(bg, alice.ID, "")
	b, _ := h.eng.CreateRoom(bg, bob.ID, "")
	_ = h.eng.MixAvailable(bg, a.ID)
	_ = h.eng.MixAvailable(bg, b.ID)
	if _, err := h.eng.Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: alice.ID, InviteeUID: bob.ID,
		InviterType: TypeHost, InviteeType: TypeHost}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "type 14 on both host rooms", func() bool {
		return slices.Contains(h.pub.types(a.ID), 14) && slices.Contains(h.pub.types(b.ID), 14)
	})
	c, _, _ := h.eng.Call(bg, a.ID)
	if c.Phase != PhaseFailed || c.Legs[0].Code != CodeMixNoSuchStream {
		t.Fatalf("call after a failed Start: %+v", c)
	}
	if r, _ := h.eng.Room(bg, a.ID); r.IsMixed {
		t.Fatal("isMixed set although the mix failed")
	}

	// The stream comes back: Aliyun's next mix-available for a room that was already
	// mix-ready retries the mix, which now succeeds.
	h.mixer.mu.Lock()
	h.mixer.fail = nil
	h.mixer.mu.Unlock()
	if err := h.eng.MixAvailable(bg, b.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "type 5 on both host rooms after the retry", func() bool {
		return slices.Contains(h.pub.types(a.ID), 5) && slices.Contains(h.pub.types(b.ID), 5)
	})
	if r, _ := h.eng.Room(bg, a.ID); !r.IsMixed {
		t.Fatal("isMixed not set after the retried mix succeeded")
	}
	if starts, _ := h.mixer.counts(); starts != 4 {
		t.Fatalf("%d Starts, want 2 failed and 2 retried", starts)
	}
}

// Calls that can never work are refused and leave nothing behind: with oneself, between two
// viewers (no host stream to mix into), and for a user who is already in a call.
func TestAdmissionRefusals(t *testing.T) {
	h := newHarness(t, nil, nil)
	host, carol, dave := mustLogin(t, h.eng, "host"), mustLogin(t, h.eng, "carol"), mustLogin(t, h.eng, "dave")
	room, _ := h.eng.CreateRoom(bg, host.ID, "")
	if _, err := h.eng.Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: host.ID,
		InviteeUID: carol.ID, InviterType: TypeHost, InviteeType: TypeViewer}); err != nil {
		t.Fatal(err)
	}
	daveRoom, _ := h.eng.CreateRoom(bg, dave.ID, "")
	before := len(listAll(t, h.eng))
	cases := []struct {
		name string
		req  FeedbackRequest
		code int
	}{
		{"host with itself", FeedbackRequest{InviterUID: host.ID, InviteeUID: host.ID, InviterType: TypeHost, InviteeType: TypeViewer}, CodeBadState},
		{"viewer with itself", FeedbackRequest{InviterUID: dave.ID, InviteeUID: dave.ID, InviterType: TypeViewer, InviteeType: TypeViewer}, CodeBadState},
		{"two viewers", FeedbackRequest{InviterUID: dave.ID, InviteeUID: carol.ID, InviterType: TypeViewer, InviteeType: TypeViewer}, CodeBadState},
		{"viewer already in a call", FeedbackRequest{InviterUID: dave.ID, InviteeUID: carol.ID, InviterType: TypeHost, InviteeType: TypeViewer}, CodeInCall},
	}
	for _, c := range cases {
		c.req.Status = FeedbackAccept
		if _, err := h.eng.Feedback(bg, c.req); codeOf(err) != c.code {
			t.Errorf("%s: %v, want code %d", c.name, err, c.code)
		}
	}
	if err := h.eng.Invite(bg, InviteRequest{InviterUID: host.ID, InviteeUID: host.ID, LiveRoomID: room.ID, InviterType: TypeHost}); codeOf(err) != CodeBadState {
		t.Errorf("invite oneself: %v, want code %d", err, CodeBadState)
	}
	if n := len(listAll(t, h.eng)); n != before {
		t.Fatalf("%d rooms after the refusals, want %d", n, before)
	}
	if _, inCall, _ := h.eng.Call(bg, daveRoom.ID); inCall {
		t.Fatal("dave's room is in a call after a refused accept")
	}
	calls, _ := h.store.LoadCalls(bg)
	if len(calls) != 1 {
		t.Fatalf("%d calls stored, want 1", len(calls))
	}
}

// An accept racing the host's leave: either the accept wins (push 2 before the room's 8, the
// call then closes because the room ended) or the leave wins (the accept answers 2003 and
// leaves nothing). Never "accepted" for a room whose end was already announced.
func TestAcceptRacingHostLeave(t *testing.T) {
	h := newHarness(t, nil, nil)
	const rounds = 40
	wins := 0
	for i := range rounds {
		host := mustLogin(t, h.eng, fmt.Sprint("host", i))
		room, err := h.eng.CreateRoom(bg, host.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		viewers := make([]User, 4)
		for j := range viewers {
			viewers[j] = mustLogin(t, h.eng, fmt.Sprint("viewer", i, "-", j))
		}
		codes := make([]int, len(viewers))
		var wg sync.WaitGroup
		for j, v := range viewers {
			wg.Go(func() {
				_, err := h.eng.Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: host.ID,
					InviteeUID: v.ID, InviterType: TypeHost, InviteeType: TypeViewer})
				codes[j] = codeOf(err)
			})
		}
		wg.Go(func() {
			// Staggered so that the leave lands at every point of an admission in some round.
			time.Sleep(time.Duration(i%10) * 150 * time.Microsecond)
			_ = h.eng.Leave(bg, room.ID)
		})
		wg.Wait()
		types := h.pub.types(room.ID)
		end := slices.Index(types, 8)
		if end < 0 {
			t.Fatalf("round %d: no type 8 on the host room: %v", i, types)
		}
		if slices.Contains(types[end+1:], 2) {
			t.Fatalf("round %d: push 2 after the room's type 8: %v (accept codes %v)", i, types, codes)
		}
		accepted := 0
		for _, c := range codes {
			switch c {
			case CodeOK:
				accepted++
			case CodeInCall, CodeNoSuchRoom, CodeBadState: // 4000: the host had no room any more
			default:
				t.Fatalf("round %d: accept code %d", i, c)
			}
		}
		if n := slices.Index(types, 2); (n >= 0) != (accepted == 1) || accepted > 1 {
			t.Fatalf("round %d: %d accepts answered 200, pushes %v", i, accepted, types)
		}
		wins += accepted
	}
	waitFor(t, "every call to end with its host room", func() bool {
		calls, _ := h.store.LoadCalls(bg)
		return len(calls) == 0 && len(listAll(t, h.eng)) == 0
	})
	t.Logf("the accept won %d of %d rounds", wins, rounds)
}

// An accept refused with 503 because the mix service is unavailable tells the inviter, who
// is waiting for push 2 or 3: a type 3 (status 2) with code 503 and a message, on the topic
// and tag a refusal by the invitee would have, so its client stops waiting.
func TestBreakerOpenAcceptTellsTheInviter(t *testing.T) {
	h := newHarnessWith(t, nil, nil, func(c *EngineConfig) {
		c.MixerReady = func() error { return errors.New("circuit breaker open") }
	})
	alice, bob, carol := mustLogin(t, h.eng, "alice"), mustLogin(t, h.eng, "bob"), mustLogin(t, h.eng, "carol")
	a, err := h.eng.CreateRoom(bg, alice.ID, "")
	require.NoError(t, err)
	b, err := h.eng.CreateRoom(bg, bob.ID, "")
	require.NoError(t, err)

	for _, tc := range []struct {
		name                     string
		inviter, invitee         User
		inviterType, inviteeType int
		topic                    string
	}{
		{"host invites host: the inviter's room", alice, bob, TypeHost, TypeHost, a.ID},
		{"viewer invites a host: the host's room", carol, bob, TypeViewer, TypeHost, b.ID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.pub.types(tc.topic))
			_, err := h.eng.Feedback(bg, FeedbackRequest{Status: FeedbackAccept, InviterUID: tc.inviter.ID,
				InviteeUID: tc.invitee.ID, InviterType: tc.inviterType, InviteeType: tc.inviteeType})
			require.Equal(t, CodeUnavailable, codeOf(err), "accept with the breaker open: %v", err)

			h.pub.mu.Lock()
			var got []Push
			for _, p := range h.pub.pushes {
				if p.Topic == tc.topic {
					got = append(got, p)
				}
			}
			h.pub.mu.Unlock()
			require.Len(t, got, before+1, "one push to the inviter")
			p := got[before]
			assert.Equal(t, 3, p.Type)
			assert.Equal(t, tc.inviter.ID, p.Tag)
			assert.Equal(t, 4, p.Importance)
			var msg struct {
				Type int
				Data map[string]any
			}
			require.NoError(t, json.Unmarshal(p.Body, &msg))
			assert.Equal(t, map[string]any{"inviteeUid": tc.invitee.ID, "inviteeName": tc.invitee.Name,
				"status": 2.0, "code": 503.0, "message": "CDN混流服务不可用，请稍后重试"}, msg.Data)

			_, busy, err := h.eng.Call(bg, tc.topic)
			require.NoError(t, err)
			assert.False(t, busy, "a refused accept left a call")
		})
	}
	// A refusal by the invitee itself carries no code.
	_, err = h.eng.Feedback(bg, FeedbackRequest{Status: FeedbackRefuse, InviterUID: alice.ID, InviteeUID: bob.ID,
		InviterType: TypeHost, InviteeType: TypeHost})
	require.NoError(t, err)
	h.pub.mu.Lock()
	last := h.pub.pushes[len(h.pub.pushes)-1]
	h.pub.mu.Unlock()
	assert.JSONEq(t, `{"inviteeUid":"`+bob.ID+`","inviteeName":"bob","status":2}`, string(dataOf(t, last.Body)))
	assert.Len(t, listAll(t, h.eng), 2, "no co-stream room was created")
}

// dataOf is the data of an encoded push.
func dataOf(t *testing.T, body []byte) json.RawMessage {
	t.Helper()
	var msg struct{ Data json.RawMessage }
	require.NoError(t, json.Unmarshal(body, &msg))
	return msg.Data
}
