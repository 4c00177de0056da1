package actors

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every event that may cross nodes survives the wire unchanged. Local sends skip encoding,
// so this is where an event that cannot cross would be caught.
func TestEveryPeerEventRoundTrips(t *testing.T) {
	yes, two := true, 2
	user := User{ID: "7", Name: "小明"}
	notice := MixResultNotice{MainMixStream: "a", MixStream: "b", Code: "Success", Message: "100% done"}
	cases := map[string]any{
		"play":          evPlay{member: user, userKnown: true},
		"comment":       evComment{user: user, userKnown: true, text: "<hi & bye>"},
		"like":          evLike{user: user},
		"audienceLeave": evAudienceLeave{uid: "7"},
		"leave":         evLeave{},
		"publish":       evPublish{},
		"publishDone":   evPublishDone{},
		"mixAvailable":  evMixAvailable{},
		"queryAudience": queryAudience{},
		"queryRoom":     queryRoom{},
		"queryCall":     queryCall{},
		"roomMixResult": evRoomMixResult{notice: notice},
		"joinCall":      evJoinCall{callID: "call-1", hostRooms: []string{"a", "b"}},
		"leaveCall":     evLeaveCall{callID: "call-1", peer: "b"},
		"callFlags":     evCallFlags{callID: "call-1", mixed: &yes, mixedStatus: &two},
		"callMixReady":  evCallMixReady{roomID: "a"},
		"mixResult":     evMixResult{notice: notice},
		"callClose":     evCallClose{roomID: "a", roomEnded: true},
		"startAnswered": evStartAnswered{leg: 1, attempt: 2, streams: []string{"a_mix"}, id: "mix-9", err: Errorf(CodeMixNoSuchStream, "no")},
		"stopAnswered":  evStopAnswered{leg: 0, attempt: 3},
		"mixEvent": evMixEvent{event: MixEvent{MixID: "mix-9", MainRoom: "a", Event: "fail", Code: "E1",
			Message: "<x & y>", Failed: true, ErrCode: CodeMixFailed}},
	}
	require.Len(t, cases, len(wireEvents)-1, "a case per wire event (announceCall below)")
	for name, ev := range cases {
		t.Run(name, func(t *testing.T) {
			if ev, ok := ev.(roomEvent); ok {
				got := roundTrip(t, roomRequest{roomID: "a", ev: ev, callback: true})
				assert.Equal(t, roomRequest{roomID: "a", ev: ev, callback: true, remote: true}, got)
				return
			}
			ev := ev.(callEvent)
			got := roundTrip(t, callRequest{callID: "call-1", ev: ev, from: "a"})
			assert.Equal(t, callRequest{callID: "call-1", ev: ev, from: "a", remote: true}, got)
		})
	}
	t.Run("announceCall", func(t *testing.T) {
		ev := evAnnounceCall{callID: "call-1", push: outPush{topic: "a", tag: "7", importance: 4, typ: 2,
			data: acceptedData{InviteeUID: "8", RtmpURL: "rtmp://x/y?a=1&b=2", Status: 1}}}
		got := roundTrip(t, roomRequest{roomID: "a", ev: ev}).(roomRequest).ev.(evAnnounceCall)
		want := EncodePush("a", "7", 4, 2, ev.push.data, fixedTime)
		have := EncodePush(got.push.topic, got.push.tag, got.push.importance, got.push.typ, got.push.data, fixedTime)
		assert.Equal(t, want, have, "the push it sends is byte for byte the same")
	})
}

var fixedTime = time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)

func roundTrip(t *testing.T, msg entityRequest) entityRequest {
	t.Helper()
	req, err := peerRequestOf(msg)
	require.NoError(t, err)
	b, err := json.Marshal(req)
	require.NoError(t, err)
	var back PeerRequest
	require.NoError(t, json.Unmarshal(b, &back))
	got, err := localMessage(back)
	require.NoError(t, err)
	return got
}

func TestPeerRequestKinds(t *testing.T) {
	got := roundTrip(t, callRequest{callID: "call-1", ev: evCallMixReady{roomID: "a"}, from: "a"})
	assert.Equal(t, callRequest{callID: "call-1", ev: evCallMixReady{roomID: "a"}, from: "a", remote: true}, got)
	got = roundTrip(t, roomCallRequest{roomID: "a", ev: evCallClose{roomID: "a"}})
	assert.Equal(t, roomCallRequest{roomID: "a", ev: evCallClose{roomID: "a"}, remote: true}, got)
	// Admission and creation never cross nodes: peerRequestOf takes only an entityRequest.
	_, err := localMessage(PeerRequest{Kind: PeerRoom, ID: "a", Event: "nope"})
	assert.Error(t, err)
	// An event of the other kind of entity is refused, by the check and by the decoding.
	for _, req := range []PeerRequest{{Kind: PeerRoom, ID: "a", Event: "callClose"}, {Kind: PeerCall, ID: "call-1", Event: "leave"},
		{Kind: PeerRoomCall, ID: "a", Event: "publish"}} {
		_, err = localMessage(req)
		assert.Error(t, err, req.Event)
		assert.Error(t, CheckPeerRequest(req), req.Event)
	}
}

// Answers keep their result's type and error code across the wire.
func TestPeerRepliesRoundTrip(t *testing.T) {
	room := Room{ID: "a", UID: "1", Status: StatusPublishing}
	cases := map[string]any{
		"room result":  roomReply{room: room, result: room},
		"user result":  roomReply{room: room, result: User{ID: "7", Name: "x"}},
		"users result": roomReply{room: room, result: []User{{ID: "7"}, {ID: "9"}}},
		"error":        roomReply{err: ErrNoSuchRoom("a")},
		"empty":        roomReply{},
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(peerReplyOf(want))
			require.NoError(t, err)
			var rep PeerReply
			require.NoError(t, json.Unmarshal(b, &rep))
			assert.Equal(t, want, answerOf(PeerRoom, rep))
		})
	}
	call := Call{ID: "call-1", Phase: PhaseMixed}
	assert.Equal(t, callReply{call: call}, answerOf(PeerCall, peerReplyOf(callReply{call: call})))
	assert.Equal(t, PeerMoved, peerReplyOf(movedReply{owner: &Owner{Node: "n2"}}).Status)
}
