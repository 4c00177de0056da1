package actors

import (
	"context"
	"strings"
)

// InviteRequest is /videocall/invite.
type InviteRequest struct {
	InviterUID, InviteeUID, LiveRoomID string
	InviterType                        int
	Layout                             string // picture_in_picture | side_by_side
}

// FeedbackRequest is /videocall/feedback.
type FeedbackRequest struct {
	Status                   int // 1 accept, 2 refuse
	InviterUID, InviteeUID   string
	InviterType, InviteeType int
	Layout                   string
}

// FeedbackResult is the answer to an accept.
type FeedbackResult struct {
	InviterPlayURL string `json:"inviterPlayUrl"`
	InviterRoomID  string `json:"inviterRoomId"`
	RtmpURL        string `json:"rtmpUrl"`
	InviteeRoomID  string `json:"inviteeRoomId"`
}

// Feedback statuses.
const (
	FeedbackAccept = 1
	FeedbackRefuse = 2
)

type (
	invitationData struct {
		InviterUID  string `json:"inviterUid"`
		InviterName string `json:"inviterName"`
		InviterType int    `json:"inviterType"`
		Type        string `json:"type"`
	}
	refusedData struct {
		InviteeUID  string `json:"inviteeUid"`
		InviteeName string `json:"inviteeName"`
		Status      int    `json:"status"`
		// Code and Message are set only when the server refused the accept on the
		// invitee's behalf (503: the mix service is unavailable); a refusal by the invitee
		// has neither.
		Code    int    `json:"code,omitempty"`
		Message string `json:"message,omitempty"`
	}
)

// Invite pushes an invitation (type 1) to the invitee. It reserves nothing.
func (e *Engine) Invite(ctx context.Context, req InviteRequest) error {
	inviter, err := e.User(ctx, req.InviterUID)
	if err != nil {
		return err
	}
	invitee, err := e.User(ctx, req.InviteeUID)
	if err != nil {
		return err
	}
	if _, err := e.askRoom(ctx, roomRequest{roomID: req.LiveRoomID, ev: queryRoom{}}); err != nil {
		return err
	}
	if inviter.ID == invitee.ID {
		return Errorf(CodeBadState, "不能邀请自己连麦")
	}
	busy, err := e.busy(ctx, req.LiveRoomID)
	if err != nil {
		return err
	}
	if busy {
		return ErrInCall(req.LiveRoomID)
	}
	// To the invitee's own host room if they host one, else to the room they are in.
	topic, err := e.hostRoomOf(ctx, invitee.ID)
	if err != nil {
		return err
	}
	if topic == "" {
		topic = req.LiveRoomID
	}
	// The layout is always sent (docs/api.md lists it in push 1), the default one when none was asked for:
	// it is the layout the call will have.
	layout := req.Layout
	if layout == "" {
		layout = DefaultLayout
	}
	e.publisher.Publish(EncodePush(topic, invitee.ID, 4, 1, invitationData{InviterUID: inviter.ID,
		InviterName: inviter.Name, InviterType: req.InviterType, Type: layout}, e.clock.Now()))
	return nil
}

// Feedback answers an invitation: a refusal is pushed to the inviter (type 3); an accept
// admits the call (type 2 to the inviter) and starts the mix once both rooms are ready.
func (e *Engine) Feedback(ctx context.Context, req FeedbackRequest) (*FeedbackResult, error) {
	inviter, err := e.User(ctx, req.InviterUID)
	if err != nil {
		return nil, err
	}
	invitee, err := e.User(ctx, req.InviteeUID)
	if err != nil {
		return nil, err
	}
	inviterRoom, err := e.sideRoom(ctx, inviter.ID, req.InviterType)
	if err != nil {
		return nil, err
	}
	inviteeRoom, err := e.sideRoom(ctx, invitee.ID, req.InviteeType)
	if err != nil {
		return nil, err
	}
	// A refusal goes to the inviter's host room if the inviter is a host, else the invitee's.
	refusalTopic := inviterRoom
	if req.InviterType != TypeHost {
		refusalTopic = inviteeRoom
	}
	if req.Status == FeedbackRefuse {
		if refusalTopic == "" {
			return nil, Errorf(CodeNoSuchRoom, "没有可以通知邀请人的直播间")
		}
		e.publisher.Publish(EncodePush(refusalTopic, inviter.ID, 4, 3, refusedData{InviteeUID: invitee.ID,
			InviteeName: invitee.Name, Status: FeedbackRefuse}, e.clock.Now()))
		return nil, nil
	}
	if e.mixerReady != nil {
		if err := e.mixerReady(); err != nil {
			refused := Errorf(CodeUnavailable, "CDN混流服务不可用，请稍后重试: %v", err)
			// The inviter is waiting for push 2 or 3: it gets a 3 saying why (docs/api.md,
			// push type 3), so its client stops waiting. Nothing else happened.
			if refusalTopic != "" {
				e.publisher.Publish(EncodePush(refusalTopic, inviter.ID, 4, 3, refusedData{InviteeUID: invitee.ID,
					InviteeName: invitee.Name, Status: FeedbackRefuse, Code: CodeUnavailable,
					Message: "CDN混流服务不可用，请稍后重试"}, e.clock.Now()))
			}
			return nil, refused
		}
	}
	res, err := e.ask(ctx, e.calls, admitRequest{
		inviter: CallSide{RoomID: inviterRoom, UID: inviter.ID, Name: inviter.Name, Type: sideType(inviterRoom)},
		invitee: CallSide{RoomID: inviteeRoom, UID: invitee.ID, Name: invitee.Name, Type: sideType(inviteeRoom)},
		layout:  req.Layout,
	})
	if err != nil {
		return nil, err
	}
	reply, _ := res.(admitReply)
	if reply.err != nil {
		return nil, reply.err
	}
	return &FeedbackResult{
		InviterPlayURL: e.urlBuilder.ShortDelayPlayURL(reply.call.Inviter.RoomID),
		InviterRoomID:  reply.call.Inviter.RoomID,
		RtmpURL:        reply.inviteeRoom.PushURL,
		InviteeRoomID:  reply.call.Invitee.RoomID,
	}, nil
}

// sideRoom is the room a side of a call streams from: a host's live room, or "" for a viewer
// (or a host without a room), who gets a co-stream room.
func (e *Engine) sideRoom(ctx context.Context, uid string, sideType int) (string, error) {
	if sideType != TypeHost {
		return "", nil
	}
	return e.hostRoomOf(ctx, uid)
}

func sideType(roomID string) int {
	if roomID == "" {
		return TypeViewer
	}
	return TypeHost
}

// CloseCall ends the call closeRoomID is in: push 4, Stop the mixes, push 15, rooms released.
// Closing a room that is in no call is a success that does nothing.
func (e *Engine) CloseCall(ctx context.Context, closeRoomID, notifiedRoomID string) error {
	for _, id := range []string{closeRoomID, notifiedRoomID} {
		if id == "" {
			continue
		}
		if _, err := e.askRoom(ctx, roomRequest{roomID: id, ev: queryRoom{}}); err != nil {
			if HasCode(err, CodeNoSuchRoom) {
				return Errorf(CodeNoSuchUser, "%s直播记录不存在", id)
			}
			return err
		}
	}
	return e.askCall(ctx, roomCallRequest{roomID: closeRoomID, ev: evCallClose{roomID: closeRoomID}})
}

// MixResult applies Aliyun's MixResult callback: to the call its rooms are in, or else to
// the two rooms themselves (mixedStatus, and push 16 to each live host room). Stream names
// may carry the mix template suffix, which is removed.
func (e *Engine) MixResult(ctx context.Context, n MixResultNotice, templateSuffix string) error {
	n.MainMixStream = strings.TrimSuffix(n.MainMixStream, templateSuffix)
	n.MixStream = strings.TrimSuffix(n.MixStream, templateSuffix)
	if n.MainMixStream == "" {
		return nil
	}
	reply, err := e.askCallReply(ctx, roomCallRequest{roomID: n.MainMixStream, ev: evMixResult{notice: n}})
	if err != nil || reply.call.ID != "" {
		return err
	}
	for _, room := range []string{n.MainMixStream, n.MixStream} {
		if room == "" {
			continue
		}
		if _, err := e.askRoom(ctx, roomRequest{roomID: room, ev: evRoomMixResult{notice: n}, callback: true}); err != nil {
			return err
		}
	}
	return nil
}

// MixEvent applies a Live API mix callback to the call whose mix it names (by MixStreamId,
// else by main room). A callback for no call of this engine changes nothing.
func (e *Engine) MixEvent(ctx context.Context, ev MixEvent) error {
	if ev.MixID != "" {
		return e.askCall(ctx, mixCallRequest{mixID: ev.MixID, mainRoom: ev.MainRoom, ev: evMixEvent{event: ev}})
	}
	if ev.MainRoom == "" {
		return nil
	}
	return e.askCall(ctx, roomCallRequest{roomID: ev.MainRoom, ev: evMixEvent{event: ev}})
}

func (e *Engine) askCall(ctx context.Context, msg any) error {
	_, err := e.askCallReply(ctx, msg)
	return err
}

func (e *Engine) askCallReply(ctx context.Context, msg any) (callReply, error) {
	res, err := e.ask(ctx, e.calls, msg)
	if err != nil {
		return callReply{}, err
	}
	reply, _ := res.(callReply)
	if reply.err != nil {
		return reply, reply.err
	}
	return reply, nil
}

func (e *Engine) busy(ctx context.Context, roomID string) (bool, error) {
	res, err := e.ask(ctx, e.calls, busyRequest{roomID: roomID})
	if err != nil {
		return false, err
	}
	reply, _ := res.(busyReply)
	return reply.busy, nil
}

func (e *Engine) hostRoomOf(ctx context.Context, uid string) (string, error) {
	res, err := e.ask(ctx, e.rooms, hostRoomRequest{uid: uid})
	if err != nil {
		return "", err
	}
	reply, _ := res.(hostRoomReply)
	return reply.roomID, nil
}

// queryCall reads a call; it changes nothing.
type queryCall struct{}

// Call returns the call a room is in (for tests and diagnostics).
func (e *Engine) Call(ctx context.Context, roomID string) (Call, bool, error) {
	res, err := e.ask(ctx, e.calls, roomCallRequest{roomID: roomID, ev: queryCall{}})
	if err != nil {
		return Call{}, false, err
	}
	reply, _ := res.(callReply)
	return reply.call, reply.call.ID != "", nil
}

// Room returns a room that exists for clients.
func (e *Engine) Room(ctx context.Context, roomID string) (Room, error) {
	reply, err := e.askRoom(ctx, roomRequest{roomID: roomID, ev: queryRoom{}})
	return reply.room, err
}
